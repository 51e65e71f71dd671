# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""CLIP-FlanT5 for transformers: the model behind VQAScore, its processor, scoring and training tools.

Importing the package registers CLIP-FlanT5 with transformers' Auto classes, marks the configuration, model and
processor classes for auto-class export so that every `save_pretrained` folder carries them as remote code, and lets
`from_pretrained` read the original release's checkpoints (`zhiqiulin/clip-flant5-xxl`, ...) as they are.
"""

from .cpu_threads import limit_threads_to_available, set_openmp_wait_policy
from .log_filters import quiet_backend_import_logs


set_openmp_wait_policy()  # before transformers imports torch, whose OpenMP reads it once
quiet_backend_import_logs()  # before transformers imports torchao

from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForImageTextToText,
    AutoModelForSeq2SeqLM,
    AutoProcessor,
)

from .configuration_clip_flant5 import CLIPFlanT5Config
from .file_permissions import fix_weight_permissions
from .image_processing_clip_flant5 import CLIPFlanT5ImageProcessor
from .modeling_clip_flant5 import (
    CLIPFlanT5ForConditionalGeneration,
    CLIPFlanT5Model,
    CLIPFlanT5PreTrainedModel,
)
from .original import load_original_model, load_original_processor, load_original_projector
from .processing_clip_flant5 import CHAT_TEMPLATE, SYSTEM_MESSAGE, CLIPFlanT5Processor
from .version import __version__  # noqa: F401 (re-exported)


AutoConfig.register("clip_flant5", CLIPFlanT5Config, exist_ok=True)
AutoModel.register(CLIPFlanT5Config, CLIPFlanT5Model, exist_ok=True)
AutoModelForImageTextToText.register(CLIPFlanT5Config, CLIPFlanT5ForConditionalGeneration, exist_ok=True)
AutoModelForSeq2SeqLM.register(CLIPFlanT5Config, CLIPFlanT5ForConditionalGeneration, exist_ok=True)
AutoProcessor.register(CLIPFlanT5Config, CLIPFlanT5Processor, exist_ok=True)
AutoImageProcessor.register(CLIPFlanT5Config, image_processor_classes={"pil": CLIPFlanT5ImageProcessor}, exist_ok=True)

CLIPFlanT5Config.register_for_auto_class()
CLIPFlanT5Model.register_for_auto_class("AutoModel")
CLIPFlanT5ForConditionalGeneration.register_for_auto_class("AutoModelForImageTextToText")
CLIPFlanT5Processor.register_for_auto_class("AutoProcessor")
CLIPFlanT5ImageProcessor.register_for_auto_class("AutoImageProcessor")

limit_threads_to_available()

if load_original_model not in CLIPFlanT5PreTrainedModel.checkpoint_loaders:
    CLIPFlanT5PreTrainedModel.checkpoint_loaders.append(load_original_model)
if fix_weight_permissions not in CLIPFlanT5PreTrainedModel.save_hooks:
    CLIPFlanT5PreTrainedModel.save_hooks.append(fix_weight_permissions)
if load_original_processor not in CLIPFlanT5Processor.checkpoint_loaders:
    CLIPFlanT5Processor.checkpoint_loaders.append(load_original_processor)


# Names of the scoring, training and Hub tools, loaded on first use: they pull in more (tqdm, TRL, datasets, ...).
_LAZY_NAMES = {
    "VQAScore": "scoring.vqascore",
    "CLIPFlanT5SFTTrainer": "training.trainer",
    "CLIPFlanT5DataCollator": "training.collator",
    "load_llava_dataset": "training.data",
    "build_model_from_base_checkpoints": "training.model",
    "load_projector": "projector",
    "save_projector": "projector",
    "push_folder": "hub.publish",
}


def __getattr__(name: str):
    if name in _LAZY_NAMES:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY_NAMES[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    *_LAZY_NAMES,
    "CHAT_TEMPLATE",
    "SYSTEM_MESSAGE",
    "CLIPFlanT5Config",
    "CLIPFlanT5ForConditionalGeneration",
    "CLIPFlanT5ImageProcessor",
    "CLIPFlanT5Model",
    "CLIPFlanT5PreTrainedModel",
    "CLIPFlanT5Processor",
    "load_original_projector",
]
