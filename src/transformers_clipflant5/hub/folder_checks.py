# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""Checks that a written folder is complete: a self-contained CLIP-FlanT5 Hub folder, or a stage-1 projector folder."""

import json
from pathlib import Path
from typing import Any

from safetensors import safe_open

from ..projector import PROJECTOR_CONFIG_NAME, PROJECTOR_FORMAT, PROJECTOR_WEIGHTS_NAME
from .publish import folder_files, is_pickle


REMOTE_CODE_FILES = (
    "configuration_clip_flant5.py",
    "modeling_clip_flant5.py",
    "input_checks_clip_flant5.py",
    "processing_clip_flant5.py",
    "image_processing_clip_flant5.py",
)
# Tied aliases of `shared.weight` that must not be stored a second time.
_TIED_ALIASES = (
    "model.language_model.encoder.embed_tokens.weight",
    "model.language_model.decoder.embed_tokens.weight",
)


def _read_json(path: Path, problems: list[str]) -> dict[str, Any]:
    """The JSON object in `path`, or {} with the problem (missing, not JSON, not an object) added to `problems`."""
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        problems.append(f"{path.name} is missing")
    except ValueError as error:
        problems.append(f"{path.name} is not valid JSON ({error})")
    else:
        if isinstance(content, dict):
            return content
        problems.append(f"{path.name} holds a JSON {type(content).__name__}, not an object")
    return {}


def _json_object(config: dict[str, Any], key: str, file: str, problems: list[str]) -> dict[str, Any]:
    """`config[key]` when it is a JSON object, else {} with the problem added to `problems`."""
    value = config.get(key)
    if isinstance(value, dict):
        return value
    problems.append(f"{file} {key} is {json.dumps(value)}, not an object")
    return {}


def _files_and_pickles(folder: Path) -> tuple[list[str], list[str]]:
    """The files of `folder`, and the first problem of any folder we publish: pickles (if there are any)."""
    files = folder_files(folder)
    pickles = [name for name in files if is_pickle(name)]
    return files, [f"pickle files present: {pickles}"] if pickles else []


def safetensors_keys(folder: str | Path) -> dict[str, list[str]]:
    """The tensor names stored in each `*.safetensors` file of `folder`."""
    folder = Path(folder)
    keys = {}
    for path in sorted(folder.glob("*.safetensors")):
        with safe_open(path, framework="pt") as handle:
            keys[path.name] = list(handle.keys())
    return keys


