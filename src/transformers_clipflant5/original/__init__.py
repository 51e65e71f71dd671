# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""The original CLIP-FlanT5 release's checkpoint format: reading it (`checkpoint`) and converting it (`convert`).

Importing the package registers `load_original_model` / `load_original_processor` with the model and processor
classes, so that their `from_pretrained` accept the original repos as they are.
"""

from .checkpoint import (
    CLIP_VIT_L_14_336,
    ORIGINAL_KEY_MAPPING,
    ORIGINAL_PROJECTOR_NAME,
    config_from_original,
    is_original_config,
    load_original_model,
    load_original_processor,
    load_original_projector,
    read_original_config,
    read_original_projector,
)


__all__ = [
    "CLIP_VIT_L_14_336",
    "ORIGINAL_KEY_MAPPING",
    "ORIGINAL_PROJECTOR_NAME",
    "config_from_original",
    "is_original_config",
    "load_original_model",
    "load_original_processor",
    "load_original_projector",
    "read_original_config",
    "read_original_projector",
]
