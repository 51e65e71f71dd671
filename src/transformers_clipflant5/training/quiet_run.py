# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""Warnings every training run printed although nothing was wrong, silenced at their source."""

import os
import warnings

import torch


def quiet_training_run() -> None:
    """
    Call before the training arguments are parsed and DeepSpeed is imported:

    - TRL's `SFTConfig` defaults `gradient_checkpointing`, which transformers 5 reports as a deprecated alias of
      `activation_checkpointing` on every run, whatever the command line said;
    - DeepSpeed warns that it "was unable to detect" a GPU on every CPU run: with no CUDA device it is told to use its
      CPU accelerator (unless `DS_ACCELERATOR` already names one).
    """
    warnings.filterwarnings("ignore", message="`gradient_checkpointing` is deprecated", category=FutureWarning)
    warnings.filterwarnings("ignore", message="`gradient_checkpointing_kwargs` is deprecated", category=FutureWarning)
    if "DS_ACCELERATOR" not in os.environ and not torch.cuda.is_available():
        os.environ["DS_ACCELERATOR"] = "cpu"


__all__ = ["quiet_training_run"]
