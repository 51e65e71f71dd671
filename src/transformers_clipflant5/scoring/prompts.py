# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""VQAScore's question and answer: the paper's defaults, and the checks of templates and texts before any scoring.

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


__all__ = [
    "DEFAULT_ANSWER_TEMPLATE",
    "DEFAULT_QUESTION_TEMPLATE",
    "check_answer_template",
    "check_question_template",
    "check_text",
]
