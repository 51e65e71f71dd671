"""Training runs start without the warnings that said nothing about the run."""

import os
import warnings

import torch

from transformers_clipflant5.training.quiet_run import quiet_training_run


def test_gradient_checkpointing_alias_warning_is_silenced(monkeypatch):
    from trl import SFTConfig

    # Unset for the test and restored after it: delenv alone records nothing when the variable is absent, and the
    # "cpu" quiet_training_run sets would then stay for the rest of the session.
    monkeypatch.setenv("DS_ACCELERATOR", "")
    monkeypatch.delenv("DS_ACCELERATOR")
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
    else:
        # With a GPU, DeepSpeed detects its CUDA accelerator itself: nothing is forced.
        assert "DS_ACCELERATOR" not in os.environ


def test_an_accelerator_the_user_named_is_kept(monkeypatch):
    # DS_ACCELERATOR set by the user (a launcher, another backend) is theirs to choose, with or without a GPU.
    monkeypatch.setenv("DS_ACCELERATOR", "cuda")
    quiet_training_run()
    assert os.environ["DS_ACCELERATOR"] == "cuda"
