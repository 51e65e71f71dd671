# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""`VQAScore.generate`: answers to questions about images (VQA, captions) in the stage-2 chat format, through the
scorer's own plan (each distinct image encoded once, rows sorted by prompt length)."""

import copy
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from tqdm.auto import tqdm
from transformers import GenerationConfig

from ..image_processing_clip_flant5 import ImageInput
from ..padding import pad_right
from .inputs import as_list, fit_texts
from .prompts import check_text
from .settings import check_batch_size


if TYPE_CHECKING:
    from .vqascore import VQAScore

DEFAULT_MAX_NEW_TOKENS = 128


@torch.inference_mode()
def generate(
    self: "VQAScore",
    images: Sequence[ImageInput],
    prompts: Sequence[str],
    batch_size: int | None = None,
    progress: bool = False,
    truncate_prompts: bool = False,
    **generation_kwargs,
) -> list[str] | list[list[str]]:
    """
    Answer `prompts[i]` about `images[i]` (VQA, captioning) in the stage-2 chat format.

    Args:
        images: one image per prompt.
        prompts: questions or instructions, without `<image>` (the chat prompt places the image).
        batch_size: rows per `generate` call (default: the scorer's).
        truncate_prompts: cut a prompt whose chat prompt exceeds the tokenizer's `model_max_length` (512 for
            FlanT5) to fit, instead of raising a ValueError with its token count (the default).
        generation_kwargs: passed to `model.generate` (`max_new_tokens`, defaulting to 128 unless `max_length` or
            a `generation_config` that sets either is given, `num_beams`, `do_sample`, `temperature`, ...).

    Returns:
        The decoded answers, special tokens removed and whitespace stripped: one string per prompt, or with
        `num_return_sequences=n > 1` a list of `n` strings per prompt (best first for beam search).
    """
    batch_size = self.batch_size if batch_size is None else batch_size
    check_batch_size(batch_size)
    images, prompts = as_list(images, "images"), as_list(prompts, "prompts")
    if len(images) != len(prompts):
        raise ValueError(f"Got {len(images)} images and {len(prompts)} prompts; pass one prompt per image.")
    for index, prompt in enumerate(prompts):
        check_text(prompt, f"prompts[{index}]", self.processor.image_token)
    prompts = fit_texts(self.processor, prompts, "prompts", "{}", None, truncate_prompts)
    _default_max_new_tokens(generation_kwargs)

    distinct_images, rows = self._plan_rows(images, prompts, "{}", None)
    answers: list[str | list[str]] = [""] * len(rows)
    bar = tqdm(total=len(rows), disable=not progress, unit="prompt", desc="generate")
    for features, image_slots, batch in self._batches(distinct_images, rows, batch_size, None, bar):
        for row, answer in zip(batch, _generate_batch(self, features, image_slots, batch, generation_kwargs)):
            answers[row.index] = answer
    return answers


def _default_max_new_tokens(generation_kwargs: dict) -> None:
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


def _generate_batch(
    self: "VQAScore", features: torch.Tensor, image_slots: list[int], rows: list, generation_kwargs: dict
) -> list[str] | list[list[str]]:
    input_ids, attention_mask = pad_right(
        [row.prompt_ids for row in rows], self.processor.tokenizer.pad_token_id, self.device
    )
    output_ids = self.model.generate(
        input_ids=input_ids,
        attention_mask=attention_mask,
        image_embeds=features[torch.tensor(image_slots, device=features.device)],
        **generation_kwargs,
    )
    texts = [text.strip() for text in self.processor.batch_decode(output_ids, skip_special_tokens=True)]
    # model.generate returns num_return_sequences consecutive sequences per prompt.
    generation_config = generation_kwargs.get("generation_config") or self.model.generation_config
    per_prompt = generation_kwargs.get("num_return_sequences") or generation_config.num_return_sequences or 1
    if per_prompt == 1:
        return texts
    return [texts[start : start + per_prompt] for start in range(0, len(texts), per_prompt)]
