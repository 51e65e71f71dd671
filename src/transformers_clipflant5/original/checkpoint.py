# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""Reading the original release's checkpoints (`zhiqiulin/clip-flant5-xxl`, `-xl`, their stage-1 projectors).

The original repos hold a flat T5 `config.json` with LLaVA's `mm_*` fields, LLaVA-style weight names in pickled
`.bin` shards (read here with `weights_only=True` only), FlanT5's tokenizer without an `<image>` token, and no image
processor config. This module translates each of those into our format on the fly: the model files know nothing
of it, and converting (`clip-flant5 convert`) writes the translation down once.
"""

import json
import os
import pickle
import warnings
from types import SimpleNamespace
from typing import Any

import torch
from transformers import AutoTokenizer, CLIPVisionConfig, PreTrainedModel, T5Config
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
from transformers.utils import cached_file
from transformers.utils import logging as transformers_logging

from ..configuration_clip_flant5 import (
    CLIP_VIT_L_14_336_VISION_CONFIG,
    CLIPFlanT5Config,
    check_vision_feature_layer,
)
from ..hub_kwargs import hub_kwargs
from ..image_processing_clip_flant5 import CLIPFlanT5ImageProcessor
from ..modeling_clip_flant5 import CLIPFlanT5MultiModalProjector, CLIPFlanT5PreTrainedModel
from ..processing_clip_flant5 import DEFAULT_IMAGE_TOKEN, CLIPFlanT5Processor
from .pickles import load_pickled_tensors, pickle_problem


# The original checkpoints name their tower by Hub id only; its facts (vision config, preprocessing) are known
# offline for this one, and read from the tower's own repo for any other.
CLIP_VIT_L_14_336 = "openai/clip-vit-large-patch14-336"

# FlanT5 hyper-parameters that a flat original config carries and that `T5Config` understands.
_T5_KEYS = (
    "vocab_size",
    "d_model",
    "d_kv",
    "d_ff",
    "num_layers",
    "num_decoder_layers",
    "num_heads",
    "relative_attention_num_buckets",
    "relative_attention_max_distance",
    "dropout_rate",
    "layer_norm_epsilon",
    "initializer_factor",
    "feed_forward_proj",
    "pad_token_id",
    "eos_token_id",
    "decoder_start_token_id",
)

# LLaVA's names for which vision features to keep, mapped to transformers' names.
_ORIGINAL_SELECT_FEATURE = {"patch": "default", "cls_patch": "full"}

# Original key -> our key, applied through transformers' own `key_mapping` loading mechanism. The original `.bin`
# stores the shared embedding four times (`shared`, `encoder.embed_tokens`, `decoder.embed_tokens` and a top-level
# `embed_tokens`); only `shared.weight` is loaded, the copies are set aside (see `_check_duplicate_embeddings`).
ORIGINAL_KEY_MAPPING = {
    r"^(encoder\.|decoder\.)?embed_tokens\.weight$": "original_duplicate_embedding.weight",
    # transformers 4's CLIPVisionModel nested its weights under `vision_model.`; transformers 5's does not.
    r"^vision_tower\.vision_tower\.(?:vision_model\.)?": "model.vision_tower.",
    r"^mm_projector\.0\.": "model.multi_modal_projector.linear_1.",
    r"^mm_projector\.2\.": "model.multi_modal_projector.linear_2.",
    r"^shared\.": "model.language_model.shared.",
    r"^encoder\.": "model.language_model.encoder.",
    r"^decoder\.": "model.language_model.decoder.",
}
_DUPLICATE_EMBEDDING_KEYS = ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight", "embed_tokens.weight")
ORIGINAL_PROJECTOR_NAME = "mm_projector.bin"


# ---------------------------------------------------------------------------------------------------------------------
# Config


def is_original_config(config_dict: dict[str, Any]) -> bool:
    """Whether a config.json dict is in the original (LLaVA-fork) layout rather than ours."""
    return config_dict.get("model_type") in ("t5", "clip_t5") and "mm_vision_tower" in config_dict


def read_original_config(name_or_path: str | os.PathLike, **kwargs) -> dict[str, Any] | None:
    """The config.json dict if `name_or_path` (folder or Hub id) holds an original-layout checkpoint, else None."""
    try:
        config_file = cached_file(
            str(name_or_path), "config.json", _raise_exceptions_for_missing_entries=False, **hub_kwargs(kwargs)
        )
    except OSError:
        return None
    if config_file is None:
        return None
    with open(config_file, encoding="utf-8") as handle:
        config_dict = json.load(handle)
    return config_dict if is_original_config(config_dict) else None


def original_vision_config(tower: str) -> CLIPVisionConfig:
    """The config of the vision tower an original config names (`mm_vision_tower`): known offline for
    `openai/clip-vit-large-patch14-336`, read from the tower's own folder or Hub repo for any other."""
    if tower == CLIP_VIT_L_14_336:
        return CLIPVisionConfig(**CLIP_VIT_L_14_336_VISION_CONFIG)
    return CLIPVisionConfig.from_pretrained(tower)


