# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""Reading Flow-GRPO's pickled request bodies without running what a pickle may name.

`pickle.loads` imports and calls any global a pickle names (`os.system`, `builtins.eval`, ...): on a server that is
remote code execution for whoever can reach the port. Flow-GRPO's reward clients send
`pickle.dumps({"images": [JPEG bytes, ...], "prompts": <list or numpy array of str>})`, which needs no global but
numpy's own array, dtype and scalar reconstruction. [`safe_loads`] admits exactly those, looked up in a fixed table
of objects numpy has already loaded (never imported by name), under both the numpy 1 (`numpy.core`) and numpy 2
(`numpy._core`) module names a client may write. Any other global is refused with [`RefusedGlobal`], naming it.
"""

import io
import pickle

import numpy as np


try:  # numpy >= 2
    from numpy._core import multiarray, numeric
except ImportError:  # numpy 1.x
    from numpy.core import multiarray, numeric


# (module, name) as a pickle writes them -> the object numpy itself holds.
_ADMITTED = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}
for _module in ("numpy.core", "numpy._core"):
    _ADMITTED[(f"{_module}.multiarray", "_reconstruct")] = multiarray._reconstruct
    _ADMITTED[(f"{_module}.multiarray", "scalar")] = multiarray.scalar
    # Pickle protocol 5 rebuilds arrays from a buffer.
    _ADMITTED[(f"{_module}.numeric", "_frombuffer")] = numeric._frombuffer

ADMITTED_GLOBALS = tuple(f"{module}.{name}" for module, name in _ADMITTED)


class RefusedGlobal(pickle.UnpicklingError):
    """A pickle named a global other than numpy's array and scalar reconstruction."""

    def __init__(self, module: str, name: str):
        self.global_name = f"{module}.{name}"
        hint = ""
        if (module, name) == ("_codecs", "encode"):
            # Protocols 0-2 write bytes through _codecs.encode; 3 and later (the default) write them as bytes.
            hint = " (pickle protocol 2 or older writes bytes this way: use protocol 3 or later, the default)"
        super().__init__(
            f"the pickle names the global {self.global_name}, which this server refuses{hint}: a request may hold "
            "only dicts, lists, str, bytes, numbers and numpy arrays"
        )


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        try:
            return _ADMITTED[(module, name)]
        except KeyError:
            raise RefusedGlobal(module, name) from None


def safe_loads(data: bytes):
    """Unpickle `data` admitting no global but numpy's array, dtype and scalar reconstruction.

    Raises:
        [`RefusedGlobal`]: the pickle names another global (nothing was imported or called).
        `pickle.UnpicklingError`: `data` is not a pickle this unpickler can read (the message says why).
    """
    try:
        return _NumpyOnlyUnpickler(io.BytesIO(data)).load()
    except RefusedGlobal:
        raise
    except Exception as error:  # a malformed pickle raises about anything (EOFError, TypeError, KeyError, ...)
        message = str(error).replace("\n", " ") or type(error).__name__
        raise pickle.UnpicklingError(f"the body is not a readable pickle ({message})") from error


__all__ = ["ADMITTED_GLOBALS", "RefusedGlobal", "safe_loads"]
