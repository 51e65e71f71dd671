# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""The keyword arguments that select a Hub file (the same for models, processors, projectors and tokenizers)."""

from collections.abc import Mapping
from typing import Any


HUB_KWARGS = ("cache_dir", "force_download", "proxies", "token", "revision", "local_files_only", "subfolder")


def hub_kwargs(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The Hub arguments among `kwargs` that are set, to pass on to `cached_file` or another `from_pretrained`."""
    return {name: kwargs[name] for name in HUB_KWARGS if kwargs.get(name) is not None}
