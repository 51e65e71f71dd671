# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""The model a CLIP-FlanT5 training stage starts from, and what of it trains.

- [`build_model_from_base_checkpoints`] assembles a fresh CLIP-FlanT5 from a FlanT5 checkpoint and a CLIP
  checkpoint (stage 1, or stage 2 from an original stage-1 projector);
- [`load_model`] picks the right source for a stage; [`set_trainable_parameters`] freezes what the stage keeps;
- [`default_peft_config`] and [`merge_lora_and_save`]: LoRA on FlanT5, the projector trained in full.
"""

import contextlib
import logging
import os
from pathlib import Path
from typing import Any

import torch
from transformers import AutoTokenizer, CLIPVisionConfig, CLIPVisionModel, T5ForConditionalGeneration
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

from ..configuration_clip_flant5 import CLIPFlanT5Config
from ..modeling_clip_flant5 import CLIPFlanT5ForConditionalGeneration, CLIPFlanT5MultiModalProjector
from ..processing_clip_flant5 import DEFAULT_IMAGE_TOKEN, CLIPFlanT5Processor
from ..projector import load_projector
from .arguments import CLIPFlanT5ScriptArguments, stage_do_pad


logger = logging.getLogger(__name__)

# T5's attention and feed-forward projections: the LoRA targets of the language model (CLIP names its own
# q_proj/k_proj/v_proj/out_proj/fc1/fc2, so the vision tower is never targeted).
T5_LORA_TARGETS = r".*language_model\.(encoder|decoder)\..*\.(q|k|v|o|wi|wi_0|wi_1|wo)$"


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
    do_pad: bool = False,
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
        image_processor=image_processor, tokenizer=tokenizer, image_seq_length=config.image_seq_length
    )
    processor.image_processor.do_pad = do_pad
    return model, processor


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

    Padding images to square is set to the stage's default (or `script_args.do_pad`).
    """
    do_pad = stage_do_pad(stage, script_args.do_pad)
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
            do_pad=do_pad,
            dtype=torch_dtype,
            vision_attn_implementation=attn_implementation,
        )
        if stage == 2:
            if script_args.pretrained_projector is None:
                logger.warning(
                    "Stage 2 from base checkpoints without --pretrained_projector: the projector starts random."
                )
            else:
                load_projector(model, script_args.pretrained_projector)
        sources = {"text_model": script_args.text_model, "vision_model": script_args.vision_model}
    else:
        from transformers import AutoProcessor

        if script_args.text_model or script_args.vision_model:
            raise ValueError("Pass either --model_name_or_path or --text_model/--vision_model, not both.")
        from .distributed import init_deepspeed_comm_for_zero3

        load_kwargs: dict[str, Any] = {"dtype": torch_dtype} if torch_dtype is not None else {}
        init_deepspeed_comm_for_zero3()  # ZeRO-3 loads the weights already sharded over every process
        model = CLIPFlanT5ForConditionalGeneration.from_pretrained(model_name_or_path, **load_kwargs)
        processor = AutoProcessor.from_pretrained(model_name_or_path)
        if script_args.pretrained_projector is not None:
            load_projector(model, script_args.pretrained_projector)
        sources = {
            "text_model": model.config.text_config._name_or_path or model_name_or_path,
            "vision_model": model.config.vision_config._name_or_path or model_name_or_path,
            "init": model_name_or_path,
        }
    processor.image_processor.do_pad = do_pad
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


def describe_trainable(model: torch.nn.Module) -> str:
    """What trains, counted on the model the trainer holds (after LoRA wrapped it, if it did): e.g.
    "Trainable: 1,234 parameters in 56 tensors (projector + FlanT5); vision tower frozen." or, with LoRA,
    "... in 40 tensors (projector + LoRA adapters on FlanT5) ..."."""
    trainable = [(name, param) for name, param in model.named_parameters() if param.requires_grad]
    count = sum(param.numel() for _, param in trainable)
    lora = any("lora_" in name for name, _ in trainable)
    text = any(
        ".language_model." in name or name.startswith("lm_head") or ".lm_head." in name for name, _ in trainable
    )
    parts = ["projector"] if any("multi_modal_projector" in name for name, _ in trainable) else []
    parts += ["LoRA adapters on FlanT5"] if lora else (["FlanT5"] if text else [])
    return (
        f"Trainable: {count:,} parameters in {len(trainable)} tensors ({' + '.join(parts) or 'nothing'}); "
        "vision tower frozen."
    )


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


def merge_lora_and_save(trainer, output_dir: str | os.PathLike) -> None:
    """Merge the LoRA weights into FlanT5 and save the full model (plus processor and card) over the adapter files."""
    if trainer.is_deepspeed_enabled and trainer.accelerator.state.deepspeed_plugin.zero_stage == 3:
        raise NotImplementedError(
            "Merging LoRA under ZeRO-3 is not supported here: the adapter was saved; merge it afterwards with "
            "PeftModel.from_pretrained(...).merge_and_unload() on one process."
        )
    if not trainer.args.should_save:
        return
    peft_model = trainer.accelerator.unwrap_model(trainer.model)
    # The adapter first: merge_and_unload folds the LoRA weights into the base layers in place and removes them.
    peft_model.save_pretrained(Path(output_dir) / "adapter")
    merged = peft_model.merge_and_unload()
    merged.save_pretrained(output_dir)
    trainer.processing_class.save_pretrained(output_dir)
    for name in ("adapter_model.safetensors", "adapter_config.json"):
        (Path(output_dir) / name).unlink(missing_ok=True)


__all__ = [
    "T5_LORA_TARGETS",
    "build_model_from_base_checkpoints",
    "default_peft_config",
    "load_model",
    "merge_lora_and_save",
    "describe_trainable",
    "set_trainable_parameters",
]
