# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""The public API of a [`VQAScore`] that the ways of scoring built on it (videos, explanations) use.

`scoring.video` and `scoring.explain` take the scorer as an argument typed by this protocol rather than importing
`vqascore` (which imports them to offer `score_videos` and `explain` as methods): the dependency stays one-way, and
what they rely on is written down here.
"""

from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import torch

from ..modeling_clip_flant5 import CLIPFlanT5ForConditionalGeneration
from ..processing_clip_flant5 import CLIPFlanT5Processor


class ScorerAPI(Protocol):
    """What video scoring and explanations use of a [`VQAScore`]."""

    model: CLIPFlanT5ForConditionalGeneration
    processor: CLIPFlanT5Processor
    question_template: str
    answer_template: str
    batch_size: int

    @property
    def device(self) -> torch.device: ...

    def __call__(
        self,
        images: Sequence[Any],
        texts: Sequence[str],
        batch_size: int | None = None,
        question_template: str | None = None,
        answer_template: str | None = None,
        progress: bool = False,
        truncate_texts: bool = False,
    ) -> torch.Tensor: ...

    def check_texts(
        self,
        texts: Sequence[str],
        question_template: str | None = None,
        answer_template: str | None = None,
        truncate_texts: bool = False,
    ) -> tuple[list[str], str, str]: ...

    def iter_scores(self, *args: Any, **kwargs: Any) -> Iterator[tuple[list[int], torch.Tensor]]: ...

    def score_pixels(self, *args: Any, **kwargs: Any) -> torch.Tensor: ...


__all__ = ["ScorerAPI"]
