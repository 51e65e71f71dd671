# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""The training demo: a tiny CLIP-FlanT5 built in code, trained on the synthetic coloured shapes on CPU.

`examples/train_demo.py` (what `bash scripts/demo.sh` runs) is built from these pieces: [`parse_demo_arguments`]
(the stage-2 options with [`DEMO_ARGS`] as defaults), [`prepare_demo`] writes the data, [`build_demo_model`] builds
the model, [`write_demo_figures`] draws the loss and ROC curves into the output folder. For stage 1,
`python -m transformers_clipflant5.testing.demo --stage 1` writes synthetic captions and tiny base checkpoints and
prints the `examples/run_stage1.py` command that trains on them.
"""

import argparse
import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import CLIPVisionModel, T5Config, T5ForConditionalGeneration
from trl import SFTConfig

from ..modeling_clip_flant5 import CLIPFlanT5ForConditionalGeneration
from ..processing_clip_flant5 import SYSTEM_MESSAGE, CLIPFlanT5Processor
from ..scoring.prompts import DEFAULT_QUESTION_TEMPLATE
from ..training.arguments import CLIPFlanT5ScriptArguments
from ..training.plots import plot_loss_curve, plot_roc_curves
from ..training.stages import stage_parser
from .synthetic import write_synthetic_dataset
from .tiny import build_tiny_tokenizer, tiny_config, tiny_processor


# The prompt length FlanT5's tokenizers declare (model_max_length), which the demo's tokenizer declares too.
FLANT5_MAX_LENGTH = 512
# The demo model's `tiny_config` arguments. Attention as wide as the model (16 heads x 8 = d_model, as in FlanT5).
# Width is what made learning reliable: at d_model 64 the tiny model learned to compare the caption with the image
# in some seeds' runs only (held-out AUC 0.63 for seed 2); at 128 it did in every seed and thread count tried.
DEMO_MODEL = {"image_size": 32, "patch_size": 8, "vision_hidden": 64, "d_model": 128, "num_layers": 2, "num_heads": 16}
# The demo's training settings: tiny model, CPU, fp32, two to three minutes on two cores. Learning to compare a
# caption with the image from scratch takes the tiny model several hundred steps (colour first; shape and position
# later); batches of 16 give it more updates per second than batches of 32, and 1,024 images seen 3 times generalise
# better than 512 seen 6 times (the same number of steps).
DEMO_ARGS = [
    "--output_dir", "outputs/clip-flant5-demo",
    "--num_train_epochs", "3",
    "--per_device_train_batch_size", "16",
    "--learning_rate", "1e-3",
    "--lr_scheduler_type", "cosine",
    "--warmup_steps", "0.03",
    "--weight_decay", "0.0",
    "--activation_checkpointing", "false",
    "--logging_steps", "50",
    "--save_strategy", "no",
    "--report_to", "none",
    "--seed", "0",
    "--max_length", "2048",
    "--group_by_modality_length", "true",
    "--dataloader_num_workers", "0",
    "--dataloader_pin_memory", "false",
]  # fmt: skip
# What the model card names as the demo's base models.
DEMO_SOURCES = {"text_model": "tiny random FlanT5 (built in code)", "vision_model": "tiny random CLIP (built in code)"}
# The pictures the demo writes into its output folder (file name -> caption in the model card).
DEMO_FIGURES = {
    "training_loss.png": "Training loss",
    "heldout_roc.png": "Held-out ROC curve (matching vs. mismatched captions), before and after training",
}


@dataclass
class DemoArguments:
    """The demo's own options (next to the stage-2 options, whose defaults are [`DEMO_ARGS`])."""

    demo_train_images: int = field(default=1024, metadata={"help": "Synthetic training images."})
    demo_eval_images: int = field(default=200, metadata={"help": "Held-out images (two captions each)."})