def original_vision_settings(original: dict[str, Any], num_vision_layers: int | None = None) -> dict[str, Any]:
    """
    The projector and vision-feature settings of an original config's `mm_*` fields, as [`CLIPFlanT5Config`]'s
    `vision_feature_layer` and `vision_feature_select_strategy`; raises `ValueError` for a setting CLIP-FlanT5 does
    not implement. The one reading of these fields, for stage-2 checkpoints and stage-1 projectors alike.

    `mm_vision_select_layer` is checked against `num_vision_layers` when given (a projector converted on its own);
    the model path leaves that to [`CLIPFlanT5Config`], which knows the tower.
    """
    # LLaVA builds a linear projector when the field is absent; CLIP-FlanT5 only implements mlp2x_gelu.
    projector_type = original.get("mm_projector_type", "linear")
    if projector_type != "mlp2x_gelu":
        stated = (
            f"mm_projector_type {projector_type!r}"
            if "mm_projector_type" in original
            else ("A config without mm_projector_type (LLaVA's 'linear')")
        )
        raise ValueError(f"{stated} is not supported: CLIP-FlanT5 checkpoints use 'mlp2x_gelu'.")
    if original.get("mm_use_im_start_end") or original.get("mm_use_im_patch_token"):
        raise ValueError("Checkpoints with mm_use_im_start_end or mm_use_im_patch_token are not supported.")
    select_feature = original.get("mm_vision_select_feature", "patch")
    if select_feature not in _ORIGINAL_SELECT_FEATURE:
        raise ValueError(
            f"mm_vision_select_feature {select_feature!r} is not one of {list(_ORIGINAL_SELECT_FEATURE)}."
        )
    layer = original.get("mm_vision_select_layer", -2)
    if not isinstance(layer, int) or isinstance(layer, bool):
        raise ValueError(f"mm_vision_select_layer {layer!r} is not an integer (-2 for the CLIP-FlanT5 checkpoints).")
    if num_vision_layers is not None:
        check_vision_feature_layer(layer, num_vision_layers, name="mm_vision_select_layer")
    return {"vision_feature_layer": layer, "vision_feature_select_strategy": _ORIGINAL_SELECT_FEATURE[select_feature]}


def config_from_original(
    original: dict[str, Any], vision_config: CLIPVisionConfig | dict | None = None, **kwargs
) -> CLIPFlanT5Config:
    """
    Translate the flat config.json of an original CLIP-FlanT5 checkpoint (a T5 config with LLaVA `mm_*` fields,
    `model_type` "t5" or "clip_t5") into a [`CLIPFlanT5Config`].

    `vision_config` is only needed for a tower other than `openai/clip-vit-large-patch14-336`; pass the tower's
    `CLIPVisionConfig`, or let it be read from the tower's own folder or Hub repo.
    """
    if not is_original_config(original):
        raise ValueError(
            "This config.json is not an original CLIP-FlanT5 config: it needs model_type 't5' or 'clip_t5' and an "
            "'mm_vision_tower' field."
        )
    if vision_config is None:
        vision_config = original_vision_config(original["mm_vision_tower"])
    elif isinstance(vision_config, dict):
        vision_config = CLIPVisionConfig(**vision_config)
    vision_settings = original_vision_settings(original)
    mm_hidden_size = original.get("mm_hidden_size", vision_config.hidden_size)
    if mm_hidden_size != vision_config.hidden_size:
        raise ValueError(
            f"mm_hidden_size {mm_hidden_size} differs from the vision tower's hidden_size {vision_config.hidden_size}."
        )

    text_kwargs = {key: original[key] for key in _T5_KEYS if key in original}
    # Original T5 (v1.0) configs omit tie_word_embeddings and tie + rescale; FlanT5 says false.
    tied = original.get("tie_word_embeddings", True)
    text_kwargs["tie_word_embeddings"] = tied
    return CLIPFlanT5Config(
        vision_config=vision_config,
        text_config=T5Config(**text_kwargs),
        **vision_settings,
        tie_word_embeddings=tied,
        **kwargs,
    )


