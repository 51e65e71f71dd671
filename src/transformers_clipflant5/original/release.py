# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""The original CLIP-FlanT5 release on the Hub: its checkpoints (`zhiqiulin/<name>`), what each is, and the plan of
converting them all (`clip-flant5 convert --all-original`).

The table of the checkpoints is `clip_flant5_choices.ORIGINAL_CHECKPOINTS`, re-exported here: `clip-flant5 convert
--help` names them, and that front end imports nothing heavier than the standard library.
"""

from dataclasses import dataclass
from pathlib import Path

from transformers import T5Config

from clip_flant5_choices import ORIGINAL_CHECKPOINTS, ORIGINAL_ORG, STAGE1_SPLIT_TEXT, OriginalCheckpoint

from ..configuration_clip_flant5 import CLIPFlanT5Config


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
    "STAGE1_SPLIT_TEXT",
    "OriginalCheckpoint",
    "PlannedConversion",
    "find_original_checkpoint",
    "original_config",
    "plan_original_release",
]
