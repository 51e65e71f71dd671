"""The modality-grouped sampler."""

import random

import pytest

from transformers_clipflant5.training.sampler import ModalityGroupedSampler


def test_modality_grouped_sampler():
    rng = random.Random(0)
    lengths = [rng.randint(1, 50) * rng.choice((1, -1)) for _ in range(103)]
    sampler = ModalityGroupedSampler(lengths, batch_size=4, world_size=2, gradient_accumulation_steps=2, seed=1)
    order = list(sampler)
    assert sorted(order) == list(range(103))
    assert list(sampler) == order  # the same on every rank (and idempotent)
    sampler.set_epoch(1)
    assert list(sampler) != order
    sampler.set_epoch(0)
    group = 16
    n_image = sum(length > 0 for length in lengths)
    full_groups = n_image // group + (103 - n_image) // group
    for start in range(0, full_groups * group, group):
        chunk = [lengths[i] for i in order[start : start + group]]
        assert len({length > 0 for length in chunk}) == 1  # one optimizer step = one modality
        assert [abs(x) for x in chunk] == sorted((abs(x) for x in chunk), reverse=True)
    with pytest.raises(ValueError, match="non-zero"):
        ModalityGroupedSampler([3, 0], batch_size=1)
