# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""The options of the CLIP-FlanT5 training scripts (next to TRL's `SFTConfig` and `ModelConfig`), the defaults of
each stage, and what a model card records about a run."""

from dataclasses import dataclass, field
from typing import Any

from .templates import STAGE1_TEMPLATES, TEMPLATES


STAGE_DEFAULTS = {
    1: {"template": "t5_plain_split_text", "do_pad": False},
    2: {"template": "t5_v1", "do_pad": True},
}


@dataclass
class CLIPFlanT5ScriptArguments:
    """Data and model options of the CLIP-FlanT5 training scripts (next to TRL's `SFTConfig` and `ModelConfig`)."""

    data_path: str | None = field(
        default=None,
        metadata={"help": "LLaVA-layout JSON/JSONL training file (required; the demo, train_demo.py, needs none)."},
    )
    image_folder: str | None = field(
        default=None, metadata={"help": "Folder the rows' 'image' paths are relative to."}
    )
    template: str | None = field(
        default=None,
        metadata={
            "help": "Prompt template: t5_plain or t5_plain_split_text (stage 1, default the latter), t5_v1 (stage 2).",
            "choices": list(TEMPLATES),
        },
    )
    do_pad: bool | None = field(
        default=None,
        metadata={
            "help": "Pad images to square with the CLIP mean colour (the image processor's do_pad): false by default "
            "in stage 1, true in stage 2."
        },
    )
    flatten: bool = field(
        default=False,
        metadata={"help": "Split multi-turn conversations into single-turn rows on load (see `clip-flant5 flatten`)."},
    )
    skip_missing_images: bool = field(
        default=False,
        metadata={"help": "Skip (and report) rows whose image file is missing instead of stopping before training."},
    )
    group_by_modality_length: bool = field(
        default=False,
        metadata={"help": "Draw each optimizer step from one modality (image or text-only), length-grouped."},
    )
    text_model: str | None = field(
        default=None, metadata={"help": "FlanT5 checkpoint (folder or Hub id), e.g. google/flan-t5-xxl."}
    )
    vision_model: str | None = field(
        default=None,
        metadata={"help": "CLIP checkpoint (folder or Hub id), e.g. openai/clip-vit-large-patch14-336."},
    )
    pretrained_projector: str | None = field(
        default=None,
        metadata={
            "help": "Stage 2 from base checkpoints: a stage-1 projector (our stage-1 output folder, a "
            "projector.safetensors, an original mm_projector.bin, or a repo like zhiqiulin/clip-flant5-xxl-stage-1)."
        },
    )


def check_template(stage: int, template: str | None) -> str:
    template = template or STAGE_DEFAULTS[stage]["template"]
    if (stage == 1) != (template in STAGE1_TEMPLATES):
        raise ValueError(
            f"Template {template!r} does not fit stage {stage}: stage 1 uses t5_plain_split_text or t5_plain, stage 2 "
            "uses t5_v1."
        )
    return template


def stage_do_pad(stage: int, do_pad: bool | None) -> bool:
    """Whether images are padded to square: `--do_pad` when given, else the stage's default."""
    return STAGE_DEFAULTS[stage]["do_pad"] if do_pad is None else do_pad


def describe_training(training_args, stage: int, template: str, num_rows: int) -> dict[str, Any]:
    """The hyper-parameters a model card records."""
    global_batch = (
        training_args.per_device_train_batch_size
        * training_args.gradient_accumulation_steps
        * training_args.world_size
    )
    return {
        "trained parameters": "projector" if stage == 1 else "projector + FlanT5 (vision tower frozen)",
        "template": template,
        "training rows": num_rows,
        "global batch size": global_batch,
        "learning rate": training_args.learning_rate,
        "schedule": f"{getattr(training_args.lr_scheduler_type, 'value', training_args.lr_scheduler_type)}, warmup "
        f"{training_args.warmup_steps}",
        "epochs": training_args.num_train_epochs
        if training_args.max_steps <= 0
        else f"{training_args.max_steps} steps",
        "precision": "bf16" if training_args.bf16 else ("fp16" if training_args.fp16 else "fp32"),
    }


__all__ = ["STAGE_DEFAULTS", "CLIPFlanT5ScriptArguments", "check_template", "describe_training", "stage_do_pad"]
