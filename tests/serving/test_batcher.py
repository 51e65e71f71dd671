"""The batcher in its event loop with real tiny scorers: requests merged into batches, large ones split, replicas
shared, dropped requests skipped, and one pair's failure kept to that pair. Running out of memory cannot be caused
on purpose on a CPU: a scorer that raises torch's OutOfMemoryError above a batch size stands in for a full GPU."""

import asyncio

import pytest
import torch
from PIL import Image

from tests.support.images import make_images
from transformers_clipflant5 import VQAScore
from transformers_clipflant5.serving.batcher import Batcher, PairError, is_out_of_memory
from transformers_clipflant5.serving.replicas import Replica


TEXTS = ["a red circle", "a blue square", "green", "a yellow cross on the top"]
TEMPLATE = 'Does this figure show "{}"? Please answer yes or no.'


class FullMemory(VQAScore):
    """Raises torch.OutOfMemoryError, as a GPU with too little memory left would, for more than `fits` pairs."""

    fits = 2

    def iter_scores(self, images, texts, *args, **kwargs):
        if len(images) > self.fits:
            raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate a batch of {len(images)} pairs")
        yield from super().iter_scores(images, texts, *args, **kwargs)


class FailsOnPoison(VQAScore):
    """Fails every batch holding the text "poison" (a bug the batcher must keep to that pair)."""

    def iter_scores(self, images, texts, *args, **kwargs):
        if "poison" in texts:
            raise RuntimeError("a bug triggered by one pair")
        yield from super().iter_scores(images, texts, *args, **kwargs)


@pytest.fixture(scope="module")
def images():
    return make_images([(20, 40), (50, 30), (33, 33), (24, 10), (64, 48)], seed=4)


def pairs(images, count: int) -> tuple[list, list[str]]:
    return [images[k % len(images)] for k in range(count)], [TEXTS[k % len(TEXTS)] for k in range(count)]


def run_batcher(replicas, max_batch_size, max_wait, requests, cancel_first=False):
    """Submit each (images, texts) request at once, await them all, drain: (results per request, metrics)."""

    async def main():
        batcher = Batcher(replicas, max_batch_size, max_wait)
        batcher.start()
        futures = [batcher.submit(request_images, texts, TEMPLATE) for request_images, texts in requests]
        if cancel_first:
            for future in futures[0]:
                future.cancel()
            futures = futures[1:]
        results = [await asyncio.gather(*request, return_exceptions=True) for request in futures]
        await asyncio.wait_for(batcher.drain(), 600)
        return results, batcher.metrics

    return asyncio.run(asyncio.wait_for(main(), 600))


def batches(metrics) -> tuple[float, float]:
    """(number of batches, pairs in them) the batcher ran."""
    registry = metrics.registry
    return registry.get_sample_value("clip_flant5_batch_size_count"), registry.get_sample_value(
        "clip_flant5_batch_size_sum"
    )


def test_concurrent_requests_share_one_batch(tiny, images):
    scorer = VQAScore(model=tiny[0], processor=tiny[1])
    first, second = pairs(images, 3), pairs(images[1:], 5)
    # A long max_wait: the batch leaves when full, i.e. with both requests' pairs.
    results, metrics = run_batcher([Replica(scorer, "cpu")], 8, 600, [first, second])
    assert batches(metrics) == (1, 8)
    assert results[0] == pytest.approx(scorer(*first).tolist(), rel=1e-5)
    assert results[1] == pytest.approx(scorer(*second).tolist(), rel=1e-5)


def test_a_large_request_is_split_into_batches(tiny, images):
    scorer = VQAScore(model=tiny[0], processor=tiny[1])
    request = pairs(images, 20)
    results, metrics = run_batcher([Replica(scorer, "cpu")], 8, 0.01, [request])
    assert batches(metrics) == (3, 20)
    assert results[0] == pytest.approx(scorer(*request).tolist(), rel=1e-5)


def test_batches_go_to_every_replica(tiny, images):
    replicas = [Replica(VQAScore(model=tiny[0], processor=tiny[1]), name) for name in ("first", "second")]
    request = pairs(images, 16)
    results, _ = run_batcher(replicas, 4, 0, [request])
    assert all(replica.scored_items > 0 for replica in replicas)
    assert sum(replica.scored_items for replica in replicas) == 16
    assert results[0] == pytest.approx(replicas[0].scorer(*request).tolist(), rel=1e-5)


def test_an_out_of_memory_batch_is_split_and_retried(tiny, images):
    scorer = FullMemory(model=tiny[0], processor=tiny[1])
    request = pairs(images, 8)
    results, metrics = run_batcher([Replica(scorer, "cpu")], 8, 600, [request])
    # 8 -> 4 + 4 -> four batches of 2.
    assert metrics.registry.get_sample_value("clip_flant5_oom_splits_total") == 3
    assert results[0] == pytest.approx(VQAScore(model=tiny[0], processor=tiny[1])(*request).tolist(), rel=1e-5)


def test_a_pair_that_does_not_fit_alone_fails_alone(tiny, images):
    scorer = FullMemory(model=tiny[0], processor=tiny[1])
    scorer.fits = 0
    results, _ = run_batcher([Replica(scorer, "cpu")], 4, 0, [pairs(images, 2)])
    assert all(isinstance(result, PairError) and "out of memory" in str(result) for result in results[0])


def test_one_bad_pair_fails_only_itself(tiny, images):
    scorer = FailsOnPoison(model=tiny[0], processor=tiny[1])
    strip = Image.new("RGB", (60000, 1))  # pads to a 60000 x 60000 square: over the pixel limit
    good = pairs(images, 3)
    bad = ([images[0], strip, images[1]], ["a cat", "a strip", "poison"])
    results, _ = run_batcher([Replica(scorer, "cpu")], 6, 600, [good, bad])
    reference = VQAScore(model=tiny[0], processor=tiny[1])
    assert results[0] == pytest.approx(reference(*good).tolist(), rel=1e-5)
    assert results[1][0] == pytest.approx(reference([images[0]], ["a cat"]).item(), rel=1e-5)
    assert isinstance(results[1][1], PairError) and "cannot be scored" in str(results[1][1])
    assert isinstance(results[1][2], PairError) and "internal error" in str(results[1][2])


def test_dropped_requests_are_skipped(tiny, images):
    scorer = VQAScore(model=tiny[0], processor=tiny[1])
    kept = pairs(images, 3)
    results, metrics = run_batcher([Replica(scorer, "cpu")], 8, 0.05, [pairs(images, 4), kept], cancel_first=True)
    assert batches(metrics) == (1, 3)
    assert results[0] == pytest.approx(scorer(*kept).tolist(), rel=1e-5)


def test_out_of_memory_errors_are_recognised():
    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory"))
    assert is_out_of_memory(RuntimeError("[enforce fail at alloc_cpu.cpp] DefaultCPUAllocator: can't allocate memory"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
