"""Training runs start without the warnings that said nothing about the run."""

import os
import warnings

import torch

from transformers_clipflant5.training.noise import quiet_training_run


def test_gradient_checkpointing_alias_warning_is_silenced(monkeypatch):
    from trl import SFTConfig

    monkeypatch.delenv("DS_ACCELERATOR", raising=False)  # restored after the test
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        SFTConfig(output_dir="unused", use_cpu=True, bf16=False, report_to="none")
    # Without the filter, TRL's default does warn (so the check below can fail).
    assert [w for w in caught if "gradient_checkpointing" in str(w.message)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_training_run()
        SFTConfig(output_dir="unused", use_cpu=True, bf16=False, report_to="none")
    assert not [w for w in caught if "gradient_checkpointing" in str(w.message)]
    if not torch.cuda.is_available():
        assert os.environ.get("DS_ACCELERATOR") == "cpu"
