#!/usr/bin/env bash
# Run the tests against the LOWEST versions pyproject.toml allows of the libraries whose API the package uses most:
# transformers, accelerate, trl, huggingface_hub and tokenizers, each installed at exactly its lower bound (read from
# pyproject.toml, so the script follows the pins), with torch $TORCH_VERSION (default 2.13.0). The newest versions
# are what `scripts/test.sh` tests. The venv is separate (.venv-lowest, or $LOWEST_VENV) and kept between runs.
#
#   bash scripts/test_lowest.sh                      # the default subset (below)
#   bash scripts/test_lowest.sh tests                # the whole suite
#   bash scripts/test_lowest.sh tests/scoring -x     # any pytest arguments
#
# torch comes from the index pip is configured with, or TORCH_INDEX_URL (e.g. https://download.pytorch.org/whl/cpu);
# the script stops if that gives a CUDA build. See docs/compatibility.md for what was tested and how long it takes.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
VENV="${LOWEST_VENV:-.venv-lowest}"
TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
# The lower bounds, as `name==version`, from the project's dependencies and its `train` extra.
mapfile -t LOWEST < <("$PYTHON" scripts/lowest_versions.py transformers accelerate trl huggingface_hub tokenizers)
stamp="$VENV/.installed-$(printf '%s ' "${LOWEST[@]}" "torch==$TORCH_VERSION" | sha1sum | cut -c1-12)"
if [ ! -f "$stamp" ]; then
    echo "test_lowest: creating $VENV with torch==$TORCH_VERSION ${LOWEST[*]}"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip install --quiet "torch==$TORCH_VERSION" ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}
    if "$VENV/bin/python" -W ignore -c "import sys, torch; sys.exit(torch.version.cuda is None)"; then
        echo "test_lowest: pip installed a CUDA torch; set TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu" >&2
        exit 2
    fi
    # One resolution: the package with its train and dev extras, the lower bounds pinned exactly.
    "$VENV/bin/python" -m pip install --quiet -e ".[train,dev]" "${LOWEST[@]}" "torch==$TORCH_VERSION"
    rm -f "$VENV"/.installed-*
    touch "$stamp"
fi
"$VENV/bin/python" -m pip list 2>/dev/null | grep -iE "^(torch|transformers|accelerate|trl|huggingface[-_]hub|tokenizers|peft|datasets|deepspeed) "
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
# The default subset: model, processor, scoring, Hub and command tests (the examples and multi-process training are
# the slow part of the suite and exercise the same library calls).
if [ "$#" -eq 0 ]; then
    set -- tests --ignore=tests/examples -q
fi
exec "$VENV/bin/python" -m pytest "$@"
