# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""Reading the original release's pickled `.bin` files: tensors only (`weights_only=True`), and a refusal that names
the file and says what to do, instead of torch's advice to unpickle it in full."""

import os
import pickle
import zipfile
from typing import Any

import torch


class DamagedPickleError(ValueError):
    """A pickled checkpoint file that cannot be read (cut off or damaged); the message names it."""


# Not damage to the file: the caller reports a missing or unreadable path as such.
_NOT_DAMAGE = (FileNotFoundError, IsADirectoryError, PermissionError)


def refusal_message(path: str | os.PathLike, error: pickle.UnpicklingError) -> str:
    """Our message for torch's `weights_only` refusal `error` of the file at `path`: what it holds and why it was not
    unpickled, without torch's advice to re-run with `weights_only=False`."""
    detail = str(error).split("WeightsUnpickler error:")[-1].split("Check the documentation")[0]
    return (
        f"{os.fspath(path)} holds Python objects other than tensors ({' '.join(detail.split())}); it was not "
        "unpickled, since unpickling it could run code from the file. Use a safetensors copy of the checkpoint, "
        "or re-download the file from its original source."
    )


def load_pickled_tensors(path: str | os.PathLike, **kwargs: Any) -> Any:
    """`torch.load(path, weights_only=True, map_location="cpu", **kwargs)`; a file holding more than tensors raises a
    `pickle.UnpicklingError` naming it, a cut-off or damaged one a [`DamagedPickleError`] naming it."""
    path = os.fspath(path)
    if kwargs.get("mmap") and os.path.isfile(path) and not zipfile.is_zipfile(path):
        # torch can only map its zip format; a legacy or damaged file is read in full, so that the error (if any)
        # says what is wrong with it rather than that it cannot be mapped.
        kwargs = {name: value for name, value in kwargs.items() if name != "mmap"}
    try:
        return torch.load(path, map_location="cpu", weights_only=True, **kwargs)
    except pickle.UnpicklingError as error:
        raise pickle.UnpicklingError(refusal_message(path, error)) from error
    except _NOT_DAMAGE:
        raise
    except Exception as error:  # noqa: BLE001 - torch.load fails on a damaged file with many types (EOFError, ...)
        raise DamagedPickleError(
            f"{path} cannot be read as a PyTorch checkpoint, perhaps cut off or damaged "
            f"({type(error).__name__}: {_first_sentence(error)}). Download it again."
        ) from error


def pickle_problem(path: str | os.PathLike) -> str | None:
    """Why the pickled checkpoint file at `path` cannot be loaded (refused or damaged), or None if it can."""
    try:
        load_pickled_tensors(path, mmap=True)
    except (pickle.UnpicklingError, DamagedPickleError) as error:
        return str(error)
    return None


def _first_sentence(error: BaseException) -> str:
    # torch's messages for a damaged file go on about how it may have happened; the file is named by us.
    text = " ".join(str(error).split()) or "no details"
    return text.split(". ")[0].rstrip(".")


__all__ = ["DamagedPickleError", "load_pickled_tensors", "pickle_problem", "refusal_message"]
