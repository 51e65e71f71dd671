# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""Reading the original release's pickled `.bin` files: tensors only (`weights_only=True`), and a refusal that names
the file and says what to do, instead of torch's advice to unpickle it in full."""

import os
import pickle
from typing import Any

import torch


def load_pickled_tensors(path: str | os.PathLike, **kwargs: Any) -> Any:
    """`torch.load(path, weights_only=True, map_location="cpu", **kwargs)`; a file holding more than tensors raises a
    `pickle.UnpicklingError` naming it."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, **kwargs)
    except pickle.UnpicklingError as error:
        detail = str(error).split("WeightsUnpickler error:")[-1].split("Check the documentation")[0]
        raise pickle.UnpicklingError(
            f"{os.fspath(path)} holds Python objects other than tensors ({' '.join(detail.split())}); it was not "
            "unpickled, since unpickling it could run code from the file. Use a safetensors copy of the checkpoint, "
            "or re-download the file from its original source."
        ) from error


__all__ = ["load_pickled_tensors"]
