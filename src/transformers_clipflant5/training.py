# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""Stage-1 and stage-2 training of CLIP-FlanT5 with TRL: models, trainable parameters, arguments, the demo.

The example scripts `examples/run_stage1.py` and `examples/run_stage2.py` are built from these pieces:

- [`build_model_from_base_checkpoints`] assembles a fresh CLIP-FlanT5 from a FlanT5 checkpoint and a CLIP
  checkpoint (stage 1, or stage 2 from an original stage-1 projector);
- [`load_model`] picks the right source for a stage; [`set_trainable_parameters`] freezes what the stage keeps;
- [`CLIPFlanT5ScriptArguments`] holds the data and model options next to TRL's `SFTConfig` and `ModelConfig`;
- [`prepare_demo`] writes the synthetic coloured-shapes data and builds the tiny model of the default run.

The data side lives in `training_data.py`, the trainer in `trainer.py`.
"""

import contextlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import AutoTokenizer, CLIPVisionConfig, CLIPVisionModel, T5ForConditionalGeneration
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

from .configuration_clip_flant5 import CLIPFlanT5Config
from .modeling_clip_flant5 import CLIPFlanT5ForConditionalGeneration, CLIPFlanT5MultiModalProjector
from .processing_clip_flant5 import DEFAULT_IMAGE_TOKEN, CLIPFlanT5Processor
from .training_data import STAGE1_TEMPLATES, TEMPLATES


logger = logging.getLogger(__name__)

STAGE_DEFAULTS = {
    1: {"template": "t5_plain_split_text", "image_aspect_ratio": "square"},
    2: {"template": "t5_v1", "image_aspect_ratio": "pad"},
}
# T5's attention and feed-forward projections: the LoRA targets of the language model (CLIP names its own
# q_proj/k_proj/v_proj/out_proj/fc1/fc2, so the vision tower is never targeted).
T5_LORA_TARGETS = r".*language_model\.(encoder|decoder)\..*\.(q|k|v|o|wi|wi_0|wi_1|wo)$"


@dataclass
class CLIPFlanT5ScriptArguments:
    """Data and model options of the CLIP-FlanT5 training scripts (next to TRL's `SFTConfig` and `ModelConfig`)."""

    data_path: str | None = field(
        default=None,
        metadata={
            "help": "LLaVA-layout JSON/JSONL training file. Without it, run_stage2.py runs the built-in synthetic "
            "demo (and run_stage1.py its stage-1 counterpart)."
        },
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
    image_aspect_ratio: str | None = field(
        default=None,
        metadata={"help": "'square' (stage-1 default) or 'pad' (stage-2 default).", "choices": ["square", "pad"]},
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
    demo_train_images: int = field(default=512, metadata={"help": "Demo only: synthetic training images."})
    demo_eval_images: int = field(default=200, metadata={"help": "Demo only: held-out images (two captions each)."})


# ----------------------------------------------------------------------------------------------------------------------
# Models


@contextlib.contextmanager
def _without_zero3_init():
    """Load sub-models whole even when a ZeRO-3 config is active: they are assembled first, DeepSpeed shards later."""
    from transformers.integrations import deepspeed as hf_deepspeed

    saved = hf_deepspeed._hf_deepspeed_config_weak_ref
    hf_deepspeed._hf_deepspeed_config_weak_ref = None
    try:
        yield
    finally:
        hf_deepspeed._hf_deepspeed_config_weak_ref = saved


def build_model_from_base_checkpoints(
    text_model: str | os.PathLike,
    vision_model: str | os.PathLike,
    image_aspect_ratio: str = "square",
    dtype: torch.dtype | str | None = None,
    vision_attn_implementation: str | None = None,
    seed: int = 0,
    **hub_kwargs: Any,
) -> tuple[CLIPFlanT5ForConditionalGeneration, CLIPFlanT5Processor]:
    """
    A fresh CLIP-FlanT5 whose T5 encoder-decoder and LM head come from `text_model` (a `T5ForConditionalGeneration`
    checkpoint such as `google/flan-t5-xxl`) and whose vision tower comes from `vision_model` (a `CLIPVisionModel` or
    full `CLIPModel` checkpoint such as `openai/clip-vit-large-patch14-336`); the projector is newly initialised
    (seeded). The processor pairs the text model's tokenizer (with `<image>` added) and the vision model's image
    processor. The sub-models are moved into the composite model, not copied, so peak memory is one model.

    Under a DeepSpeed ZeRO-3 config the model is still assembled whole on each process (DeepSpeed shards it when
    training starts); starting stage 2 from a stage-1 output folder instead loads it sharded from the start.
    """
    tokenizer = AutoTokenizer.from_pretrained(str(text_model), **hub_kwargs)
    if DEFAULT_IMAGE_TOKEN not in tokenizer.get_vocab():
        tokenizer.add_tokens([DEFAULT_IMAGE_TOKEN], special_tokens=True)
    image_token_id = tokenizer.convert_tokens_to_ids(DEFAULT_IMAGE_TOKEN)
    if isinstance(dtype, str):
        dtype = None if dtype == "auto" else getattr(torch, dtype)
    load_kwargs = {"dtype": dtype} if dtype is not None else {}
    vision_kwargs = dict(load_kwargs)
    if vision_attn_implementation is not None:
        vision_kwargs["attn_implementation"] = vision_attn_implementation
    image_processor = CLIPImageProcessorPil.from_pretrained(str(vision_model), **hub_kwargs)

    with _without_zero3_init():
        text = T5ForConditionalGeneration.from_pretrained(str(text_model), **load_kwargs, **hub_kwargs)
        vision_config = CLIPVisionConfig.from_pretrained(str(vision_model), **hub_kwargs)
        vision = CLIPVisionModel.from_pretrained(
            str(vision_model), config=vision_config, **vision_kwargs, **hub_kwargs
        )
        if image_token_id >= text.config.vocab_size:
            # FlanT5's 32128-row embedding has room for <image> (id 32100); a full vocabulary needs more rows.
            text.resize_token_embeddings(len(tokenizer), pad_to_multiple_of=64)
        # transformers' T5Config always says tie_word_embeddings=True; whether the head is really tied is whether the
        # checkpoint stored its own (FlanT5 does; original T5 ties it and rescales the decoder output).
        tied = text.lm_head.weight is text.shared.weight
        config = CLIPFlanT5Config(
            vision_config=vision.config,
            text_config=text.config,
            image_token_id=image_token_id,
            image_aspect_ratio=image_aspect_ratio,
            tie_word_embeddings=tied,
        )
        with torch.device("meta"):
            model = CLIPFlanT5ForConditionalGeneration(config)
        model.model.vision_tower = vision
        language_model = model.model.language_model
        language_model.shared, language_model.encoder, language_model.decoder = text.shared, text.encoder, text.decoder
        model.lm_head = text.lm_head
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            projector = CLIPFlanT5MultiModalProjector(config)
            projector.apply(model._init_weights)
        model.model.multi_modal_projector = projector.to(dtype=text.lm_head.weight.dtype)
        if config.tie_word_embeddings:
            model.tie_weights()
    left_on_meta = [name for name, tensor in [*model.named_parameters(), *model.named_buffers()] if tensor.is_meta]
    if left_on_meta:
        raise RuntimeError(f"Assembling the model left tensors uninitialised: {left_on_meta[:5]}")
    model.config._name_or_path = str(text_model)
    model.generation_config.decoder_start_token_id = text.config.decoder_start_token_id

    processor = CLIPFlanT5Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        image_seq_length=config.image_seq_length,
        image_aspect_ratio=image_aspect_ratio,
    )
    return model, processor


def load_projector_weights(model: CLIPFlanT5ForConditionalGeneration, path_or_repo: str | os.PathLike) -> None:
    """Load a stage-1 projector into `model`, gathering its parameters first when they are ZeRO-3 shards."""
    from .projector import load_projector

    projector_params = list(model.model.multi_modal_projector.parameters())
    if any(hasattr(param, "ds_id") for param in projector_params):
        import deepspeed

        with deepspeed.zero.GatheredParameters(projector_params, modifier_rank=0):
            load_projector(model, path_or_repo)
    else:
        load_projector(model, path_or_repo)


def load_model(
    stage: int,
    script_args: CLIPFlanT5ScriptArguments,
    model_name_or_path: str | None = None,
    dtype: str | None = None,
    attn_implementation: str | None = None,
) -> tuple[CLIPFlanT5ForConditionalGeneration, CLIPFlanT5Processor, dict[str, Any]]:
    """
    The model and processor a stage starts from, and what the model card should record about its sources:

    - stage 1: `text_model` + `vision_model` (a fresh projector);
    - stage 2: `model_name_or_path` (a stage-1 output of ours, any CLIP-FlanT5 folder or Hub repo, or an original
      checkpoint), or `text_model` + `vision_model` + `pretrained_projector`.

    The image aspect handling is set to the stage's (or `script_args.image_aspect_ratio`).
    """
    aspect = script_args.image_aspect_ratio or STAGE_DEFAULTS[stage]["image_aspect_ratio"]
    torch_dtype = None if dtype in (None, "auto") else getattr(torch, dtype)
    sources: dict[str, Any] = {}
    if stage == 1 or model_name_or_path is None:
        if not (script_args.text_model and script_args.vision_model):
            raise ValueError(
                "Building a model needs --text_model (e.g. google/flan-t5-xxl) and --vision_model (e.g. "
                "openai/clip-vit-large-patch14-336)"
                + ("." if stage == 1 else ", or --model_name_or_path with a stage-1 output.")
            )
        if stage == 1 and model_name_or_path is not None:
            raise ValueError(
                "Stage 1 builds its model from --text_model and --vision_model; drop --model_name_or_path."
            )
        model, processor = build_model_from_base_checkpoints(
            script_args.text_model,
            script_args.vision_model,
            image_aspect_ratio=aspect,
            dtype=torch_dtype,
            vision_attn_implementation=attn_implementation,
        )
        if stage == 2:
            if script_args.pretrained_projector is None:
                logger.warning(
                    "Stage 2 from base checkpoints without --pretrained_projector: the projector starts random."
                )
            else:
                load_projector_weights(model, script_args.pretrained_projector)
        sources = {"text_model": script_args.text_model, "vision_model": script_args.vision_model}
    else:
        from transformers import AutoProcessor

        if script_args.text_model or script_args.vision_model:
            raise ValueError("Pass either --model_name_or_path or --text_model/--vision_model, not both.")
        load_kwargs: dict[str, Any] = {"dtype": torch_dtype} if torch_dtype is not None else {}
        model = CLIPFlanT5ForConditionalGeneration.from_pretrained(model_name_or_path, **load_kwargs)
        processor = AutoProcessor.from_pretrained(model_name_or_path)
        if script_args.pretrained_projector is not None:
            load_projector_weights(model, script_args.pretrained_projector)
        sources = {
            "text_model": model.config.text_config._name_or_path or model_name_or_path,
            "vision_model": model.config.vision_config._name_or_path or model_name_or_path,
            "init": model_name_or_path,
        }
    model.config.image_aspect_ratio = aspect
    processor.image_aspect_ratio = aspect
    model.config.use_cache = False
    return model, processor, sources


def set_trainable_parameters(model: CLIPFlanT5ForConditionalGeneration, stage: int) -> list[str]:
    """
    Freeze what the stage keeps: stage 1 trains the projector only; stage 2 trains the projector and all of FlanT5
    (embeddings and LM head included); the vision tower is frozen in both. Returns the trainable parameter names.
    """
    if stage not in (1, 2):
        raise ValueError(f"stage must be 1 or 2, got {stage!r}.")
    model.requires_grad_(False)
    model.model.multi_modal_projector.requires_grad_(True)
    if stage == 2:
        model.model.language_model.requires_grad_(True)
        model.lm_head.requires_grad_(True)
    return [name for name, param in model.named_parameters() if param.requires_grad]


def default_peft_config(model_args, stage: int):
    """
    TRL's `get_peft_config(model_args)` with CLIP-FlanT5 defaults: LoRA on FlanT5's projections (never the frozen
    vision tower) unless `--lora_target_modules` says otherwise, and the projector trained in full alongside
    (`modules_to_save`), as the original LoRA recipe did.
    """
    from trl import get_peft_config

    if stage == 1:
        raise ValueError("Stage 1 trains the projector only; LoRA (--use_peft) applies to stage 2.")
    peft_config = get_peft_config(model_args)
    if peft_config is None:
        return None
    if not model_args.lora_target_modules:
        peft_config.target_modules = T5_LORA_TARGETS
    modules_to_save = list(peft_config.modules_to_save or [])
    if "multi_modal_projector" not in modules_to_save:
        modules_to_save.append("multi_modal_projector")
    peft_config.modules_to_save = modules_to_save
    return peft_config


def check_template(stage: int, template: str | None) -> str:
    template = template or STAGE_DEFAULTS[stage]["template"]
    if (stage == 1) != (template in STAGE1_TEMPLATES):
        raise ValueError(
            f"Template {template!r} does not fit stage {stage}: stage 1 uses t5_plain_split_text or t5_plain, stage 2 "
            "uses t5_v1."
        )
    return template


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


def merge_lora_and_save(trainer, output_dir: str | os.PathLike) -> None:
    """Merge the LoRA weights into FlanT5 and save the full model (plus processor and card) over the adapter files."""
    if trainer.is_deepspeed_enabled and trainer.accelerator.state.deepspeed_plugin.zero_stage == 3:
        raise NotImplementedError(
            "Merging LoRA under ZeRO-3 is not supported here: the adapter was saved; merge it afterwards with "
            "PeftModel.from_pretrained(...).merge_and_unload() on one process."
        )
    if not trainer.args.should_save:
        return
    merged = trainer.accelerator.unwrap_model(trainer.model).merge_and_unload()
    adapter_dir = Path(output_dir) / "adapter"
    trainer.accelerator.unwrap_model(trainer.model).save_pretrained(adapter_dir)
    merged.save_pretrained(output_dir)
    trainer.processing_class.save_pretrained(output_dir)
    for name in ("adapter_model.safetensors", "adapter_config.json"):
        (Path(output_dir) / name).unlink(missing_ok=True)


# ----------------------------------------------------------------------------------------------------------------------
# Demo


# Attention as wide as the model (8 heads x 8 = d_model, as in FlanT5): with 4 heads the tiny model learned to
# compare the caption with the image in only some seeds' runs; with 8 it did in every seed tried (0-4).
DEMO_MODEL = {"image_size": 32, "patch_size": 8, "vision_hidden": 64, "d_model": 64, "num_layers": 2, "num_heads": 8}
# The demo's training settings: tiny model, CPU, fp32, about two and a half minutes on two cores. Learning to compare
# a caption with the image from scratch takes the tiny model several hundred steps (colour first; shape and position
# later); batches of 16 give it more updates per second than batches of 32.
DEMO_ARGS = [
    "--output_dir", "outputs/clip-flant5-demo",
    "--num_train_epochs", "6",
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
    from .processing_clip_flant5 import SYSTEM_MESSAGE
    from .synthetic import VQA_QUESTION
    from .tiny import build_tiny_tokenizer

    prompts = [f"{SYSTEM_MESSAGE} USER: {VQA_QUESTION.format('a red circle on the left')} ASSISTANT: Yes No"] * 20
    return build_tiny_tokenizer(vocab_size=400, seed=seed, model_type="bpe", extra_sentences=prompts)


def build_demo_model(seed: int = 0) -> tuple[CLIPFlanT5ForConditionalGeneration, CLIPFlanT5Processor]:
    """The demo's tiny CLIP-FlanT5 (random weights, built in code): 32 px images, 16 image tokens, d_model 64."""
    from .tiny import tiny_config, tiny_processor

    tokenizer = build_demo_tokenizer(seed=seed)
    config = tiny_config(
        tokenizer,
        image_size=DEMO_MODEL["image_size"],
        patch_size=DEMO_MODEL["patch_size"],
        vision_hidden=DEMO_MODEL["vision_hidden"],
        d_model=DEMO_MODEL["d_model"],
        num_layers=DEMO_MODEL["num_layers"],
        num_heads=DEMO_MODEL["num_heads"],
        image_aspect_ratio="pad",
    )
    torch.manual_seed(seed)
    model = CLIPFlanT5ForConditionalGeneration(config)
    return model, tiny_processor(tokenizer, config)


def write_demo_base_checkpoints(folder: str | os.PathLike, seed: int = 0) -> tuple[Path, Path]:
    """
    Tiny random base checkpoints in the layouts of `google/flan-t5-*` (a `T5ForConditionalGeneration` with an untied
    head, saved with its tokenizer) and `openai/clip-vit-*` (a `CLIPVisionModel` with its preprocessor config), for
    the stage-1 demo and tests of the from-base-checkpoints path. Returns `(text_folder, vision_folder)`.
    """
    from transformers import T5Config

    from .tiny import tiny_config, tiny_processor

    folder = Path(folder)
    tokenizer = build_demo_tokenizer(seed=seed)
    config = tiny_config(
        tokenizer,
        image_size=DEMO_MODEL["image_size"],
        patch_size=DEMO_MODEL["patch_size"],
        vision_hidden=DEMO_MODEL["vision_hidden"],
        d_model=DEMO_MODEL["d_model"],
        num_layers=DEMO_MODEL["num_layers"],
        num_heads=DEMO_MODEL["num_heads"],
    )
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
    Write the synthetic data under `output_dir/data` and point `script_args` at it. For stage 1 also write tiny
    base checkpoints (`output_dir/base`) and point `--text_model`/`--vision_model` at them.
    """
    from .synthetic import write_synthetic_dataset

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
    "CLIPFlanT5ScriptArguments",
    "DEMO_ARGS",
    "STAGE_DEFAULTS",
    "build_demo_model",
    "build_model_from_base_checkpoints",
    "check_template",
    "default_peft_config",
    "describe_training",
    "load_model",
    "load_projector_weights",
    "merge_lora_and_save",
    "prepare_demo",
    "set_trainable_parameters",
]
