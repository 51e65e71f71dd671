# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""File modes for the folders the package writes.

safetensors writes through a private temporary file, so its weights come out readable by their owner only (0600) while
the config and every other file beside them get the usual mode (0666 minus the umask): a shared or served model folder
could then not be read. The package's writers (the model's `save_pretrained`, through the hook the package installs,
the projector files, the trainer's checkpoints) give the weights the usual mode too.
"""

import os
from pathlib import Path


def fix_weight_permissions(folder: str | os.PathLike) -> None:
    """Give every `*.safetensors` file under `folder` the mode a newly created file gets (0666 minus the umask)."""
    umask = os.umask(0)
    os.umask(umask)
    mode = 0o666 & ~umask
    for path in Path(folder).rglob("*.safetensors"):
        if path.is_file() and not path.is_symlink() and path.stat().st_mode & 0o777 != mode:
            path.chmod(mode)
