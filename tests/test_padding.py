"""Right padding of token ids into a batch."""

import pytest
import torch

from transformers_clipflant5.padding import pad_right


def test_pad_right_pads_to_the_longest_and_masks_the_padding():
    padded, mask = pad_right([[5, 6, 7], [8], []], pad_value=-100)
    assert padded.tolist() == [[5, 6, 7], [8, -100, -100], [-100, -100, -100]]
    assert mask.tolist() == [[1, 1, 1], [1, 0, 0], [0, 0, 0]]
    assert padded.dtype == mask.dtype == torch.long
    with pytest.raises(ValueError, match="Nothing to pad"):
        pad_right([], pad_value=0)
