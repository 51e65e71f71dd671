# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""The original training code's prompt templates: one row of LLaVA conversations -> (encoder prompt, target text).

- `t5_plain` (stage 1): encoder input `<image>`, target the caption (the reply of a 2-turn conversation).
- `t5_plain_split_text` (stage 1, recommended): a random cut `s` in [1, len(caption) // 2] characters; encoder input
  `<image>` + caption[:s], target caption[s:].
- `t5_v1` (stage 2): encoder input `SYSTEM USER: msg ASSISTANT: msg ... ASSISTANT: `, target the last reply. In a row
  with an image, `<image>` is moved to the start of the first human message, followed by a newline. The prompt is
  rendered by the processor's chat template, the same that renders VQAScore's question.
"""

import random
from collections.abc import Sequence
from typing import Any

from ..processing_clip_flant5 import DEFAULT_IMAGE_TOKEN, CLIPFlanT5Processor


TEMPLATES = ("t5_plain", "t5_plain_split_text", "t5_v1")
STAGE1_TEMPLATES = ("t5_plain", "t5_plain_split_text")
# LLaVA's speakers, as the chat template names them.
ROLES = {"human": "user", "gpt": "assistant"}


def build_prompt_and_target(
    conversations: Sequence[dict[str, str]],
    template: str,
    has_image: bool,
    rng: random.Random | None = None,
    processor: CLIPFlanT5Processor | None = None,
) -> tuple[str, str]:
    """
    The encoder prompt (with `<image>` where the image goes) and the target text of one row. `t5_v1` renders the
    prompt with `processor`'s chat template, the one source of the stage-2 format (VQAScore's prompt comes from it
    too); `rng` draws the `t5_plain_split_text` cut.
    """
    if template in STAGE1_TEMPLATES:
        caption = conversations[1]["value"]
        if template == "t5_plain":
            return DEFAULT_IMAGE_TOKEN, caption
        split = 0 if len(caption) < 2 else (rng or random).randint(1, len(caption) // 2)
        return DEFAULT_IMAGE_TOKEN + caption[:split], caption[split:]
    if template != "t5_v1":
        raise ValueError(f"Unknown template {template!r}; choose one of {TEMPLATES}.")
    if processor is None:
        raise ValueError("Template 't5_v1' renders its prompt with the processor's chat template: pass processor=.")
    messages = stage2_messages(conversations, has_image)
    prompt = processor.apply_chat_template(messages[:-1], add_generation_prompt=True, tokenize=False)
    return prompt, messages[-1]["content"]


def stage2_messages(conversations: Sequence[dict[str, str]], has_image: bool) -> list[dict[str, Any]]:
    """
    A LLaVA conversation as chat messages, the way the original stage-2 training read it: a leading non-human message
    is dropped; in a row with an image, every `<image>` is removed and the image is put at the start of the first
    human message (the chat template writes it there followed by a newline, the text stripped).
    """
    messages = [{"role": ROLES[m["from"]], "content": m["value"]} for m in conversations]
    if messages[0]["role"] != "user":
        messages = messages[1:]
    if has_image:
        text = messages[0]["content"].replace(DEFAULT_IMAGE_TOKEN, "")
        messages[0] = {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}
        # A placeholder left in a later message would ask for a second image the row does not have.
        for message in messages[1:]:
            message["content"] = message["content"].replace(DEFAULT_IMAGE_TOKEN, "")
    return messages


__all__ = ["ROLES", "STAGE1_TEMPLATES", "TEMPLATES", "build_prompt_and_target", "stage2_messages"]
