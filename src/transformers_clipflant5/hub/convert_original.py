# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""Convert original CLIP-FlanT5 checkpoints to self-contained transformers Hub folders.

The original repos (`zhiqiulin/clip-flant5-xxl`, `-xl`, their stage-1 projectors and the ablations) hold a flat T5
config with LLaVA `mm_*` fields and pickled `pytorch_model*.bin` files with LLaVA key names and the embedding stored
four times (read by `original.checkpoint`). A converted folder holds:

- `config.json` (a `clip_flant5` config with `auto_map`) and `generation_config.json`;
- `model*.safetensors` in transformers' key names, vision tower included, each tensor stored once;
- the processor (`processor_config.json`, tokenizer files with `<image>`, `chat_template.jinja`);
- the remote-code files (`hub.folder_checks.REMOTE_CODE_FILES`: configuration, modeling and its input checks,
  processing, image processing);
- a model card (`README.md`).

A stage-1 repo (`config.json` + `mm_projector.bin`) becomes `projector.safetensors` + `projector_config.json` + card.
The command line is `clip-flant5 convert` (`clip_flant5_cli/convert/`); publishing is `hub.publish`.
"""

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import torch
from transformers.utils import cached_file
from transformers.utils.hub import convert_file_size_to_int

from clip_flant5_choices import CONVERT_DTYPES

from ..hub_kwargs import hub_kwargs
from ..modeling_clip_flant5 import CLIPFlanT5ForConditionalGeneration
from ..original.checkpoint import (
    CLIP_VIT_L_14_336,
    ORIGINAL_PROJECTOR_NAME,
    original_vision_config,
    original_vision_settings,
    read_original_projector,
)
from ..original.release import OriginalCheckpoint, find_original_checkpoint
from ..output_lock import exclusive_output
from ..processing_clip_flant5 import CLIPFlanT5Processor
from ..projector import PROJECTOR_CONFIG_NAME, PROJECTOR_WEIGHTS_NAME, save_projector
from .folder_checks import check_model_folder, check_projector_folder
from .model_card import is_hub_id, render_model_card, render_projector_card


DTYPES = {name: getattr(torch, name) for name in CONVERT_DTYPES}
MODEL_WEIGHT_FILES = (
    "model.safetensors.index.json",
    "model.safetensors",
    "pytorch_model.bin.index.json",
    "pytorch_model.bin",
)
_DEEPEST_CLIP_TOWER_LAYERS = 48


@dataclass
class ConversionResult:
    """What `convert` wrote: the kind of checkpoint and the output folder."""

    kind: Literal["model", "projector"]
    folder: Path
    repo_id: str


@dataclass
class ConversionSettings:
    """
    How `convert` reads the source and what the written folder says: the weights' `dtype` (default: the source's
    own), where a Hub source is read (`source_revision`, `cache_dir`), and for the model card the repo id its usage
    snippets name (`repo_id`), the base text model (`text_model`) and the original checkpoint it is (`checkpoint`).
    """

    dtype: str | None = None
    repo_id: str | None = None
    text_model: str | None = None
    source_revision: str | None = None
    cache_dir: str | None = None
    checkpoint: OriginalCheckpoint | None = None

    def hub_kwargs(self) -> dict[str, Any]:
        return hub_kwargs({"revision": self.source_revision, "cache_dir": self.cache_dir})

    def card_repo_id(self, output_dir: Path) -> str:
        return self.repo_id or f"your-username/{output_dir.resolve().name}"


def detect_source_kind(source: str, revision: str | None = None, cache_dir: str | None = None) -> str:
    """`"model"` for a stage-2 checkpoint (original layout or ours), `"projector"` for a stage-1 projector repo."""
    hub = hub_kwargs({"revision": revision, "cache_dir": cache_dir})

    def exists(filename: str) -> bool:
        return cached_file(source, filename, _raise_exceptions_for_missing_entries=False, **hub) is not None

    if any(exists(name) for name in MODEL_WEIGHT_FILES):
        return "model"
    if exists(ORIGINAL_PROJECTOR_NAME):
        return "projector"
    if exists(PROJECTOR_WEIGHTS_NAME):
        raise ValueError(f"{source} already holds a converted projector ({PROJECTOR_WEIGHTS_NAME}); nothing to do.")
    raise OSError(
        f"{source} holds no checkpoint: expected model weights ({', '.join(MODEL_WEIGHT_FILES)}) or a stage-1 "
        f"{ORIGINAL_PROJECTOR_NAME}. Pass a folder or a Hub repo id such as zhiqiulin/clip-flant5-xxl (with "
        "HF_HUB_OFFLINE=1 it must already be in the Hugging Face cache)."
    )


def prepare_output_dir(output_dir: str | Path, source: str, overwrite: bool = False) -> Path:
    """
    Check that `output_dir` may receive a conversion: refuse a non-empty one unless `overwrite` and it holds a
    previous conversion. Nothing is deleted here: `convert` writes into a temporary sibling folder and replaces
    `output_dir` with it only once the new conversion is complete and checked.
    """
    folder = Path(output_dir)
    source_path = Path(source)
    if source_path.exists():
        resolved, resolved_source = folder.resolve(), source_path.resolve()
        if resolved == resolved_source or resolved in resolved_source.parents:
            raise ValueError(f"The output folder {folder} contains the source {source}: choose another output folder.")
        if resolved_source in resolved.parents:
            raise ValueError(
                f"The output folder {folder} is inside the source {source}: choose another output folder."
            )
    if folder.exists() and not folder.is_dir():
        raise FileExistsError(f"The output folder {folder} is a file: choose a folder name.")
    if folder.exists() and any(folder.iterdir()):
        if not overwrite:
            raise FileExistsError(
                f"The output folder {folder} is not empty. Choose a new folder, or pass --overwrite to replace a "
                "previous conversion there."
            )
        if not _is_previous_conversion(folder):
            raise FileExistsError(
                f"The output folder {folder} is not empty and does not hold a previous conversion (no clip_flant5 "
                "config.json or projector_config.json); refusing to delete it. Choose another folder."
            )
    folder.parent.mkdir(parents=True, exist_ok=True)
    return folder


def _replace_folder(new: Path, folder: Path) -> None:
    """Put the complete folder `new` at `folder` by renames (atomic on one file system); a previous `folder` is
    deleted only once `new` has taken its place, and restored if the rename fails."""
    if not folder.exists():
        os.replace(new, folder)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.replaced-", dir=folder.parent))
    os.replace(folder, old)
    try:
        os.replace(new, folder)
    except OSError:
        os.replace(old, folder)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _is_previous_conversion(folder: Path) -> bool:
    if (folder / PROJECTOR_CONFIG_NAME).is_file():
        return True
    try:
        return json.loads((folder / "config.json").read_text(encoding="utf-8")).get("model_type") == "clip_flant5"
    except (OSError, ValueError):
        return False


def convert_model(
    source: str, output_dir: str | Path, settings: ConversionSettings, max_shard_size: str | int = "5GB"
) -> Path:
    """
    Convert a stage-2 checkpoint (original layout, or ours to re-shard / re-cast) into `output_dir`.

    The weights are loaded once, directly in the target dtype (`dtype`, default: the checkpoint's own), so the
    conversion never holds two copies of them.
    """
    output_dir = Path(output_dir)
    hub = settings.hub_kwargs()
    dtype = DTYPES[settings.dtype] if settings.dtype else "auto"
    model = CLIPFlanT5ForConditionalGeneration.from_pretrained(source, dtype=dtype, **hub)
    processor = CLIPFlanT5Processor.from_pretrained(source, **hub)
    _check_processor_matches(model.config, processor, source)
    # save_original_format=False: write our key names whatever the checkpoint was loaded from.
    model.save_pretrained(output_dir, max_shard_size=max_shard_size, save_original_format=False)
    processor.save_pretrained(output_dir)
    card = render_model_card(
        model.config,
        repo_id=settings.card_repo_id(output_dir),
        source=source,
        source_revision=settings.source_revision,
        checkpoint=settings.checkpoint,
        text_model=settings.text_model,
        dtype=str(model.dtype).removeprefix("torch."),
        num_parameters=model.num_parameters(),
        do_pad=processor.image_processor.do_pad,
    )
    card.save(output_dir / "README.md")
    return output_dir


def _check_processor_matches(config, processor: CLIPFlanT5Processor, source: str) -> None:
    mismatches = [
        f"{name}: model {getattr(config, config_name)!r}, processor {getattr(processor, name)!r}"
        for name, config_name in (
            ("image_token_id", "image_token_id"),
            ("image_seq_length", "image_seq_length"),
        )
        if getattr(processor, name) != getattr(config, config_name)
    ]
    if mismatches:
        raise ValueError(
            f"The processor and the model read from {source} disagree ({'; '.join(mismatches)}): the checkpoint's "
            "tokenizer or configuration is inconsistent, and the converted model would score wrongly."
        )


def convert_projector(source: str, output_dir: str | Path, settings: ConversionSettings) -> Path:
    """Convert an original stage-1 repo (`config.json` + `mm_projector.bin`) into our projector format."""
    output_dir = Path(output_dir)
    hub = settings.hub_kwargs()
    weights_file = cached_file(source, ORIGINAL_PROJECTOR_NAME, **hub)
    config_file = cached_file(source, "config.json", _raise_exceptions_for_missing_entries=False, **hub)
    flat = json.loads(Path(config_file).read_text(encoding="utf-8")) if config_file else {}
    projector = read_original_projector(weights_file)
    vision_hidden, text_hidden = projector.linear_1.in_features, projector.linear_2.out_features
    for key, actual in (("mm_hidden_size", vision_hidden), ("d_model", text_hidden)):
        if key in flat and flat[key] != actual:
            raise ValueError(
                f"{source}/config.json says {key}={flat[key]} but {ORIGINAL_PROJECTOR_NAME} has {actual}: the repo is "
                "inconsistent."
            )
    vision_model = flat.get("mm_vision_tower", CLIP_VIT_L_14_336)
    # A bare mm_projector.bin states no settings: the weights are mlp2x_gelu's, the feature settings the defaults.
    vision_settings = {}
    if config_file:
        try:
            vision_settings = original_vision_settings(flat, _vision_layer_count(vision_model))
        except ValueError as error:
            raise ValueError(f"{source}/config.json: {error}") from error
    checkpoint = settings.checkpoint or find_original_checkpoint(source)
    recorded_text_model = flat.get("_name_or_path") if is_hub_id(flat.get("_name_or_path")) else None
    text_model = settings.text_model or (checkpoint.text_model if checkpoint else None) or recorded_text_model
    target_dtype = DTYPES[settings.dtype] if settings.dtype else projector.linear_1.weight.dtype
    save_projector(
        projector,
        output_dir,
        text_model=text_model,
        vision_model=vision_model if is_hub_id(vision_model) else None,
        dtype=target_dtype,
        source=source if is_hub_id(source) else Path(source).name,
        **vision_settings,
    )
    card = render_projector_card(
        repo_id=settings.card_repo_id(output_dir),
        vision_hidden_size=vision_hidden,
        text_hidden_size=text_hidden,
        text_model=text_model,
        vision_model=vision_model if is_hub_id(vision_model) else None,
        dtype=str(target_dtype).removeprefix("torch."),
        source=source,
        source_revision=settings.source_revision,
        checkpoint=checkpoint,
    )
    card.save(output_dir / "README.md")
    return output_dir


def _vision_layer_count(tower: str) -> int:
    """The number of layers of `tower`, to check the projector's `mm_vision_select_layer` against."""
    try:
        return original_vision_config(tower).num_hidden_layers
    except (OSError, ValueError):
        # A stage-1 repo holds no tower; one that cannot be read here (offline, say) is bounded by the deepest CLIP
        # towers (ViT-bigG/14: 48 layers), which still refuses an index no tower has.
        return _DEEPEST_CLIP_TOWER_LAYERS


def convert(
    source: str,
    output_dir: str | Path,
    *,
    dtype: str | None = None,
    max_shard_size: str | int = "5GB",
    repo_id: str | None = None,
    text_model: str | None = None,
    source_revision: str | None = None,
    cache_dir: str | None = None,
    overwrite: bool = False,
    checkpoint: OriginalCheckpoint | None = None,
) -> ConversionResult:
    """
    Convert `source` (a folder or Hub repo id: a stage-2 checkpoint or a stage-1 projector repo) into `output_dir`,
    then check the result ([`check_model_folder`] / [`check_projector_folder`]). `repo_id` is the repo the card's
    usage snippets name (default: the push target, else a placeholder). `checkpoint` says which checkpoint of the
    original release `source` is (found from a `zhiqiulin/<name>` id otherwise): its card, notes and results.
    """
    if dtype is not None and dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}.")
    convert_file_size_to_int(max_shard_size)  # fails early, with transformers' own message, on a bad size
    kind = detect_source_kind(source, source_revision, cache_dir)
    folder = prepare_output_dir(output_dir, source, overwrite=overwrite)
    settings = ConversionSettings(dtype, repo_id, text_model, source_revision, cache_dir, checkpoint)
    # The card names the final folder, not the staging one.
    settings = replace(settings, repo_id=settings.card_repo_id(folder))
    # One conversion per output folder at a time: a second one is refused before it writes anything.
    with exclusive_output(folder, "the output folder"):
        # Written beside the output folder (same file system, so the final rename is atomic), hidden by its dot.
        staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.converting-", dir=folder.parent))
        try:
            if kind == "model":
                convert_model(source, staging, settings, max_shard_size=max_shard_size)
                check_model_folder(staging)
            else:
                convert_projector(source, staging, settings)
                check_projector_folder(staging)
            staging.chmod(0o777 & ~_umask())  # mkdtemp's 0o700, made what mkdir would have given
            _replace_folder(staging, folder)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return ConversionResult(kind=kind, folder=folder, repo_id=settings.repo_id)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


__all__ = [
    "DTYPES",
    "ConversionResult",
    "ConversionSettings",
    "convert",
    "convert_model",
    "convert_projector",
    "detect_source_kind",
    "prepare_output_dir",
]