# ---------------------------------------------------------------------------------------------------------------------
# Processor


def original_image_processor(original: dict[str, Any]) -> CLIPFlanT5ImageProcessor:
    """The preprocessing an original checkpoint used: its tower's CLIP settings, padded to square for stage 2."""
    tower = original.get("mm_vision_tower", CLIP_VIT_L_14_336)
    do_pad = original.get("image_aspect_ratio") == "pad"
    if tower == CLIP_VIT_L_14_336:
        return CLIPFlanT5ImageProcessor(do_pad=do_pad)
    # Any other tower: read its own preprocessing settings (a local folder or a Hub id).
    settings = CLIPImageProcessorPil.from_pretrained(tower).to_dict()
    settings.pop("image_processor_type", None)
    return CLIPFlanT5ImageProcessor(**settings, do_pad=do_pad)


def load_original_processor(name_or_path: str | os.PathLike, **kwargs) -> CLIPFlanT5Processor | None:
    """A processor for an original checkpoint (its tokenizer + its tower's preprocessing), or None for ours."""
    original = read_original_config(name_or_path, **kwargs)
    if original is None:
        return None
    tokenizer = AutoTokenizer.from_pretrained(name_or_path, **hub_kwargs(kwargs))
    image_token_id = tokenizer.get_vocab().get(DEFAULT_IMAGE_TOKEN, len(tokenizer))
    config = config_from_original(original, image_token_id=image_token_id)
    return CLIPFlanT5Processor(
        image_processor=original_image_processor(original),
        tokenizer=tokenizer,
        image_seq_length=config.image_seq_length,
    )


# ---------------------------------------------------------------------------------------------------------------------
# Model


def load_original_model(
    model_class: type[CLIPFlanT5PreTrainedModel], name_or_path: str | os.PathLike, *model_args, **kwargs
) -> CLIPFlanT5PreTrainedModel | None:
    """
    `model_class.from_pretrained` for an original-layout checkpoint: config translated, keys renamed on the fly, `.bin`
    shards read with `weights_only=True`. None when `name_or_path` is not in the original layout.
    """
    if kwargs.get("config") is not None or name_or_path is None:
        return None
    original = read_original_config(name_or_path, **kwargs)
    if original is None:
        return None
    kwargs["config"] = config_from_original(original, image_token_id=_original_image_token_id(name_or_path, kwargs))
    kwargs["key_mapping"] = {**ORIGINAL_KEY_MAPPING, **(kwargs.pop("key_mapping", None) or {})}
    kwargs["weights_only"] = True
    want_loading_info = kwargs.pop("output_loading_info", False)
    allowed = set(kwargs.pop("allowed_unmatched_keys", None) or ())
    ignore_mismatched_sizes = kwargs.pop("ignore_mismatched_sizes", False)
    # transformers would log the set-aside embedding copies as unexpected keys; the check below reports what matters.
    # Its report of mismatched shapes is muted with them, so mismatches are collected (ignore_mismatched_sizes) and
    # refused by that check, with the keys named.
    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()
    try:
        model, loading_info = model_class.from_pretrained(
            name_or_path, *model_args, output_loading_info=True, ignore_mismatched_sizes=True, **kwargs
        )
    except (pickle.UnpicklingError, RuntimeError, OSError, EOFError) as error:
        # torch names neither the shard it could not read nor, for a refused pickle, anything but weights_only=False.
        damaged = _damaged_pickles(name_or_path, kwargs)
        if damaged:
            raise ValueError(f"Cannot load the original checkpoint {name_or_path}: {'; '.join(damaged)}") from error
        raise
    finally:
        transformers_logging.set_verbosity(verbosity)
    _check_all_weights_matched(loading_info, allowed, name_or_path, ignore_mismatched_sizes)
    _check_duplicate_embeddings(model, name_or_path, kwargs)
    # save_pretrained would otherwise revert the key mapping and write original key names beside our config, a folder
    # that loads with random weights. The config is ours now, so the keys must be too.
    model._weight_conversions = []
    return (model, loading_info) if want_loading_info else model


