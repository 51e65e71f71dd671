# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""Right padding of token id lists into a batch, the one way the scorer and the training collator build batches."""

from collections.abc import Sequence

import torch


def pad_right(
    sequences: Sequence[Sequence[int]], pad_value: int, device: torch.device | str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """
    Pad `sequences` on the right to the longest with `pad_value` (the tokenizer's pad id for inputs, -100 for labels).

    Returns `(padded, mask)`: two `(len(sequences), longest)` long tensors on `device`, `mask` 1 on the real tokens and
    0 on the padding (the attention mask of inputs, the decoder attention mask of labels).
    """
    if not sequences:
        raise ValueError("Nothing to pad: pass at least one sequence.")
    width = max(len(ids) for ids in sequences)
    padded = [[*ids, *[pad_value] * (width - len(ids))] for ids in sequences]
    mask = [[1] * len(ids) + [0] * (width - len(ids)) for ids in sequences]
    return (
        torch.tensor(padded, dtype=torch.long, device=device),
        torch.tensor(mask, dtype=torch.long, device=device),
    )


__all__ = ["pad_right"]
