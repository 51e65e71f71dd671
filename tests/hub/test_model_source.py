"""`explain_load_error`: one line naming the file of a folder that could not be loaded, and what is wrong with it."""

import pickle

import torch

from transformers_clipflant5.hub.model_source import explain_load_error


class NotATensor:
    """Any object a checkpoint should not hold; `weights_only=True` refuses to unpickle it."""


def test_pickled_weights_that_cannot_be_loaded_are_named(tmp_path):
    """A folder of ours with `.bin` weights is loaded by transformers itself, whose errors name no file and advise
    weights_only=False for a refused pickle: the explanation names the file and why it is refused or unreadable."""
    torch.save({"w": torch.zeros(2), "extra": NotATensor()}, tmp_path / "pytorch_model-00001-of-00002.bin")
    torch.save({"w": torch.zeros(2)}, tmp_path / "pytorch_model-00002-of-00002.bin")
    data = (tmp_path / "pytorch_model-00002-of-00002.bin").read_bytes()
    (tmp_path / "pytorch_model-00002-of-00002.bin").write_bytes(data[: len(data) // 2])
    # Not weights: a Trainer's pickled arguments are no reason for a failed load.
    torch.save({"extra": NotATensor()}, tmp_path / "training_args.bin")
    torch_error = pickle.UnpicklingError(
        "Re-running `torch.load` with `weights_only` set to `False` will likely succeed"
    )
    message = explain_load_error(str(tmp_path), torch_error, "SRC")
    assert f"{tmp_path / 'pytorch_model-00001-of-00002.bin'} holds Python objects other than tensors" in message
    assert f"{tmp_path / 'pytorch_model-00002-of-00002.bin'} cannot be read as a PyTorch checkpoint" in message
    assert "training_args.bin" not in message and "weights_only" not in message
    assert "\n" not in message