def parse_demo_arguments(
    argv: list[str] | None = None,
) -> tuple[DemoArguments, CLIPFlanT5ScriptArguments, SFTConfig]:
    """`(demo_args, script_args, training_args)`: [`DEMO_ARGS`] first, so that the command line overrides them."""
    argv = sys.argv[1:] if argv is None else argv
    parser = stage_parser((DemoArguments, CLIPFlanT5ScriptArguments, SFTConfig))
    demo_args, script_args, training_args = parser.parse_args_and_config([*DEMO_ARGS, *argv])
    if script_args.data_path is not None or script_args.image_folder is not None:
        sys.stderr.write(
            f"{parser.prog}: error: the demo writes its own synthetic data; to train on yours, run "
            "examples/run_stage2.py --data_path ... --image_folder ...\n"
        )
        raise SystemExit(2)
    return demo_args, script_args, training_args


def build_demo_tokenizer(seed: int = 0):
    """
    The demo's FlanT5-structured tokenizer (sentencepiece + 100 sentinels + `<image>`), trained in code like
    `tiny.build_tiny_tokenizer` but with BPE on a corpus that also holds the stage-2 prompt, so that the system
    message and the VQAScore question are mostly whole words (about 55 tokens instead of about 150; T5's tokenizer
    picks pieces by score, so a few frequent words such as "the" still split in two). A tiny model learns to compare
    the caption with the image much faster when its prompt is not mostly single letters.
    """
    question = DEFAULT_QUESTION_TEMPLATE.format("a red circle on the left")
    prompts = [f"{SYSTEM_MESSAGE} USER: {question} ASSISTANT: Yes No"] * 20
    # FlanT5's limit, so that the demo model refuses an over-long text as the real ones do.
    return build_tiny_tokenizer(
        vocab_size=400, seed=seed, model_type="bpe", extra_sentences=prompts, model_max_length=FLANT5_MAX_LENGTH
    )


def build_demo_model(
    seed: int = 0, do_pad: bool = True
) -> tuple[CLIPFlanT5ForConditionalGeneration, CLIPFlanT5Processor]:
    """The demo's tiny CLIP-FlanT5 (random weights, built in code): 32 px images, 16 image tokens, d_model 128;
    images padded to square as in stage 2 unless `do_pad` is False."""

    tokenizer = build_demo_tokenizer(seed=seed)
    config = tiny_config(tokenizer, **DEMO_MODEL)
    torch.manual_seed(seed)
    model = CLIPFlanT5ForConditionalGeneration(config)
    return model, tiny_processor(tokenizer, config, do_pad=do_pad)


def write_demo_base_checkpoints(folder: str | os.PathLike, seed: int = 0) -> tuple[Path, Path]:
    """
    Tiny random base checkpoints in the layouts of `google/flan-t5-*` (a `T5ForConditionalGeneration` with an untied
    head, saved with its tokenizer) and `openai/clip-vit-*` (a `CLIPVisionModel` with its preprocessor config), for
    the stage-1 demo and tests of the from-base-checkpoints path. Returns `(text_folder, vision_folder)`.
    """
    folder = Path(folder)
    tokenizer = build_demo_tokenizer(seed=seed)
    config = tiny_config(tokenizer, **DEMO_MODEL)
    torch.manual_seed(seed)
    text = T5ForConditionalGeneration(T5Config(**{**config.text_config.to_dict(), "tie_word_embeddings": False}))
    # FlanT5 layout: an LM head of its own (transformers ties T5's head unless the checkpoint stores a separate one).
    text.lm_head.weight = torch.nn.Parameter(torch.randn_like(text.lm_head.weight) * text.config.d_model**-0.5)
    text_folder, vision_folder = folder / "flan-t5-tiny", folder / "clip-vit-tiny"
    text.save_pretrained(text_folder)
    tokenizer.save_pretrained(text_folder)
    vision = CLIPVisionModel(config.vision_config)
    vision.save_pretrained(vision_folder)
    tiny_processor(tokenizer, config).image_processor.save_pretrained(vision_folder)
    return text_folder, vision_folder


