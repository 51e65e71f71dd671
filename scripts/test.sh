#!/usr/bin/env bash
# Set everything up, lint, then run the whole test suite (offline, CPU): two pytest workers (TEST_WORKERS overrides;
# 1 runs in this process), 11 minutes on 2 idle cores where one worker took 19.5 (docs/benchmarks.md).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
# Idle OpenMP threads sleep rather than spin: on a machine other jobs share, spinning threads made the tests' tiny
# models 5 to 12 times slower on 2 threads than on 1 (docs/shared_machines.md). Set it yourself to override.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
.venv/bin/ruff check src tests examples benchmarks
.venv/bin/ruff format --check src tests examples benchmarks
workers="${TEST_WORKERS:-2}"
if [ "$workers" -gt 1 ]; then
    set -- -n "$workers" --dist worksteal "$@"
fi
exec .venv/bin/python -m pytest -q --durations=15 "$@"
