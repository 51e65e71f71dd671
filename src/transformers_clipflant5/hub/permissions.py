# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""safetensors writes its files through a private temporary file, so they end up readable by their owner only (0600)
while every other file of a saved folder follows the umask (usually 0644): a shared or served model folder then
cannot be read by others. The folders we write get the usual permissions back."""

import os
from pathlib import Path


def _default_file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def fix_weight_permissions(folder: str | os.PathLike) -> None:
    """Give every `*.safetensors` file under `folder` the permissions a newly created file gets (0666 minus the
    umask), as the other files there have."""
    mode = _default_file_mode()
    for path in Path(folder).rglob("*.safetensors"):
        if path.is_file() and not path.is_symlink() and path.stat().st_mode & 0o777 != mode:
            path.chmod(mode)


__all__ = ["fix_weight_permissions"]
