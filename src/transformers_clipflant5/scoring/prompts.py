# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""VQAScore's question and answer: the paper's defaults, and what is checked of templates and texts before any model
work (a text that makes a prompt longer than the tokenizer's limit is refused with its count, or cut to fit).

The prompt around the question is the stage-2 chat format, rendered from the processor's chat template
(`processor.chat_prompt`), never written out here.
"""

DEFAULT_QUESTION_TEMPLATE = 'Does this figure show "{}"? Please answer yes or no.'
DEFAULT_ANSWER_TEMPLATE = "Yes"


def check_question_template(template: str, image_token: str = "<image>") -> None:
    """Raise if `template` cannot take a text: it needs exactly one `{}` slot and nothing else to fill, and no
    `image_token` (the prompt places the image itself)."""
    if not isinstance(template, str):
        raise TypeError(f"question_template must be a string, got {type(template).__name__}.")
    if image_token in template:
        raise ValueError(f"question_template must not contain {image_token!r}: the prompt adds the image itself.")
    if "{}" not in template:
        raise ValueError(
            f"question_template must contain '{{}}' where the text goes, got {template!r} "
            f"(the default is {DEFAULT_QUESTION_TEMPLATE!r})."
        )
    try:
        template.format("text")
    except (IndexError, KeyError, ValueError) as error:
        raise ValueError(
            f"question_template {template!r} is not a format string with one '{{}}' slot ({error!r}); write other "
            "literal braces as '{{' and '}}'."
        ) from error


def check_answer_template(template: str, image_token: str = "<image>") -> None:
    """Raise if `template` is not a usable answer: a non-empty string, optionally with one `{}` slot for the text,
    without `image_token` (an answer is text only)."""
    if not isinstance(template, str):
        raise TypeError(f"answer_template must be a string, got {type(template).__name__}.")
    if image_token in template:
        raise ValueError(
            f"answer_template must not contain {image_token!r}, which the model reserves for image features."
        )
    try:
        answer = template.format("text")
    except (IndexError, KeyError, ValueError) as error:
        raise ValueError(
            f"answer_template {template!r} is not a format string with at most one '{{}}' slot ({error!r})."
        ) from error
    if not answer.strip():
        raise ValueError(f"answer_template is empty ({template!r}); the default is {DEFAULT_ANSWER_TEMPLATE!r}.")


def check_text(text: str, where: str = "text", image_token: str = "<image>") -> None:
    """Raise if `text` cannot be scored: not a string, empty, or carrying the image placeholder."""
    if not isinstance(text, str):
        raise TypeError(f"{where} must be a string, got {type(text).__name__}.")
    if not text.strip():
        raise ValueError(f"{where} is empty; every text needs some content to be scored.")
    if image_token in text:
        raise ValueError(
            f"{where} contains {image_token!r}, which the model reserves for image features: {text[:80]!r}"
        )


# Tokenizers without a configured limit report this placeholder (transformers' VERY_LARGE_INTEGER): no limit.
_UNSET_LIMIT = int(1e29)


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


__all__ = [
    "DEFAULT_ANSWER_TEMPLATE",
    "DEFAULT_QUESTION_TEMPLATE",
    "check_answer_template",
    "check_question_template",
    "check_text",
    "fit_text",
    "fit_texts",
    "token_limit",
]
