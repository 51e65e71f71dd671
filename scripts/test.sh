#!/usr/bin/env bash
# Set everything up, lint, then run the whole test suite (offline, CPU; ~7.5 min on 2 idle cores, 21 on a slow host).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
# Idle OpenMP threads sleep rather than spin: on a machine other jobs share, spinning threads made the tests' tiny
# models 5 to 12 times slower on 2 threads than on 1 (docs/shared_machines.md). Set it yourself to override.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
.venv/bin/ruff check src tests examples benchmarks
.venv/bin/ruff format --check src tests examples benchmarks
exec .venv/bin/python -m pytest -q --durations=15 "$@"