def prepare_demo(
    script_args: CLIPFlanT5ScriptArguments,
    output_dir: str | os.PathLike,
    stage: int = 2,
    seed: int = 0,
    train_images: int = 1024,
    eval_images: int = 200,
) -> dict[str, Any]:
    """
    Write the synthetic data into the folder `<output_dir>-data` (beside the model's, e.g.
    `outputs/clip-flant5-demo-data`) and point `script_args` at it. For stage 1 also write tiny base checkpoints
    (`<output_dir>-data/base`) and point `--text_model`/`--vision_model` at them.
    """

    paths = write_synthetic_dataset(
        Path(f"{output_dir}-data"),
        num_train_images=train_images,
        num_eval_images=eval_images,
        seed=seed,
        captions_only=stage == 1,
    )
    script_args.data_path = str(paths["train"])
    script_args.image_folder = str(paths["image_folder"])
    script_args.flatten = stage == 2
    if stage == 1:
        text_folder, vision_folder = write_demo_base_checkpoints(Path(f"{output_dir}-data") / "base", seed=seed)
        script_args.text_model, script_args.vision_model = str(text_folder), str(vision_folder)
    return paths


def write_demo_figures(
    output_dir: str | os.PathLike,
    log_history: list[dict[str, Any]],
    before: dict[str, Any],
    after: dict[str, Any],
) -> dict[str, str]:
    """
    Draw the training loss (`trainer.state.log_history`) and the held-out ROC curves before and after training
    (results of `evaluate_discrimination`) as PNGs into `output_dir`. Returns the model card's `figures` (caption ->
    file name, relative to the folder).
    """
    loss_name, roc_name = DEMO_FIGURES
    plot_loss_curve(log_history, Path(output_dir) / loss_name, title="Demo: training loss")
    curves = {
        name: (result["scores_match"], result["scores_mismatch"])
        for name, result in (("before training", before), ("after training", after))
    }
    plot_roc_curves(curves, Path(output_dir) / roc_name, title="Demo: held-out ROC curve")
    return {caption: name for name, caption in DEMO_FIGURES.items()}


# Stage 1 on top of the demo's settings: a short projector-only run with the paper's high learning rate.
STAGE1_DEMO_ARGS = {"num_train_epochs": "1", "learning_rate": "1e-2", "group_by_modality_length": "false"}


def stage1_demo_command(output_dir: str, train_images: int = 256, seed: int = 0) -> list[str]:
    """
    Write stage-1 demo data (synthetic captions) and tiny base checkpoints beside `output_dir`, and return the
    `examples/run_stage1.py` command line that trains the projector on them into `output_dir`.
    """
    script_args = CLIPFlanT5ScriptArguments()
    prepare_demo(script_args, output_dir, stage=1, seed=seed, train_images=train_images, eval_images=0)
    settings = dict(zip(DEMO_ARGS[::2], DEMO_ARGS[1::2]))
    settings.update({f"--{name}": value for name, value in STAGE1_DEMO_ARGS.items()})
    settings.update({"--output_dir": output_dir, "--seed": str(seed)})
    for name in ("data_path", "image_folder", "text_model", "vision_model"):
        settings[f"--{name}"] = getattr(script_args, name)
    return ["python", "examples/run_stage1.py", *(item for pair in settings.items() for item in pair)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m transformers_clipflant5.testing.demo",
        description="Write the stage-1 demo's data and tiny base checkpoints, and print the command that trains on "
        "them. (The stage-2 demo, which needs no preparation, is python examples/train_demo.py.)",
    )
    parser.add_argument("--stage", type=int, choices=[1], required=True)
    parser.add_argument("--output_dir", default="outputs/clip-flant5-demo-stage-1")
    parser.add_argument("--train_images", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    command = stage1_demo_command(args.output_dir, args.train_images, args.seed)
    print(f"Stage-1 demo data written to {args.output_dir}-data. Train on it with:\n{shlex.join(command)}")
    return 0


__all__ = [
    "DEMO_ARGS",
    "DEMO_FIGURES",
    "DEMO_MODEL",
    "DEMO_SOURCES",
    "DemoArguments",
    "build_demo_model",
    "build_demo_tokenizer",
    "parse_demo_arguments",
    "prepare_demo",
    "stage1_demo_command",
    "write_demo_base_checkpoints",
    "write_demo_figures",
]


if __name__ == "__main__":
    sys.exit(main())
