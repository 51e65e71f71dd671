# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""The choices the command line offers and the library accepts (`eval --task`, `score --quantization`, `convert
--dtype`) and the table of the original release's checkpoints: the bottom layer of the dependency graph.

Standard library only, so that the command line's help pages can show them without importing torch or
transformers, and the library (`original.release`, `hub.convert_original`, `scoring.precision`, `evaluation`)
imports them from here: each has this one home.
"""

from dataclasses import dataclass
from typing import Literal


# `clip-flant5 eval --task` and `evaluation.TASKS`.
EVAL_TASKS = ("winoground", "pairwise", "correlation", "genai-bench-video")
# `VQAScore.score_videos(mode=..., sampling=...)` and `clip-flant5 score --video-mode/--frame-sampling`
# (`scoring.video`). "genai-bench": GenAI-Bench-Video's protocols, whose frame counts are these.
VIDEO_MODES = ("average", "concat")
VIDEO_SAMPLINGS = ("uniform", "genai-bench")
GENAI_BENCH_VIDEO_FRAMES = (36, 9, 4)
# `clip-flant5 score --quantization` and `VQAScore.from_pretrained(quantization=...)` (`scoring.precision`).
QUANTIZATION_CHOICES = ("int8", "int4")
QUANT_EXTRA_INSTALL = 'pip install -e ".[quant]"'
# `clip-flant5 convert --dtype`: the torch dtypes converted weights can be written in (`hub.convert_original.DTYPES`).
CONVERT_DTYPES = ("bfloat16", "float16", "float32")

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
