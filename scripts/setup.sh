#!/usr/bin/env bash
# Create ./.venv and install the package with its training, quantization and test extras.
# Idempotent: a second run only re-installs when pyproject.toml changed.
#
# What it installs: torch (pinned, TORCH_VERSION, default 2.13.0) first, then this package in editable mode with
# the `train` (trl, datasets, deepspeed, peft), `quant` (torchao, bitsandbytes) and `dev` (pytest, ruff, hypothesis)
# extras, `demo` (gradio) for the web demo, `video` (PyAV) and `serve` (fastapi, uvicorn, prometheus-client).
# Which torch build: pip's default index serves the CUDA build on Linux (several GB). For the CPU build set
#   TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# (or the index of the CUDA version you want, e.g. .../whl/cu128); pip's own configuration (find-links, a local
# wheel) is used otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv with $("$PYTHON" --version 2>&1)"
    "$PYTHON" -m venv .venv
fi
stamp=".venv/.installed-$(sha1sum pyproject.toml | cut -c1-12)"
if [ ! -f "$stamp" ]; then
    echo "setup: [1/3] upgrading pip"
    .venv/bin/python -m pip install --quiet --upgrade pip
    # torch first, pinned, so that nothing later resolves another (possibly multi-GB CUDA) build.
    echo "setup: [2/3] installing torch==$TORCH_VERSION from ${TORCH_INDEX_URL:-the index pip is configured with} (the largest download)"
    .venv/bin/python -m pip install --progress-bar on "torch==$TORCH_VERSION" ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} \
        | grep -E --line-buffered "^(Collecting|Downloading|Installing|Successfully)" || true
    echo "setup: [3/3] installing transformers-clipflant5 with its train, dev, quant, demo, video and serve extras (transformers, trl, deepspeed, gradio, av, fastapi, ...)"
    .venv/bin/python -m pip install -e ".[train,dev,quant,demo,video,serve]" \
        | grep -E --line-buffered "^(Collecting|Installing|Successfully)" || true
    .venv/bin/python -c "import torch, transformers_clipflant5" \
        || { echo "setup: the installation failed; see the pip output above" >&2; exit 1; }
    rm -f .venv/.installed-*
    touch "$stamp"
    echo "setup: done ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))"
fi
# The browser of the web demo's browser test: on CI (or with INSTALL_BROWSER=1) only, idempotent, never fatal.
CI="${CI:-${INSTALL_BROWSER:-}}" bash scripts/install_browser.sh
