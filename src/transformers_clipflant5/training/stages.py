# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""What the two stage scripts (`examples/run_stage1.py`, `examples/run_stage2.py`) do alike: parse their arguments,
load and validate the training data, build its collator, and describe the run for the model card."""

import sys
from typing import Any

import torch
from trl import ModelConfig, SFTConfig, TrlParser

from ..processing_clip_flant5 import CLIPFlanT5Processor
from .arguments import CLIPFlanT5ScriptArguments, check_template, describe_training
from .collator import CLIPFlanT5DataCollator
from .data import ValidationReport, load_llava_dataset
from .quiet_run import quiet_training_run


def stage_parser(dataclass_types: tuple[type, ...] = (CLIPFlanT5ScriptArguments, SFTConfig, ModelConfig)) -> TrlParser:
    """The `TrlParser` of a training script (`--config` YAML files included). Without a GPU, training defaults to fp32
    on the CPU, also under the deepspeed launcher, unless a --config file or the command line says otherwise."""
    quiet_training_run()
    parser = TrlParser(dataclass_types)
    if not torch.cuda.is_available():
        parser.set_defaults_with_config(bf16=False, use_cpu=True)
    return parser


def parse_stage_arguments(
    argv: list[str] | None = None,
) -> tuple[CLIPFlanT5ScriptArguments, SFTConfig, ModelConfig]:
    """
    `(script_args, training_args, model_args)` of a stage script from the command line (and `--config`). Without
    `--data_path` it is a usage error (exit status 2, one line that points to the demo, which needs no data).
    """
    parser = stage_parser()
    script_args, training_args, model_args = parser.parse_args_and_config(argv)
    if script_args.data_path is None:
        sys.stderr.write(
            f"{parser.prog}: error: --data_path is required (a LLaVA-layout JSON/JSONL training file, or data_path in "
            "the --config file); to try training without data, run the demo: python examples/train_demo.py\n"
        )
        raise SystemExit(2)
    return script_args, training_args, model_args


def load_stage_data(stage: int, script_args: CLIPFlanT5ScriptArguments) -> tuple[Any, ValidationReport]:
    """
    The stage's training dataset, validated up front (template, malformed rows, missing images), and the validation
    report. It needs no model: the scripts call it before loading the base models, so that a wrong --template or
    --data_path is reported in seconds, not after minutes of loading.
    """
    template = check_template(stage, script_args.template)
    return load_llava_dataset(
        script_args.data_path,
        template,
        image_folder=script_args.image_folder,
        skip_missing_images=script_args.skip_missing_images,
        flatten=script_args.flatten,
    )


def stage_collator(
    stage: int, script_args: CLIPFlanT5ScriptArguments, training_args: SFTConfig, processor: CLIPFlanT5Processor
) -> CLIPFlanT5DataCollator:
    """The stage's collator, which opens the images batch by batch (it needs the model's processor)."""
    return CLIPFlanT5DataCollator(
        processor,
        check_template(stage, script_args.template),
        image_folder=script_args.image_folder,
        max_length=training_args.max_length,
        seed=training_args.seed,
    )


def stage_card_info(
    stage: int,
    sources: dict[str, Any],
    script_args: CLIPFlanT5ScriptArguments,
    training_args: SFTConfig,
    num_rows: int,
) -> dict[str, Any]:
    """The trainer's `card_info`: what the model card of every saved folder says about the run."""
    template = check_template(stage, script_args.template)
    return {
        "stage": stage,
        "base_text_model": sources["text_model"],
        "base_vision_model": sources["vision_model"],
        "dataset": script_args.data_path,
        "hyperparameters": describe_training(training_args, stage, template, num_rows),
        "repo_id": training_args.hub_model_id,
    }


__all__ = ["load_stage_data", "parse_stage_arguments", "stage_card_info", "stage_collator", "stage_parser"]