def _check_all_weights_matched(
    loading_info: dict[str, Any], allowed: set[str], name_or_path, ignore_mismatched_sizes: bool = False
) -> None:
    """Refuse a checkpoint with weights missing (they would stay random), left over (a layout we do not know) or of
    another shape (unless `ignore_mismatched_sizes`, transformers' opt-in to leave those random)."""
    missing = sorted(set(loading_info.get("missing_keys", ())) - allowed)
    unexpected = sorted(
        key
        for key in loading_info.get("unexpected_keys", ())
        if key not in allowed and not key.startswith("original_duplicate_embedding.")
    )
    mismatched = []
    if not ignore_mismatched_sizes:
        # transformers reports (key, checkpoint shape, model shape), or the key alone.
        items = [item if isinstance(item, tuple) else (item,) for item in loading_info.get("mismatched_keys", ())]
        mismatched = sorted(
            f"{item[0]} (checkpoint {tuple(item[1])}, model {tuple(item[2])})" if len(item) == 3 else str(item[0])
            for item in items
            if item[0] not in allowed
        )
    problems = []
    if missing:
        problems.append(f"missing from the checkpoint (they would be left random): {_some(missing)}")
    if unexpected:
        problems.append(f"in the checkpoint but not in the model: {_some(unexpected)}")
    if mismatched:
        problems.append(
            f"with shapes that differ from the model's, which config.json sets (d_model, ...): {_some(mismatched)}"
        )
    if problems:
        raise ValueError(
            f"The original checkpoint {name_or_path} does not match CLIP-FlanT5: weights "
            + "; weights ".join(problems)
            + ". The checkpoint is incomplete or not a CLIP-FlanT5 checkpoint. If you know these keys are harmless, "
            "pass allowed_unmatched_keys=[...] naming them (keys as the model names them)."
        )


def _some(keys: list[str], shown: int = 10) -> str:
    # A config that disagrees with the weights mismatches nearly every key: the first few say it, the count the rest.
    return str(keys) if len(keys) <= shown else f"{keys[:shown]} and {len(keys) - shown} more"


def _original_image_token_id(name_or_path, kwargs: dict[str, Any]) -> int:
    """The id `<image>` gets when added to the checkpoint's own tokenizer (32100 for FlanT5's), as the processor does."""
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(name_or_path), **hub_kwargs(kwargs))
    except (OSError, ValueError):
        return 32100
    return tokenizer.get_vocab().get(DEFAULT_IMAGE_TOKEN, len(tokenizer))


def _checkpoint_files(name_or_path: str | os.PathLike, kwargs: dict[str, Any]) -> list[str]:
    hub = hub_kwargs(kwargs)
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        index_file = cached_file(str(name_or_path), index_name, _raise_exceptions_for_missing_entries=False, **hub)
        if index_file is not None:
            with open(index_file, encoding="utf-8") as handle:
                weight_map = json.load(handle)["weight_map"]
            return [cached_file(str(name_or_path), name, **hub) for name in sorted(set(weight_map.values()))]
    for single in ("model.safetensors", "pytorch_model.bin"):
        found = cached_file(str(name_or_path), single, _raise_exceptions_for_missing_entries=False, **hub)
        if found is not None:
            return [found]
    return []


def _damaged_pickles(name_or_path: str | os.PathLike, kwargs: dict[str, Any]) -> list[str]:
    """What is wrong with each `.bin` file of the checkpoint that cannot be loaded (refused or damaged)."""
    try:
        files = _checkpoint_files(name_or_path, kwargs)
    except (OSError, ValueError):  # a missing shard or a cut-off index: transformers' error says so
        return []
    return [problem for path in files if path.endswith(".bin") and (problem := pickle_problem(path))]


def _check_duplicate_embeddings(model: PreTrainedModel, name_or_path, kwargs: dict[str, Any]) -> None:
    """Warn if an original checkpoint's embedding copies differ from `shared.weight` (which is the one loaded)."""
    from safetensors import safe_open

    shared = model.get_input_embeddings().weight
    for path in _checkpoint_files(name_or_path, kwargs):
        if path.endswith(".safetensors"):
            with safe_open(path, framework="pt") as handle:
                copies = {key: handle.get_tensor(key) for key in _DUPLICATE_EMBEDDING_KEYS if key in handle.keys()}
        else:
            state = load_pickled_tensors(path, mmap=True)
            copies = {key: state[key] for key in _DUPLICATE_EMBEDDING_KEYS if key in state}
            del state
        for key, tensor in copies.items():
            if tensor.shape != shared.shape or not torch.equal(
                tensor.to(shared.device, shared.dtype), shared.detach()
            ):
                warnings.warn(
                    f"The checkpoint's {key} differs from shared.weight; CLIP-FlanT5 uses shared.weight for the "
                    "encoder, the decoder and the input embedding, as the original model did at run time.",
                    stacklevel=3,
                )