def check_model_folder(folder: str | Path) -> None:
    """
    Raise `ValueError` listing every problem if `folder` is not a complete, self-contained CLIP-FlanT5 Hub folder:
    config with `auto_map`, generation config, safetensors weights with each tensor once (index consistent, no tied
    alias stored twice), no pickle, processor with chat template, remote-code files, model card.
    """
    folder = Path(folder)
    files, problems = _files_and_pickles(folder)
    config = _read_json(folder / "config.json", problems)
    if config and config.get("model_type") != "clip_flant5":
        problems.append(f"config.json has model_type {config.get('model_type')!r}, expected 'clip_flant5'")
    auto_map = config.get("auto_map", {})
    for auto_class in ("AutoConfig", "AutoModelForImageTextToText"):
        if auto_class not in auto_map:
            problems.append(f"config.json auto_map lacks {auto_class}")
    processor_config = _read_json(folder / "processor_config.json", problems)
    if processor_config and "AutoProcessor" not in processor_config.get("auto_map", {}):
        problems.append("processor_config.json auto_map lacks AutoProcessor")
    if "chat_template.jinja" not in files and not processor_config.get("chat_template"):
        problems.append("no chat template (chat_template.jinja)")
    for name in (*REMOTE_CODE_FILES, "generation_config.json", "tokenizer_config.json", "README.md"):
        if name not in files:
            problems.append(f"{name} is missing")

    stored = safetensors_keys(folder)
    if not stored:
        problems.append("no *.safetensors weights")
    all_keys = [key for keys in stored.values() for key in keys]
    duplicates = sorted({key for key in all_keys if all_keys.count(key) > 1})
    if duplicates:
        problems.append(f"tensors stored in several shards: {duplicates[:5]}")
    aliases = sorted(set(all_keys) & set(_TIED_ALIASES))
    if aliases:
        problems.append(f"tied copies of the shared embedding stored again: {aliases}")
    text_config = _json_object(config, "text_config", "config.json", problems) if config else {}
    if config:
        _json_object(config, "vision_config", "config.json", problems)
    tied = config.get("tie_word_embeddings", text_config.get("tie_word_embeddings", False))
    if all_keys and tied and "lm_head.weight" in all_keys:
        problems.append("lm_head.weight is stored although tie_word_embeddings is true (a duplicate of shared)")
    if all_keys and not tied and "lm_head.weight" not in all_keys:
        problems.append("lm_head.weight is missing although tie_word_embeddings is false")
    if all_keys and "model.language_model.shared.weight" not in all_keys:
        problems.append("model.language_model.shared.weight is missing")
    if all_keys and not any(key.startswith("model.vision_tower.") for key in all_keys):
        problems.append("the vision tower weights are missing")
    if len(stored) > 1 or "model.safetensors.index.json" in files:
        index = _read_json(folder / "model.safetensors.index.json", problems)
        weight_map = index.get("weight_map", {})
        if weight_map and (set(weight_map) != set(all_keys) or set(weight_map.values()) != set(stored)):
            problems.append("model.safetensors.index.json does not match the shard files")
    if problems:
        raise ValueError(f"{folder} is not a complete CLIP-FlanT5 Hub folder:\n  - " + "\n  - ".join(problems))


def check_projector_folder(folder: str | Path) -> None:
    """Raise `ValueError` listing every problem if `folder` is not a complete projector folder of ours."""
    folder = Path(folder)
    files, problems = _files_and_pickles(folder)
    for name in (PROJECTOR_WEIGHTS_NAME, PROJECTOR_CONFIG_NAME, "README.md"):
        if name not in files:
            problems.append(f"{name} is missing")
    sizes = ("text_hidden_size", "vision_hidden_size")
    config, config_read = {}, False
    if PROJECTOR_CONFIG_NAME in files:
        reported = len(problems)
        config = _read_json(folder / PROJECTOR_CONFIG_NAME, problems)
        config_read = len(problems) == reported
    if config_read:
        # A JSON object (even {}): what load_projector reads must be there, or it would load with nothing checked.
        if config.get("format") != PROJECTOR_FORMAT:
            problems.append(
                f"{PROJECTOR_CONFIG_NAME} has format {config.get('format')!r}, expected {PROJECTOR_FORMAT!r}"
            )
        missing = [key for key in sizes if not isinstance(config.get(key), int)]
        if missing:
            problems.append(f"{PROJECTOR_CONFIG_NAME} lacks the integer(s) {missing}")
    if PROJECTOR_WEIGHTS_NAME in files and all(isinstance(config.get(key), int) for key in sizes):
        expected = {
            "linear_1.weight": (config["text_hidden_size"], config["vision_hidden_size"]),
            "linear_1.bias": (config["text_hidden_size"],),
            "linear_2.weight": (config["text_hidden_size"], config["text_hidden_size"]),
            "linear_2.bias": (config["text_hidden_size"],),
        }
        with safe_open(folder / PROJECTOR_WEIGHTS_NAME, framework="pt") as handle:
            shapes = {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}
        if shapes != expected:
            problems.append(f"{PROJECTOR_WEIGHTS_NAME} holds {shapes}, expected {expected}")
    if problems:
        raise ValueError(f"{folder} is not a complete projector folder:\n  - " + "\n  - ".join(problems))


__all__ = ["REMOTE_CODE_FILES", "check_model_folder", "check_projector_folder", "safetensors_keys"]
