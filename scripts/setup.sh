#!/usr/bin/env bash
# Create ./.venv and install the package with its training and test extras, on the CPU build of PyTorch.
# Idempotent: a second run only re-installs when pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
stamp=".venv/.installed-$(sha1sum pyproject.toml | cut -c1-12)"
if [ ! -f "$stamp" ]; then
    .venv/bin/python -m pip install --quiet --upgrade pip
    # torch first, pinned, so that nothing later resolves a (multi-GB) CUDA build. On this project's machines the
    # pinned CPU wheel is on local disk; elsewhere point TORCH_INDEX_URL at PyTorch's CPU wheel index.
    .venv/bin/python -m pip install --quiet "torch==${TORCH_VERSION:-2.13.0}" ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}
    .venv/bin/python -m pip install --quiet -e ".[train,dev,quant]"
    rm -f .venv/.installed-*
    touch "$stamp"
fi
