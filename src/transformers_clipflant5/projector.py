# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""The stage-1 projector on its own: our file format, and the one loader of stage-1 projectors (ours or the original's).

Stage 1 trains only the projector (Linear -> GELU -> Linear), so its output is shipped alone. Our format is a folder
with `projector.safetensors` (keys `linear_1.weight`, `linear_1.bias`, `linear_2.weight`, `linear_2.bias`, as in
`model.model.multi_modal_projector`) and `projector_config.json` (the dimensions and the base models it was trained
with). [`load_projector`] reads that folder and the original stage-1 repos (`mm_projector.bin`, read by
`original.checkpoint`) alike, for conversion and both training stages.
"""

import contextlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers.utils import cached_file

from .file_permissions import fix_weight_permissions
from .hub_kwargs import hub_kwargs as select_hub_kwargs
from .modeling_clip_flant5 import CLIPFlanT5MultiModalProjector
from .original.checkpoint import ORIGINAL_PROJECTOR_NAME, read_original_projector


PROJECTOR_WEIGHTS_NAME = "projector.safetensors"
PROJECTOR_CONFIG_NAME = "projector_config.json"
PROJECTOR_FORMAT = "clip-flant5-projector"


def _projector_module(model: nn.Module) -> CLIPFlanT5MultiModalProjector:
    if isinstance(model, CLIPFlanT5MultiModalProjector):
        return model
    projector = getattr(getattr(model, "model", model), "multi_modal_projector", None)
    if isinstance(projector, CLIPFlanT5MultiModalProjector):
        return projector
    raise TypeError(
        f"{type(model).__name__} has no CLIP-FlanT5 projector: pass a CLIPFlanT5ForConditionalGeneration, a "
        "CLIPFlanT5Model or the projector itself."
    )


def save_projector(
    model: nn.Module,
    save_directory: str | os.PathLike,
    *,
    text_model: str | None = None,
    vision_model: str | None = None,
    dtype: torch.dtype | None = None,
    source: str | None = None,
    vision_feature_layer: int | None = None,
    vision_feature_select_strategy: str | None = None,
) -> Path:
    """
    Write the projector of `model` (a CLIP-FlanT5 model, or its projector) as `projector.safetensors` plus
    `projector_config.json` in `save_directory`. `text_model` / `vision_model` record the base checkpoints the
    projector was trained against (a projector only works with those), `source` where it came from. The vision
    feature settings default to the model's configuration (-2 / "default" for a bare projector).

    Under DeepSpeed ZeRO-3 the projector's parameters must be gathered first (e.g. inside
    `deepspeed.zero.GatheredParameters`).
    """
    projector = _projector_module(model)
    state = {name: tensor.detach().to("cpu").contiguous() for name, tensor in projector.state_dict().items()}
    if dtype is not None:
        state = {name: tensor.to(dtype) for name, tensor in state.items()}
    folder = Path(save_directory)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(state, folder / PROJECTOR_WEIGHTS_NAME, metadata={"format": "pt"})
    fix_weight_permissions(folder)
    config = getattr(model, "config", None)
    projector_config = {
        "format": PROJECTOR_FORMAT,
        "format_version": 1,
        "projector_type": "mlp2x_gelu",
        "vision_hidden_size": projector.linear_1.in_features,
        "text_hidden_size": projector.linear_2.out_features,
        "projector_hidden_act": getattr(config, "projector_hidden_act", "gelu"),
        "vision_feature_layer": vision_feature_layer
        if vision_feature_layer is not None
        else getattr(config, "vision_feature_layer", -2),
        "vision_feature_select_strategy": vision_feature_select_strategy
        or getattr(config, "vision_feature_select_strategy", "default"),
        "text_model": text_model,
        "vision_model": vision_model,
        "dtype": str(next(iter(state.values())).dtype).removeprefix("torch."),
        "source": source,
    }
    (folder / PROJECTOR_CONFIG_NAME).write_text(json.dumps(projector_config, indent=2) + "\n", encoding="utf-8")
    return folder


def load_projector(model: nn.Module, path_or_repo: str | os.PathLike, **hub_kwargs: Any) -> None:
    """
    Load a stage-1 projector into `model` (a CLIP-FlanT5 model, or its projector): our `projector.safetensors` (a
    file, a folder or a Hub repo written by [`save_projector`] or `clip-flant5 convert`) or an original
    `mm_projector.bin` (a file, or a repo such as `zhiqiulin/clip-flant5-xxl-stage-1`). Raises if the dimensions or
    the recorded projector settings do not match the model: a projector only works with the vision tower and text
    model it was trained with. Under DeepSpeed ZeRO-3 the projector's shards are gathered, loaded and re-sharded.
    """
    projector = _projector_module(model)
    weights_file, config_file = _projector_files(str(path_or_repo), select_hub_kwargs(hub_kwargs))
    if weights_file.endswith(".safetensors"):
        if config_file is not None:
            _check_projector_config(json.loads(Path(config_file).read_text(encoding="utf-8")), model, config_file)
        state = load_file(weights_file)
    else:
        state = read_original_projector(weights_file).state_dict()
    parameters = list(projector.parameters())
    gathered = contextlib.nullcontext()
    if any(hasattr(parameter, "ds_id") for parameter in parameters):
        import deepspeed

        gathered = deepspeed.zero.GatheredParameters(parameters, modifier_rank=0)
    with gathered:
        _check_projector_state(state, projector.state_dict(), weights_file)
        projector.load_state_dict(state, strict=True)


def _projector_files(path: str, hub: dict[str, Any]) -> tuple[str, str | None]:
    """The weights file (ours or the original's) and our config file, if any, of a projector file, folder or repo."""
    if os.path.isfile(path):
        sibling = Path(path).with_name(PROJECTOR_CONFIG_NAME)
        return path, str(sibling) if path.endswith(".safetensors") and sibling.is_file() else None
    weights_file = cached_file(path, PROJECTOR_WEIGHTS_NAME, _raise_exceptions_for_missing_entries=False, **hub)
    if weights_file is not None:
        return weights_file, cached_file(
            path, PROJECTOR_CONFIG_NAME, _raise_exceptions_for_missing_entries=False, **hub
        )
    weights_file = cached_file(path, ORIGINAL_PROJECTOR_NAME, _raise_exceptions_for_missing_entries=False, **hub)
    if weights_file is None:
        raise OSError(
            f"{path} holds neither {PROJECTOR_WEIGHTS_NAME} (our projector format) nor {ORIGINAL_PROJECTOR_NAME} "
            "(an original stage-1 repo such as zhiqiulin/clip-flant5-xxl-stage-1)."
        )
    return weights_file, None


def _check_projector_state(state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], source: str) -> None:
    if set(state) != set(expected):
        raise ValueError(
            f"{source} has keys {sorted(state)}, a CLIP-FlanT5 projector has {sorted(expected)}: it is not a "
            "projector file."
        )
    for name, tensor in state.items():
        if tuple(tensor.shape) != tuple(expected[name].shape):
            raise ValueError(
                f"Projector tensor {name} in {source} has shape {tuple(tensor.shape)}, the model expects "
                f"{tuple(expected[name].shape)}: the projector was trained for another vision tower or text model."
            )


def _check_projector_config(projector_config: dict[str, Any], model: nn.Module, config_file: str) -> None:
    if projector_config.get("format") != PROJECTOR_FORMAT:
        raise ValueError(
            f"{config_file} is not a CLIP-FlanT5 projector config (format {projector_config.get('format')!r})."
        )
    config = getattr(model, "config", None)
    if config is None:
        return
    for key in ("projector_hidden_act", "vision_feature_layer", "vision_feature_select_strategy"):
        recorded = projector_config.get(key)
        if recorded is not None and recorded != getattr(config, key):
            raise ValueError(
                f"The projector in {config_file} was trained with {key}={recorded!r} but the model uses "
                f"{getattr(config, key)!r}: its features would not be what the projector expects."
            )


__all__ = [
    "ORIGINAL_PROJECTOR_NAME",
    "PROJECTOR_CONFIG_NAME",
    "PROJECTOR_WEIGHTS_NAME",
    "load_projector",
    "read_original_projector",
    "save_projector",
]
