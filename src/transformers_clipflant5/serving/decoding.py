# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""What a request carries, made into what the scorer takes: base64 text or encoded bytes into RGB PIL images (within
the processor's pixel limit, checked from the header before decoding), and texts checked as the scorer checks them.

Every function raises [`ItemError`] with a one-line message for an item that cannot be scored; the server reports it
against that item.
"""

import base64
import binascii
import io
import re
import threading

from PIL import Image, UnidentifiedImageError

from ..image_processing_clip_flant5 import load_image
from ..scoring.prompts import check_question_template, check_text, fit_text


class ItemError(ValueError):
    """An image or text of a request that cannot be scored; the message says why, in one line."""


# A data URL's header ("data:image/png;base64,"), which browsers and some clients put before the base64 text.
_DATA_URL = re.compile(r"^data:[\w/+.-]*;base64,")


def decode_base64(text: object) -> bytes:
    """The bytes of a base64 string (standard alphabet, optionally a data URL); [`ItemError`] otherwise."""
    if not isinstance(text, str):
        raise ItemError(f"expected a base64 string, got {type(text).__name__}")
    text = _DATA_URL.sub("", text, count=1)
    try:
        # validate: a stray character is an error, not silently skipped (it would decode to other bytes).
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as error:
        raise ItemError(f"not valid base64 ({error})") from error


def decode_image(data: object, max_pixels: int | None) -> Image.Image:
    """An encoded image (PNG, JPEG, WebP, ... bytes) as an RGB PIL image; [`ItemError`] for anything that is not an
    image PIL can read, or one of more than `max_pixels` pixels (refused from its header, before it is decoded)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ItemError(f"expected encoded image bytes, got {type(data).__name__}")
    if len(data) == 0:
        raise ItemError("the image is empty (0 bytes)")
    try:
        opened = Image.open(io.BytesIO(bytes(data)))
        # load_image checks the size before converting (which decodes) and converts as the scorer does.
        return load_image(opened, max_pixels)
    except Image.DecompressionBombError as error:
        raise ItemError(f"the image is too large to decode safely ({error})") from error
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, TypeError) as error:
        message = str(error).replace("\n", " ")
        if isinstance(error, UnidentifiedImageError):
            message = "not an image PIL can read (send PNG, JPEG or WebP bytes)"
        raise ItemError(message) from error


class TextChecker:
    """Checks texts as the scorer does (not empty, no image token, a prompt within the tokenizer's length limit),
    with the server's own processor: safe to call from several threads (the tokenizer is not)."""

    def __init__(self, processor, default_question_template: str, answer_template: str):
        self.processor = processor
        self.default_question_template = default_question_template
        self.answer_template = answer_template
        self._lock = threading.Lock()

    def check_template(self, template: object) -> str:
        """`template` (None: the server's default) once checked; [`ItemError`] if the scorer would refuse it."""
        if template is None:
            return self.default_question_template
        try:
            check_question_template(template, self.processor.image_token)
        except (TypeError, ValueError) as error:
            raise ItemError(str(error)) from error
        return template

    def check(self, text: object, question_template: str) -> None:
        """[`ItemError`] if `text` cannot be scored with `question_template`."""
        try:
            check_text(text, "the text", self.processor.image_token)
            with self._lock:
                fit_text(self.processor, text, "the text", question_template, self.answer_template)
        except (TypeError, ValueError) as error:
            raise ItemError(str(error)) from error
