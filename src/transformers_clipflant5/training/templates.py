# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""The original training code's prompt templates: one row of LLaVA conversations -> (encoder prompt, target text).

- `t5_plain` (stage 1): encoder input `<image>`, target the caption (the reply of a 2-turn conversation).
- `t5_plain_split_text` (stage 1, recommended): a random cut `s` in [1, len(caption) // 2] characters; encoder input
  `<image>` + caption[:s], target caption[s:].
- `t5_v1` (stage 2): encoder input `SYSTEM USER: msg ASSISTANT: msg ... ASSISTANT: `, target the last reply. In a row
  with an image, `<image>` is moved to the start of the first human message, followed by a newline.
"""

import random
from collections.abc import Sequence

from ..processing_clip_flant5 import DEFAULT_IMAGE_TOKEN, SYSTEM_MESSAGE


TEMPLATES = ("t5_plain", "t5_plain_split_text", "t5_v1")
STAGE1_TEMPLATES = ("t5_plain", "t5_plain_split_text")
ROLES = {"human": "USER", "gpt": "ASSISTANT"}


def _move_image_to_front(text: str) -> str:
    # As the original: drop every <image>, strip, and put one back at the start followed by a newline.
    return (DEFAULT_IMAGE_TOKEN + "\n" + text.replace(DEFAULT_IMAGE_TOKEN, "").strip()).strip()


def build_prompt_and_target(
    conversations: Sequence[dict[str, str]], template: str, has_image: bool, rng: random.Random | None = None
) -> tuple[str, str]:
    """The encoder prompt (with `<image>` where the image goes) and the target text of one row."""
    if template in STAGE1_TEMPLATES:
        caption = conversations[1]["value"]
        if template == "t5_plain":
            return DEFAULT_IMAGE_TOKEN, caption
        split = 0 if len(caption) < 2 else (rng or random).randint(1, len(caption) // 2)
        return DEFAULT_IMAGE_TOKEN + caption[:split], caption[split:]
    if template != "t5_v1":
        raise ValueError(f"Unknown template {template!r}; choose one of {TEMPLATES}.")
    messages = list(conversations)
    if messages[0]["from"] != "human":
        messages = messages[1:]
    if has_image:
        first = dict(messages[0])
        first["value"] = _move_image_to_front(first["value"])
        messages[0] = first
        # A placeholder left in a later message would ask for a second image the row does not have.
        messages[1:] = [{**m, "value": m["value"].replace(DEFAULT_IMAGE_TOKEN, "")} for m in messages[1:]]
    prompt = SYSTEM_MESSAGE + " "
    for message in messages[:-1]:
        role = ROLES[message["from"]]
        # The original writes "ROLE:" with no separator for an empty message.
        prompt += f"{role}: {message['value']} " if message["value"] else f"{role}:"
    prompt += "ASSISTANT: "
    return prompt, messages[-1]["value"]


__all__ = ["ROLES", "STAGE1_TEMPLATES", "TEMPLATES", "build_prompt_and_target"]
