# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""What `VQAScore.generate` does with each batch of its plan: `model.generate` on the batch's prompts and image
features, and the answers decoded; and the default length of an answer."""

import copy

import torch
from transformers import GenerationConfig

from ..modeling_clip_flant5 import CLIPFlanT5ForConditionalGeneration
from ..padding import pad_right
from ..processing_clip_flant5 import CLIPFlanT5Processor
from .plan import PlanBatch


DEFAULT_MAX_NEW_TOKENS = 128


def default_max_new_tokens(generation_kwargs: dict) -> None:
    """Bound the answers by `DEFAULT_MAX_NEW_TOKENS` unless the call bounds them: by `max_new_tokens` or `max_length`,
    or in its `generation_config` (a `max_new_tokens`, or a `max_length` other than transformers' default)."""
    if "max_new_tokens" in generation_kwargs or "max_length" in generation_kwargs:
        return
    config = generation_kwargs.get("generation_config")
    if config is None:
        generation_kwargs["max_new_tokens"] = DEFAULT_MAX_NEW_TOKENS
    elif config.max_new_tokens is None and config.max_length == GenerationConfig().max_length:
        # On a copy of the caller's config: transformers deprecates passing a generation_config with other settings.
        config = copy.deepcopy(config)
        config.max_new_tokens = DEFAULT_MAX_NEW_TOKENS
        generation_kwargs["generation_config"] = config


def generate_batch(
    model: CLIPFlanT5ForConditionalGeneration,
    processor: CLIPFlanT5Processor,
    batch: PlanBatch,
    device: torch.device,
    generation_kwargs: dict,
) -> list[str] | list[list[str]]:
    """The answers to the rows of `batch`, in its order: one string each, or a list of `num_return_sequences`."""
    input_ids, attention_mask = pad_right(
        [row.prompt_ids for row in batch.rows], processor.tokenizer.pad_token_id, device
    )
    output_ids = model.generate(
        input_ids=input_ids,
        attention_mask=attention_mask,
        image_embeds=batch.features[torch.tensor(batch.image_slots, device=batch.features.device)],
        **generation_kwargs,
    )
    texts = [text.strip() for text in processor.batch_decode(output_ids, skip_special_tokens=True)]
    # model.generate returns num_return_sequences consecutive sequences per prompt.
    generation_config = generation_kwargs.get("generation_config") or model.generation_config
    per_prompt = generation_kwargs.get("num_return_sequences") or generation_config.num_return_sequences or 1
    if per_prompt == 1:
        return texts
    return [texts[start : start + per_prompt] for start in range(0, len(texts), per_prompt)]


__all__ = ["DEFAULT_MAX_NEW_TOKENS", "default_max_new_tokens", "generate_batch"]
