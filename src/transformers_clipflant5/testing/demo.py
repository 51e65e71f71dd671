# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""The training demo: a tiny CLIP-FlanT5 built in code, trained on the synthetic coloured shapes on CPU.

`examples/run_stage2.py` (and `run_stage1.py`) run it when given no data: [`prepare_demo`] writes the data (and, for
stage 1, tiny base checkpoints), [`build_demo_model`] builds the model, [`DEMO_ARGS`] are its training settings.
"""

import os
from pathlib import Path
from typing import Any

import torch
from transformers import CLIPVisionModel, T5Config, T5ForConditionalGeneration

from ..modeling_clip_flant5 import CLIPFlanT5ForConditionalGeneration
from ..processing_clip_flant5 import SYSTEM_MESSAGE, CLIPFlanT5Processor
from ..scoring.prompts import DEFAULT_QUESTION_TEMPLATE
from ..training.arguments import CLIPFlanT5ScriptArguments
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
    "--demo_train_images", "1024",
    "--per_device_train_batch_size", "16",
    "--learning_rate", "1e-3",
    "--lr_scheduler_type", "cosine",
    "--warmup_steps", "0.03",
    "--weight_decay", "0.0",
    "--activation_checkpointing", "false",
    "--logging_steps", "100",
    "--save_strategy", "no",
    "--report_to", "none",
    "--seed", "0",
    "--max_length", "2048",
    "--group_by_modality_length", "true",
    "--dataloader_num_workers", "0",
    "--dataloader_pin_memory", "false",
]  # fmt: skip


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
    script_args: CLIPFlanT5ScriptArguments, output_dir: str | os.PathLike, stage: int = 2, seed: int = 0
) -> dict[str, Any]:
    """
    Write the synthetic data into the folder `<output_dir>-data` (beside the model's, e.g.
    `outputs/clip-flant5-demo-data`) and point `script_args` at it. For stage 1 also write tiny base checkpoints
    (`<output_dir>-data/base`) and point `--text_model`/`--vision_model` at them.
    """

    paths = write_synthetic_dataset(
        Path(f"{output_dir}-data"),
        num_train_images=script_args.demo_train_images,
        num_eval_images=script_args.demo_eval_images,
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


__all__ = [
    "DEMO_ARGS",
    "DEMO_MODEL",
    "build_demo_model",
    "build_demo_tokenizer",
    "prepare_demo",
    "write_demo_base_checkpoints",
]
