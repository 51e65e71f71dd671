# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""The modality-grouped sampler of the original training (`group_by_modality_length`)."""

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler


class ModalityGroupedSampler(Sampler[int]):
    """
    Orders a dataset so that each optimizer step sees one modality (rows with an image, or text-only rows), and each
    per-device batch holds rows of similar length (less padding). Lengths follow the original: word counts, negative
    for text-only rows.

    Each modality is shuffled and cut into groups of `batch_size * world_size * gradient_accumulation_steps` rows; a
    group is sorted by length, longest first; the groups of both modalities are shuffled together, with the two
    incomplete remainders last. The order depends only on `seed` and the epoch, so every rank computes the same one
    (accelerate then deals consecutive per-device batches to the ranks).
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        world_size: int = 1,
        gradient_accumulation_steps: int = 1,
        seed: int = 0,
    ):
        if any(length == 0 for length in lengths):
            raise ValueError(
                "Modality lengths must be non-zero: positive for image rows, negative for text-only rows."
            )
        self.lengths = list(lengths)
        self.group_size = batch_size * world_size * gradient_accumulation_steps
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def _groups(self, indices: list[int], generator: torch.Generator) -> list[list[int]]:
        order = [indices[i] for i in torch.randperm(len(indices), generator=generator).tolist()]
        groups = [order[i : i + self.group_size] for i in range(0, len(order), self.group_size)]
        return [sorted(group, key=lambda i: -abs(self.lengths[i])) for group in groups]

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        image_rows = [i for i, length in enumerate(self.lengths) if length > 0]
        text_rows = [i for i, length in enumerate(self.lengths) if length < 0]
        full, remainders = [], []
        for rows in (image_rows, text_rows):
            if not rows:
                continue
            groups = self._groups(rows, generator)
            if len(groups[-1]) < self.group_size:
                remainders.append(groups.pop())
            full.extend(groups)
        shuffled = [full[i] for i in torch.randperm(len(full), generator=generator).tolist()]
        for group in shuffled + remainders:
            yield from group


__all__ = ["ModalityGroupedSampler"]
