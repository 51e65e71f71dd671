# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""The plan of a scoring call: which distinct images there are, one row per pair with its encoded prompt and answer,
the chunks of images encoded together and the batches of rows scored together.

Every way of scoring (`VQAScore.__call__`, `score_matrix`, `generate`, `score_pixels`, `rank`, videos, explanations)
builds a [`ScoringPlan`] and lets the scorer run it, so that the rules below hold everywhere:

- each distinct image (a path by its absolute name, an in-memory image by identity) is encoded once per call, however
  many texts it is paired with;
- each distinct text is encoded once;
- images are encoded a chunk at a time (all rows of a chunk's images are scored while its features are held, so
  memory stays bounded however many images a call has), and a chunk's rows go out longest prompt first: padding stays
  small, and an out-of-memory error shows up at the first batch.
"""

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..image_processing_clip_flant5 import ImageInput
from ..processing_clip_flant5 import CLIPFlanT5Processor


# Images encoded together: at least this many, or a batch's worth when batches are larger.
MIN_CHUNK_IMAGES = 32


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


def check_batch_size(batch_size: int) -> None:
    """Raise unless `batch_size` is a positive integer."""
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")


def image_key(image: ImageInput) -> tuple[str, object]:
    """What makes two images the same image within a call: paths by absolute name, in-memory images by identity (the
    caller holds them for the whole call)."""
    if isinstance(image, (str, os.PathLike)):
        return ("path", os.path.abspath(os.fspath(image)))
    return ("object", id(image))


@dataclass
class PlanRow:
    """One (image, text) pair: its position in the caller's lists, its distinct image, its encoded prompt and answer
    (no answer for generation)."""

    index: int
    image: int
    prompt_ids: list[int]
    target_ids: list[int]


@dataclass
class PlanBatch:
    """Rows scored together, with the features of their chunk's images: `features[image_slots[i]]` is the image of
    `rows[i]`."""

    features: torch.Tensor
    image_slots: list[int]
    rows: list[PlanRow]


@dataclass
class ScoringPlan:
    """The distinct images of a call, its rows, and how they are grouped into chunks and batches."""

    images: list[Any]
    rows: list[PlanRow]
    batch_size: int
    rows_by_image: dict[int, list[PlanRow]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        check_batch_size(self.batch_size)
        self.rows_by_image = {}
        for row in self.rows:
            self.rows_by_image.setdefault(row.image, []).append(row)

    @classmethod
    def build(
        cls,
        processor: CLIPFlanT5Processor,
        images: Sequence[Any],
        texts: Sequence[str],
        question_template: str,
        answer_template: str | None,
        batch_size: int,
    ) -> "ScoringPlan":
        """The plan of scoring `images[i]` with `texts[i]`: the prompt is `question_template` filled with the text in
        the chat format, the target `answer_template` filled with it (None: no target, as for generation). Texts and
        templates are expected to be checked already (see `VQAScore.plan`)."""
        slots: dict[tuple[str, object], int] = {}
        distinct: list[Any] = []
        prompts: dict[str, list[int]] = {}
        targets: dict[str, list[int]] = {}
        rows = []
        for index, (image, text) in enumerate(zip(images, texts)):
            key = image_key(image)
            if key not in slots:
                slots[key] = len(distinct)
                distinct.append(image)
            if text not in prompts:
                prompts[text] = processor.encode_prompt(processor.chat_prompt(question_template.format(text)))
                targets[text] = (
                    [] if answer_template is None else processor.encode_target(answer_template.format(text))
                )
            rows.append(PlanRow(index, slots[key], prompts[text], targets[text]))
        return cls(images=distinct, rows=rows, batch_size=batch_size)

    @property
    def image_slots(self) -> list[int]:
        """The distinct image of each row, in row order."""
        return [row.image for row in self.rows]

    def chunks(self) -> list[list[int]]:
        """The distinct images (their positions in `images`) encoded together, in order of first use."""
        image_ids, size = list(self.rows_by_image), max(self.batch_size, MIN_CHUNK_IMAGES)
        return [image_ids[start : start + size] for start in range(0, len(image_ids), size)]

    def batches(self, image_ids: Sequence[int]) -> Iterator[list[PlanRow]]:
        """The rows of these images, `batch_size` at a time, longest prompt (then answer) first."""
        rows = [row for image_id in image_ids for row in self.rows_by_image[image_id]]
        rows.sort(key=lambda row: (len(row.prompt_ids), len(row.target_ids)), reverse=True)
        for start in range(0, len(rows), self.batch_size):
            yield rows[start : start + self.batch_size]


__all__ = ["MIN_CHUNK_IMAGES", "PlanBatch", "PlanRow", "ScoringPlan", "as_list", "check_batch_size", "image_key"]
