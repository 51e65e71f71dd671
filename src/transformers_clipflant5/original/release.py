# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""The original CLIP-FlanT5 release on the Hub: its checkpoints (`zhiqiulin/<name>`), what each is, and the plan of
converting them all (`clip-flant5 convert --all-original`)."""

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from transformers import T5Config

from ..configuration_clip_flant5 import CLIPFlanT5Config


ORIGINAL_ORG = "zhiqiulin"


@dataclass(frozen=True)
class OriginalCheckpoint:
    """One checkpoint of the original release on the Hub (`zhiqiulin/<name>`)."""

    name: str
    kind: Literal["model", "projector"]
    title: str
    text_model: str
    text_model_title: str
    stage1_template: str
    note: str = ""
    stage2_hours: str = "about 80 h"


STAGE1_SPLIT_TEXT = "`t5_plain_split_text` (image + the start of the caption; the rest is the target)"
_PLAIN = "`t5_plain` (image alone; the whole caption is the target)"
_NO_SPLIT_NOTE = (
    "An ablation of the paper: stage-1 captioning without split text (`t5_plain`). Prefer `clip-flant5-xxl` for "
    "VQAScore."
)
_T5_NOTE = (
    "An ablation of the paper: the text model is the original T5 (v1.0, 11B, tied embeddings), not the "
    "instruction-tuned FlanT5. Prefer `clip-flant5-xxl` for VQAScore."
)

ORIGINAL_CHECKPOINTS: tuple[OriginalCheckpoint, ...] = (
    OriginalCheckpoint(
        "clip-flant5-xxl", "model", "CLIP-FlanT5-XXL", "google/flan-t5-xxl", "FlanT5-XXL", STAGE1_SPLIT_TEXT,
        note="The recommended VQAScore model.",
    ),
    OriginalCheckpoint(
        "clip-flant5-xl", "model", "CLIP-FlanT5-XL", "google/flan-t5-xl", "FlanT5-XL", STAGE1_SPLIT_TEXT,
        note="The smaller VQAScore model: about a quarter of the XXL's size, somewhat lower agreement with humans.",
        stage2_hours="about 60 h (on 40 GB A100s)",
    ),
    OriginalCheckpoint(
        "clip-flant5-xxl-stage-1", "projector", "CLIP-FlanT5-XXL stage-1 projector", "google/flan-t5-xxl",
        "FlanT5-XXL", STAGE1_SPLIT_TEXT,
    ),
    OriginalCheckpoint(
        "clip-flant5-xl-stage-1", "projector", "CLIP-FlanT5-XL stage-1 projector", "google/flan-t5-xl",
        "FlanT5-XL", STAGE1_SPLIT_TEXT,
    ),
    OriginalCheckpoint(
        "clip-flant5-xxl-no-split-text", "model", "CLIP-FlanT5-XXL (no split text)", "google/flan-t5-xxl",
        "FlanT5-XXL", _PLAIN, note=_NO_SPLIT_NOTE,
    ),
    OriginalCheckpoint(
        "clip-flant5-xxl-stage-1-no-split-text", "projector", "CLIP-FlanT5-XXL stage-1 projector (no split text)",
        "google/flan-t5-xxl", "FlanT5-XXL", _PLAIN, note=_NO_SPLIT_NOTE,
    ),
    OriginalCheckpoint(
        "clip-t5-xxl", "model", "CLIP-T5-XXL", "google-t5/t5-11b", "T5-11B", STAGE1_SPLIT_TEXT, note=_T5_NOTE,
    ),
    OriginalCheckpoint(
        "clip-t5-xxl-stage-1", "projector", "CLIP-T5-XXL stage-1 projector", "google-t5/t5-11b", "T5-11B",
        STAGE1_SPLIT_TEXT, note=_T5_NOTE,
    ),
)  # fmt: skip


def find_original_checkpoint(repo_id: str | None) -> OriginalCheckpoint | None:
    """The entry of the original release for a Hub id `zhiqiulin/<name>`, else None (a local folder's name proves
    nothing about its weights, so it is never matched: pass the entry explicitly instead)."""
    if not repo_id or "/" not in str(repo_id):
        return None
    org, name = str(repo_id).split("/", 1)
    if org != ORIGINAL_ORG:
        return None
    return next((entry for entry in ORIGINAL_CHECKPOINTS if entry.name == name), None)


def original_config(checkpoint: OriginalCheckpoint):
    """The converted configuration of a FlanT5-based stage-2 checkpoint of the original release, known offline."""
    sizes = {
        "google/flan-t5-xxl": {"d_model": 4096, "d_ff": 10240, "num_heads": 64},
        "google/flan-t5-xl": {"d_model": 2048, "d_ff": 5120, "num_heads": 32},
    }[checkpoint.text_model]
    text_config = T5Config(
        vocab_size=32128, d_kv=64, num_layers=24, num_decoder_layers=24, feed_forward_proj="gated-gelu",
        tie_word_embeddings=False, decoder_start_token_id=0, **sizes,
    )  # fmt: skip
    return CLIPFlanT5Config(text_config=text_config, image_token_id=32100)


@dataclass
class PlannedConversion:
    """One step of `--all-original`: an original checkpoint, where it is read from, written to and pushed to."""

    checkpoint: OriginalCheckpoint
    source: str
    output_dir: Path
    push_to: str | None


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


__all__ = [
    "ORIGINAL_CHECKPOINTS",
    "ORIGINAL_ORG",
    "OriginalCheckpoint",
    "PlannedConversion",
    "find_original_checkpoint",
    "original_config",
    "plan_original_release",
]
