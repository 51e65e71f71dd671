#!/usr/bin/env bash
# Set everything up, then run the main job, examples/train_demo.py: the stage-2 training demo on a synthetic
# coloured-shapes dataset (tiny model, CPU, a few minutes), printing held-out VQAScore ROC-AUC before and after and
# drawing the loss and ROC curves into the output folder.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
# Idle OpenMP threads sleep rather than spin (the training script imports torch before the package could set it).
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
exec .venv/bin/python examples/train_demo.py "$@"
