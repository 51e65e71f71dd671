# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""Convert original CLIP-FlanT5 checkpoints to self-contained transformers Hub folders, and publish them.

The original repos (`zhiqiulin/clip-flant5-xxl`, `-xl`, their stage-1 projectors and the ablations) hold a flat T5
config with LLaVA `mm_*` fields and pickled `pytorch_model*.bin` files with LLaVA key names and the embedding stored
four times. A converted folder holds:

- `config.json` (a `clip_flant5` config with `auto_map`) and `generation_config.json`;
- `model*.safetensors` in transformers' key names, vision tower included, each tensor stored once;
- the processor (`processor_config.json`, tokenizer files with `<image>`, `chat_template.jinja`);
- the remote-code files `configuration_clip_flant5.py`, `modeling_clip_flant5.py`, `processing_clip_flant5.py`;
- a model card (`README.md`).

A stage-1 repo (`config.json` + `mm_projector.bin`) becomes `projector.safetensors` + `projector_config.json` + card.

Usage (also `clip-flant5 convert`):

```bash
python -m transformers_clipflant5.convert_clip_flant5_original_to_hf zhiqiulin/clip-flant5-xxl ./clip-flant5-xxl
python -m transformers_clipflant5.convert_clip_flant5_original_to_hf zhiqiulin/clip-flant5-xl ./clip-flant5-xl \\
    --dtype bfloat16 --max-shard-size 2GB --push-to-hub my-org/clip-flant5-xl
python -m transformers_clipflant5.convert_clip_flant5_original_to_hf --all-original --output-dir ./zoo --org my-org --dry-run
```
"""

import argparse
import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from huggingface_hub import CommitInfo, CommitOperationAdd, HfApi
from huggingface_hub.utils import filter_repo_objects
from safetensors import safe_open
from transformers.utils import cached_file
from transformers.utils.hub import convert_file_size_to_int

from .configuration_clip_flant5 import CLIP_VIT_L_14_336
from .model_card import (
    ORIGINAL_CHECKPOINTS,
    ORIGINAL_ORG,
    OriginalCheckpoint,
    find_original_checkpoint,
    is_hub_id,
    published_results,
    render_model_card,
    render_projector_card,
)
from .modeling_clip_flant5 import CLIPFlanT5ForConditionalGeneration
from .processing_clip_flant5 import CLIPFlanT5Processor
from .projector import (
    ORIGINAL_PROJECTOR_NAME,
    PROJECTOR_CONFIG_NAME,
    PROJECTOR_WEIGHTS_NAME,
    read_original_projector,
    save_projector,
)


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
REMOTE_CODE_FILES = ("configuration_clip_flant5.py", "modeling_clip_flant5.py", "processing_clip_flant5.py")
MODEL_WEIGHT_FILES = (
    "model.safetensors.index.json",
    "model.safetensors",
    "pytorch_model.bin.index.json",
    "pytorch_model.bin",
)
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
# Never published: pickles (training_args.bin above all, which unpickles arbitrary objects), optimizer and scheduler
# states, intermediate checkpoints, logs and caches. A training output folder can be pushed as it is.
PUSH_IGNORE_PATTERNS = [
    *(f"*{suffix}" for suffix in PICKLE_SUFFIXES),
    "*optimizer*",
    "*scheduler*",
    "*rng_state*",
    "checkpoint-*",
    "global_step*",
    "runs/*",
    "wandb/*",
    ".git/*",
    ".cache/*",
    "*__pycache__*",
    "*.lock",
    "*.tmp",
]
# Tied aliases of `shared.weight` that must not be stored a second time.
_TIED_ALIASES = (
    "model.language_model.encoder.embed_tokens.weight",
    "model.language_model.decoder.embed_tokens.weight",
)
_HUB_REPO_URL = "https://huggingface.co/{}"


@dataclass
class ConversionResult:
    """What `convert` wrote: the kind of checkpoint and the output folder."""

    kind: Literal["model", "projector"]
    folder: Path
    repo_id: str


@dataclass
class PlannedConversion:
    """One step of `--all-original`: an original checkpoint, where it is read from, written to and pushed to."""

    checkpoint: OriginalCheckpoint
    source: str
    output_dir: Path
    push_to: str | None


# ----------------------------------------------------------------------------------------------------------------------
# Conversion


def _hub_kwargs(revision: str | None = None, cache_dir: str | None = None) -> dict[str, Any]:
    return {key: value for key, value in (("revision", revision), ("cache_dir", cache_dir)) if value is not None}


def detect_source_kind(source: str, revision: str | None = None, cache_dir: str | None = None) -> str:
    """`"model"` for a stage-2 checkpoint (original layout or ours), `"projector"` for a stage-1 projector repo."""
    hub = _hub_kwargs(revision, cache_dir)

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
    """Create `output_dir`; refuse a non-empty one unless `overwrite` and it holds a previous conversion."""
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
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _is_previous_conversion(folder: Path) -> bool:
    if (folder / PROJECTOR_CONFIG_NAME).is_file():
        return True
    try:
        return json.loads((folder / "config.json").read_text(encoding="utf-8")).get("model_type") == "clip_flant5"
    except (OSError, ValueError):
        return False


def convert_model(
    source: str,
    output_dir: str | Path,
    *,
    dtype: str | None = None,
    max_shard_size: str | int = "5GB",
    repo_id: str | None = None,
    text_model: str | None = None,
    source_revision: str | None = None,
    cache_dir: str | None = None,
    checkpoint: OriginalCheckpoint | None = None,
) -> Path:
    """
    Convert a stage-2 checkpoint (original layout, or ours to re-shard / re-cast) into `output_dir`.

    The weights are loaded once, directly in the target dtype (`dtype`, default: the checkpoint's own), so the
    conversion never holds two copies of them.
    """
    output_dir = Path(output_dir)
    hub = _hub_kwargs(source_revision, cache_dir)
    model = CLIPFlanT5ForConditionalGeneration.from_pretrained(source, dtype=DTYPES[dtype] if dtype else "auto", **hub)
    processor = CLIPFlanT5Processor.from_pretrained(source, **hub)
    _check_processor_matches(model.config, processor, source)
    # save_original_format=False: write our key names whatever the checkpoint was loaded from.
    model.save_pretrained(output_dir, max_shard_size=max_shard_size, save_original_format=False)
    processor.save_pretrained(output_dir)
    card = render_model_card(
        model.config,
        repo_id=repo_id or _placeholder_repo_id(output_dir),
        source=source,
        source_revision=source_revision,
        checkpoint=checkpoint,
        text_model=text_model,
        dtype=str(model.dtype).removeprefix("torch."),
        num_parameters=model.num_parameters(),
    )
    card.save(output_dir / "README.md")
    return output_dir


def _check_processor_matches(config, processor: CLIPFlanT5Processor, source: str) -> None:
    mismatches = [
        f"{name}: model {getattr(config, config_name)!r}, processor {getattr(processor, name)!r}"
        for name, config_name in (
            ("image_token_id", "image_token_id"),
            ("image_seq_length", "image_seq_length"),
            ("image_aspect_ratio", "image_aspect_ratio"),
        )
        if getattr(processor, name) != getattr(config, config_name)
    ]
    if mismatches:
        raise ValueError(
            f"The processor and the model read from {source} disagree ({'; '.join(mismatches)}): the checkpoint's "
            "tokenizer or configuration is inconsistent, and the converted model would score wrongly."
        )


def convert_projector(
    source: str,
    output_dir: str | Path,
    *,
    dtype: str | None = None,
    repo_id: str | None = None,
    text_model: str | None = None,
    source_revision: str | None = None,
    cache_dir: str | None = None,
    checkpoint: OriginalCheckpoint | None = None,
) -> Path:
    """Convert an original stage-1 repo (`config.json` + `mm_projector.bin`) into our projector format."""
    output_dir = Path(output_dir)
    hub = _hub_kwargs(source_revision, cache_dir)
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
    projector_type = flat.get("mm_projector_type", "mlp2x_gelu")
    if projector_type != "mlp2x_gelu":
        raise ValueError(f"{source} has mm_projector_type {projector_type!r}; only 'mlp2x_gelu' is supported.")
    checkpoint = checkpoint or find_original_checkpoint(source)
    recorded_text_model = flat.get("_name_or_path") if is_hub_id(flat.get("_name_or_path")) else None
    text_model = text_model or (checkpoint.text_model if checkpoint else None) or recorded_text_model
    vision_model = flat.get("mm_vision_tower", CLIP_VIT_L_14_336)
    target_dtype = DTYPES[dtype] if dtype else projector.linear_1.weight.dtype
    save_projector(
        projector,
        output_dir,
        text_model=text_model,
        vision_model=vision_model if is_hub_id(vision_model) else None,
        dtype=target_dtype,
        source=source if is_hub_id(source) else Path(source).name,
        vision_feature_layer=flat.get("mm_vision_select_layer", -2),
        vision_feature_select_strategy={"patch": "default", "cls_patch": "full"}.get(
            flat.get("mm_vision_select_feature", "patch"), "default"
        ),
    )
    card = render_projector_card(
        repo_id=repo_id or _placeholder_repo_id(output_dir),
        vision_hidden_size=vision_hidden,
        text_hidden_size=text_hidden,
        text_model=text_model,
        vision_model=vision_model if is_hub_id(vision_model) else None,
        dtype=str(target_dtype).removeprefix("torch."),
        source=source,
        source_revision=source_revision,
        checkpoint=checkpoint,
    )
    card.save(output_dir / "README.md")
    return output_dir


def _placeholder_repo_id(output_dir: Path) -> str:
    return f"your-username/{output_dir.resolve().name}"


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
    common = {
        "dtype": dtype,
        "repo_id": repo_id,
        "text_model": text_model,
        "source_revision": source_revision,
        "cache_dir": cache_dir,
        "checkpoint": checkpoint,
    }
    if kind == "model":
        convert_model(source, folder, max_shard_size=max_shard_size, **common)
        check_model_folder(folder)
    else:
        convert_projector(source, folder, **common)
        check_projector_folder(folder)
    return ConversionResult(kind=kind, folder=folder, repo_id=repo_id or _placeholder_repo_id(folder))


# ----------------------------------------------------------------------------------------------------------------------
# Checks of a written folder


def _files(folder: Path) -> list[str]:
    return sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file())


def _read_json(path: Path, problems: list[str]) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        problems.append(f"{path.name} is missing")
    except ValueError as error:
        problems.append(f"{path.name} is not valid JSON ({error})")
    return {}


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
    problems: list[str] = []
    files = _files(folder)
    pickles = [name for name in files if name.endswith(PICKLE_SUFFIXES)]
    if pickles:
        problems.append(f"pickle files present: {pickles}")
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
    tied = config.get("tie_word_embeddings", config.get("text_config", {}).get("tie_word_embeddings", False))
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
    problems: list[str] = []
    files = _files(folder)
    pickles = [name for name in files if name.endswith(PICKLE_SUFFIXES)]
    if pickles:
        problems.append(f"pickle files present: {pickles}")
    for name in (PROJECTOR_WEIGHTS_NAME, PROJECTOR_CONFIG_NAME, "README.md"):
        if name not in files:
            problems.append(f"{name} is missing")
    config = _read_json(folder / PROJECTOR_CONFIG_NAME, problems) if PROJECTOR_CONFIG_NAME in files else {}
    if PROJECTOR_WEIGHTS_NAME in files and config:
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


# ----------------------------------------------------------------------------------------------------------------------
# Publishing


def files_to_upload(folder: str | Path) -> list[str]:
    """The files of `folder` that [`push_folder`] uploads: everything but pickles, optimizer/scheduler states,
    intermediate checkpoints, logs and caches (see `PUSH_IGNORE_PATTERNS`)."""
    return list(filter_repo_objects(_files(Path(folder)), ignore_patterns=PUSH_IGNORE_PATTERNS))


def push_folder(
    folder: str | Path,
    repo_id: str,
    *,
    revision: str | None = None,
    private: bool = False,
    commit_message: str | None = None,
    commit_description: str | None = None,
    token: str | None = None,
) -> CommitInfo:
    """
    Upload `folder` to the Hub model repo `repo_id` (created if needed) in ONE commit on branch `revision` (created
    from main if needed), leaving out the files `files_to_upload` excludes.

    Built on `HfApi.create_commit` rather than `upload_folder`, which may split a large folder into several commits.
    """
    folder = Path(folder)
    files = files_to_upload(folder)
    if not files:
        raise ValueError(f"{folder} holds nothing to upload.")
    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    if revision is not None and revision != "main":
        api.create_branch(repo_id, branch=revision, repo_type="model", exist_ok=True)
    operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(folder / name)) for name in files]
    return api.create_commit(
        repo_id,
        operations,
        commit_message=commit_message or f"Upload CLIP-FlanT5 ({len(files)} files) with transformers-clipflant5",
        commit_description=commit_description,
        revision=revision,
        repo_type="model",
    )


# ----------------------------------------------------------------------------------------------------------------------
# The whole original release


def plan_original_release(
    output_dir: str | Path,
    org: str | None = None,
    source_org: str = ORIGINAL_ORG,
    source_root: str | Path | None = None,
    only: list[str] | None = None,
) -> list[PlannedConversion]:
    """
    The conversions of `--all-original`: every checkpoint of [`ORIGINAL_CHECKPOINTS`] (or those named in `only`),
    read from `source_org/<name>` on the Hub (or `source_root/<name>`), written to `output_dir/<name>`, pushed to
    `org/<name>` when `org` is given.
    """
    known = {entry.name: entry for entry in ORIGINAL_CHECKPOINTS}
    unknown = sorted(set(only or ()) - set(known))
    if unknown:
        raise ValueError(f"Unknown checkpoint name(s) {unknown}; the original release has {sorted(known)}.")
    entries = [known[name] for name in only] if only else list(ORIGINAL_CHECKPOINTS)
    return [
        PlannedConversion(
            checkpoint=entry,
            source=str(Path(source_root) / entry.name) if source_root else f"{source_org}/{entry.name}",
            output_dir=Path(output_dir) / entry.name,
            push_to=f"{org}/{entry.name}" if org else None,
        )
        for entry in entries
    ]


def _card_summary(checkpoint: OriginalCheckpoint) -> str:
    count = len(published_results(checkpoint.name))
    return f"{checkpoint.title}" + (f" + {count} published results" if count else "")


def format_plan(plan: list[PlannedConversion]) -> str:
    """A readable table of `plan`."""
    rows = [("kind", "source", "output folder", "push to", "card")]
    for step in plan:
        rows.append(
            (
                step.checkpoint.kind,
                step.source,
                str(step.output_dir),
                step.push_to or "(not pushed)",
                _card_summary(step.checkpoint),
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows)


# ----------------------------------------------------------------------------------------------------------------------
# Command line

DESCRIPTION = """\
Convert an original CLIP-FlanT5 checkpoint (or one of ours) into a self-contained transformers Hub folder:
config with auto_map, generation config, sharded safetensors (vision tower inside, each tensor once), processor
with the chat template, remote-code files and a model card. A stage-1 repo (mm_projector.bin) becomes
projector.safetensors + projector_config.json + card. Optionally push the folder to the Hub in one commit
(pickles, optimizer states and checkpoints are never uploaded)."""

EPILOG = """\
examples:
  clip-flant5 convert zhiqiulin/clip-flant5-xxl ./clip-flant5-xxl
  clip-flant5 convert zhiqiulin/clip-flant5-xl ./clip-flant5-xl --dtype bfloat16 --max-shard-size 2GB \\
      --push-to-hub my-org/clip-flant5-xl --revision main --private
  clip-flant5 convert zhiqiulin/clip-flant5-xxl-stage-1 ./clip-flant5-xxl-stage-1
  clip-flant5 convert --all-original --output-dir ./zoo --org my-org --dry-run

The source is read through the Hugging Face cache (HF_HUB_CACHE); with HF_HUB_OFFLINE=1 it must be there already.
Converting the XXL needs about 23 GB of disk for the download and as much for the output, and holds one copy of
the weights in memory (about 23 GB in bfloat16)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", nargs="?", metavar="SRC", help="folder or Hub repo id of the checkpoint to convert")
    parser.add_argument("output_dir", nargs="?", metavar="DST", help="new (or empty) folder to write")
    parser.add_argument(
        "--dtype", choices=sorted(DTYPES), help="dtype of the written weights (default: the checkpoint's own)"
    )
    parser.add_argument(
        "--max-shard-size", default="5GB", help="largest safetensors shard, e.g. 2GB or 500MB (default: 5GB)"
    )
    parser.add_argument("--push-to-hub", metavar="REPO", help="after converting, upload the folder to this Hub repo")
    parser.add_argument("--revision", metavar="BRANCH", help="branch of the pushed repo (created if needed)")
    parser.add_argument("--private", action="store_true", help="create the pushed repo as private")
    parser.add_argument("--commit-message", help="message of the upload commit")
    parser.add_argument("--source-revision", metavar="REV", help="revision of a Hub source (branch, tag or commit)")
    parser.add_argument("--cache-dir", help="Hugging Face cache folder to read Hub sources from")
    parser.add_argument(
        "--repo-id", help="repo id the model card's usage examples name, when not pushing (default: a placeholder)"
    )
    parser.add_argument(
        "--text-model",
        help="Hub id of the base text model, for the card, when SRC is not one of the original checkpoints",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace a previous conversion in DST (only such a folder is deleted)"
    )
    zoo = parser.add_argument_group("the whole original release")
    zoo.add_argument(
        "--all-original",
        action="store_true",
        help="convert every original checkpoint ("
        + ", ".join(entry.name for entry in ORIGINAL_CHECKPOINTS)
        + ") into --output-dir/<name>, and push each to --org/<name> when --org is given",
    )
    zoo.add_argument(
        "--output-dir",
        dest="output_dir_all",
        metavar="DIR",
        help="with --all-original: the folder that receives one sub-folder per checkpoint",
    )
    zoo.add_argument("--org", help="with --all-original: the Hub user or organisation to push to")
    zoo.add_argument(
        "--source-org", default=ORIGINAL_ORG, help=f"with --all-original: where to read from (default: {ORIGINAL_ORG})"
    )
    zoo.add_argument(
        "--source-root", help="with --all-original: read each checkpoint from SOURCE_ROOT/<name> instead of the Hub"
    )
    zoo.add_argument("--only", nargs="+", metavar="NAME", help="with --all-original: convert only these checkpoints")
    parser.add_argument(
        "--dry-run", action="store_true", help="print what would be done; read, write and upload nothing"
    )


def _convert_and_push(
    args: argparse.Namespace,
    source: str,
    output_dir: str | Path,
    push_to: str | None,
    checkpoint: OriginalCheckpoint | None = None,
) -> None:
    result = convert(
        source,
        output_dir,
        dtype=args.dtype,
        max_shard_size=args.max_shard_size,
        repo_id=push_to or args.repo_id,
        text_model=args.text_model,
        source_revision=args.source_revision,
        cache_dir=args.cache_dir,
        overwrite=args.overwrite,
        checkpoint=checkpoint,
    )
    files = _files(result.folder)
    size = sum((result.folder / name).stat().st_size for name in files)
    print(f"Converted {source} ({result.kind}) -> {result.folder}: {len(files)} files, {size / 2**20:.1f} MiB")
    if push_to:
        commit = push_folder(
            result.folder, push_to, revision=args.revision, private=args.private, commit_message=args.commit_message
        )
        print(
            f"Pushed {len(files_to_upload(result.folder))} files to {_HUB_REPO_URL.format(push_to)}: {commit.commit_url}"
        )


def run(args: argparse.Namespace) -> int:
    """Run the `convert` command; returns the exit status."""
    try:
        if args.all_original:
            return _run_all_original(args)
        if not args.source or not args.output_dir:
            print("error: give SRC and DST (or --all-original --output-dir DIR).", file=sys.stderr)
            return 2
        if args.dry_run:
            push = f", then push to {args.push_to_hub}" if args.push_to_hub else ""
            print(f"Dry run: would convert {args.source} -> {args.output_dir}{push}. Nothing was read or written.")
            return 0
        _convert_and_push(args, args.source, args.output_dir, args.push_to_hub)
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


def _run_all_original(args: argparse.Namespace) -> int:
    if args.source or args.output_dir or args.push_to_hub:
        print("error: --all-original takes --output-dir and --org, not SRC, DST or --push-to-hub.", file=sys.stderr)
        return 2
    if not args.output_dir_all:
        print("error: --all-original needs --output-dir DIR.", file=sys.stderr)
        return 2
    plan = plan_original_release(args.output_dir_all, args.org, args.source_org, args.source_root, args.only)
    header = "Dry run: nothing is downloaded, written or uploaded." if args.dry_run else ""
    print(f"Converting {len(plan)} original CLIP-FlanT5 checkpoint(s). {header}".rstrip())
    print(format_plan(plan))
    if args.dry_run:
        return 0
    failures = []
    for step in plan:
        try:
            _convert_and_push(args, step.source, step.output_dir, step.push_to, step.checkpoint)
        except (OSError, ValueError) as error:
            failures.append(step.checkpoint.name)
            print(f"error: {step.checkpoint.name}: {error}", file=sys.stderr)
    print(
        f"Done: {len(plan) - len(failures)} converted, {len(failures)} failed{': ' if failures else ''}{', '.join(failures)}"
    )
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="convert_clip_flant5_original_to_hf",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