# ---------------------------------------------------------------------------------------------------------------------
# Stage-1 projector (`mm_projector.bin`)


def _original_projector_state(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of an `mm_projector.bin`, renamed to our projector's (`linear_1.weight`, ...) and checked to make
    one mlp2x_gelu projector; a file that does not raises `ValueError` naming it and what is wrong."""
    state = load_pickled_tensors(path)
    layout = "an mm_projector.bin holds the tensors mm_projector.{0,2}.{weight,bias}"
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds a {type(state).__name__}, not a dict of tensors: {layout}.")
    names = {"0": "linear_1", "2": "linear_2"}
    renamed = {}
    for key, tensor in state.items():
        if not isinstance(key, str) or "mm_projector." not in key:
            continue
        # The prefix before `mm_projector.` varies between releases (`model.` or none).
        index, _, param = key.split("mm_projector.", 1)[1].partition(".")
        if index not in names or param not in ("weight", "bias"):
            raise ValueError(f"Unexpected projector key {key!r} in {path}: {layout}.")
        if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point():
            found = tensor.dtype if isinstance(tensor, torch.Tensor) else type(tensor).__name__
            raise ValueError(f"{key} in {path} is {found}, not a floating-point tensor: the file is not a projector.")
        renamed[f"{names[index]}.{param}"] = tensor
    if not renamed:
        raise ValueError(f"{path} holds no 'mm_projector.' tensors; is it a stage-1 projector file? ({layout})")
    # Our name -> the file's (without its release-dependent prefix), for the messages.
    original_names = {
        f"{ours}.{param}": f"mm_projector.{index}.{param}"
        for index, ours in names.items()
        for param in ("weight", "bias")
    }
    missing = sorted(original for ours, original in original_names.items() if ours not in renamed)
    if missing:
        raise ValueError(f"{path} lacks the projector tensors {missing}: {layout}.")
    shapes = {name: tuple(tensor.shape) for name, tensor in renamed.items()}
    text_hidden = shapes["linear_1.weight"][0]
    vision_hidden = shapes["linear_1.weight"][1] if len(shapes["linear_1.weight"]) == 2 else None
    expected = {
        "linear_1.weight": (text_hidden, vision_hidden),
        "linear_1.bias": (text_hidden,),
        "linear_2.weight": (text_hidden, text_hidden),
        "linear_2.bias": (text_hidden,),
    }
    if shapes != expected:
        found = {original_names[name]: shape for name, shape in sorted(shapes.items())}
        raise ValueError(
            f"{path} holds projector tensors of shapes {found}, which do not make one mlp2x_gelu projector "
            "(mm_projector.0.weight text x vision, mm_projector.2.weight text x text, biases of the text width)."
        )
    return renamed


def load_original_projector(
    model, path_or_repo: str | os.PathLike, filename: str = ORIGINAL_PROJECTOR_NAME, **kwargs
) -> None:
    """
    Load a stage-1 `mm_projector.bin` (from a file, a folder or a Hub repo such as
    `zhiqiulin/clip-flant5-xxl-stage-1`) into `model`'s projector (a CLIP-FlanT5 model or the projector itself).
    """
    path = str(path_or_repo)
    if not os.path.isfile(path):
        path = cached_file(path, filename, **hub_kwargs(kwargs))
    state = _original_projector_state(path)
    projector = model
    if not isinstance(model, CLIPFlanT5MultiModalProjector):
        projector = getattr(model, "model", model).multi_modal_projector
    expected = projector.state_dict()
    for name, tensor in state.items():
        if name in expected and tuple(tensor.shape) != tuple(expected[name].shape):
            raise ValueError(
                f"Projector tensor {name} in {path} has shape {tuple(tensor.shape)}, the model expects "
                f"{tuple(expected[name].shape)}: the projector was trained for another vision tower or T5 size."
            )
    projector.load_state_dict(state, strict=True)


def read_original_projector(path: str | os.PathLike) -> CLIPFlanT5MultiModalProjector:
    """The original `mm_projector.bin` at `path` as a projector module, in the dtype it was stored in."""
    state = _original_projector_state(path)
    text_hidden, vision_hidden = state["linear_1.weight"].shape
    projector = CLIPFlanT5MultiModalProjector(
        SimpleNamespace(
            vision_config=SimpleNamespace(hidden_size=vision_hidden),
            text_config=SimpleNamespace(d_model=text_hidden),
            projector_hidden_act="gelu",  # the original's mlp2x_gelu
        )
    )
    projector.load_state_dict(state, strict=True)
    return projector.to(state["linear_1.weight"].dtype)
