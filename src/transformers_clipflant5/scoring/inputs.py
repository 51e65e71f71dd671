# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""Checks of what a caller hands the scorer, done before any model work: one item or a list, and texts that fit the
tokenizer's length limit (refused with the count and the limit, or cut to fit when asked)."""

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image


# Tokenizers without a configured limit report this placeholder (transformers' VERY_LARGE_INTEGER): no limit.
_UNSET_LIMIT = int(1e29)


def as_list(items: Any, what: str) -> list:
    """
    `items` as a list: a single text, path, PIL image or one image array (2-D, or 3-D HWC/CHW) is one item, so that
    `scorer("cat.png", "a cat")` scores one pair; a list, tuple, 4-D array (one image per row) or other sequence is
    taken item by item.
    """
    if isinstance(items, (str, bytes, os.PathLike, Image.Image)):
        return [items]
    if isinstance(items, (np.ndarray, torch.Tensor)) and items.ndim in (2, 3):
        return [items]
    if isinstance(items, dict) or not isinstance(items, (Sequence, np.ndarray, torch.Tensor)):
        raise TypeError(f"{what} must be a list (or one item), got {type(items).__name__}.")
    return list(items)


def token_limit(processor) -> int | None:
    """The longest prompt (in text tokens, image placeholders not counted) the tokenizer declares, or None."""
    limit = getattr(processor.tokenizer, "model_max_length", None)
    if not isinstance(limit, int) or limit >= _UNSET_LIMIT:
        return None
    return limit


def _prompt_tokens(processor, text: str, question_template: str) -> int:
    # Not verbose: the tokenizer would warn about the very length that the caller measures to refuse or cut it.
    ids = processor.encode_prompt(processor.chat_prompt(question_template.format(text)), verbose=False)
    return len(ids) - ids.count(processor.image_token_id)


def _cut_text(text: str, offsets: list[tuple[int, int]], tokens: int) -> str:
    """The start of `text` made of its first `tokens` tokens (`offsets`: the tokenizer's character spans)."""
    if tokens <= 0:
        return ""
    if len(offsets) <= tokens:
        return text
    return text[: offsets[tokens - 1][1]].rstrip()


def fit_text(
    processor,
    text: str,
    where: str,
    question_template: str,
    answer_template: str | None,
    truncate: bool = False,
) -> str:
    """
    `text` if its prompt and its answer (none when `answer_template` is None, as for generation) fit the tokenizer's
    `model_max_length` (512 for FlanT5), else a ValueError naming `where` with the token count and the limit; with
    `truncate`, the text cut at its end until they fit. Only the text is cut: the question around it and the image
    placeholders are kept whole.
    """
    limit = token_limit(processor)
    if limit is None:
        return text
    prompt_tokens = _prompt_tokens(processor, text, question_template)
    if prompt_tokens > limit:
        if not truncate:
            template_tokens = _prompt_tokens(processor, "", question_template)
            if template_tokens >= limit:
                # Telling the caller to shorten the text would not help (truncation reports this as "cannot be cut").
                raise ValueError(
                    f"The question template alone makes a prompt of {template_tokens} text tokens, the tokenizer's "
                    f"limit being {limit}: no text fits ({where} included). Use a shorter question_template."
                )
            raise ValueError(
                f"{where} makes a prompt of {prompt_tokens} text tokens, more than the limit of {limit} (the "
                "tokenizer's model_max_length): the model was trained on shorter prompts and memory grows with the "
                "square of the length. Shorten the text, or pass truncate_texts=True (CLI: --truncate-texts) to cut "
                f"it to fit. It starts {text[:80]!r}."
            )
        offsets = processor.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)[
            "offset_mapping"
        ]
        budget = len(offsets) - (prompt_tokens - limit)
        cut = _cut_text(text, offsets, budget)
        # Re-tokenizing the cut text may merge differently at the cut: shorten until the prompt fits.
        while cut and _prompt_tokens(processor, cut, question_template) > limit:
            budget -= 1
            cut = _cut_text(text, offsets, budget)
        if not cut.strip():
            raise ValueError(
                f"{where} cannot be cut to fit: the question template alone takes the tokenizer's limit of {limit} "
                "tokens. Use a shorter question_template."
            )
        text = cut
    if answer_template is None:
        return text
    target_tokens = len(processor.encode_target(answer_template.format(text)))
    if target_tokens > limit:
        raise ValueError(
            f"The answer for {where} is {target_tokens} tokens long, more than the limit of {limit} (the tokenizer's "
            "model_max_length): use an answer_template that does not repeat a long text."
        )
    return text


def fit_texts(
    processor,
    texts: list[str],
    what: str,
    question_template: str,
    answer_template: str | None,
    truncate: bool = False,
) -> list[str]:
    """[`fit_text`] of each of `texts` (named `what[i]` in errors), each distinct text checked once."""
    fitted: dict[str, str] = {}
    for index, text in enumerate(texts):
        if text not in fitted:
            fitted[text] = fit_text(processor, text, f"{what}[{index}]", question_template, answer_template, truncate)
    return [fitted[text] for text in texts]


__all__ = ["as_list", "fit_text", "fit_texts", "token_limit"]
