# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""Dynamic batching: the pairs of concurrent requests, merged into model batches and spread over the replicas.

Each request hands its pairs to [`Batcher.submit`] and awaits one future per pair. A dispatcher task takes the
least-loaded free replica, then the queued pairs: at once when `max_batch_size` of them wait, else once the oldest
has waited `max_wait` (pairs that queued while every replica was busy go at once). A request larger than a batch is
thereby split across batches, and replicas. On the replica's thread the batch is scored through `VQAScore.iter_scores`
(one call per question template), an unreadable image failing its own pair only. A batch that runs out of memory is
split in two and retried, down to single pairs; any other error is isolated the same way, so that one request's bad
pair never fails another's. A request whose client has gone away leaves cancelled futures, which are skipped.
"""

import asyncio
import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from PIL import Image

from .metrics import ServerMetrics
from .replicas import Replica


logger = logging.getLogger(__name__)


@dataclass
class Pair:
    """One (image, text) to score with `question_template`, and the future its request awaits."""

    image: Image.Image
    text: str
    question_template: str
    future: asyncio.Future
    queued_at: float = field(default_factory=time.monotonic)


class PairError(Exception):
    """Why one pair could not be scored (set on its future); the message is safe to show the client."""


def is_out_of_memory(error: BaseException) -> bool:
    """Whether `error` is an allocation failure: a CUDA (or other accelerator) OOM, or the CPU allocator's."""
    if isinstance(error, torch.OutOfMemoryError | MemoryError):
        return True
    return isinstance(error, RuntimeError) and (
        "out of memory" in str(error).lower() or "can't allocate memory" in str(error).lower()
    )


def score_pairs(scorer, pairs: Sequence[Pair], metrics: ServerMetrics | None = None) -> list[float | PairError]:
    """Scores of `pairs` with `scorer` (a `VQAScore`), a [`PairError`] in place of each pair that cannot be scored.
    Runs on the replica's thread."""
    try:
        return _score_once(scorer, pairs)
    except Exception as error:
        out_of_memory = is_out_of_memory(error)
        if out_of_memory and torch.cuda.is_available():
            torch.cuda.empty_cache()
        if len(pairs) == 1:
            if out_of_memory:
                logger.error("one pair does not fit in memory on its own: %s", error)
                return [PairError("the server ran out of memory scoring this pair alone")]
            logger.exception("scoring failed for one pair (text %r)", pairs[0].text[:80])
            return [PairError(f"internal error scoring this pair ({type(error).__name__}; see the server log)")]
        if out_of_memory:
            if metrics is not None:
                metrics.oom_splits.inc()
            logger.warning("a batch of %d pairs ran out of memory; scoring it in two halves", len(pairs))
        else:
            logger.exception(
                "a batch of %d pairs failed; scoring it in two halves to find the pair at fault", len(pairs)
            )
        middle = len(pairs) // 2
        return score_pairs(scorer, pairs[:middle], metrics) + score_pairs(scorer, pairs[middle:], metrics)


def _score_once(scorer, pairs: Sequence[Pair]) -> list[float | PairError]:
    results: list[float | PairError | None] = [None] * len(pairs)
    by_template: dict[str, list[int]] = {}
    for position, pair in enumerate(pairs):
        by_template.setdefault(pair.question_template, []).append(position)
    for template, positions in by_template.items():

        def image_error(row: int, error: Exception, positions=positions) -> None:
            results[positions[row]] = PairError(f"the image cannot be scored: {error}")

        for rows, scores in scorer.iter_scores(
            [pairs[position].image for position in positions],
            [pairs[position].text for position in positions],
            batch_size=len(positions),
            question_template=template,
            on_image_error=image_error,
        ):
            for row, score in zip(rows, scores.tolist()):
                results[positions[row]] = score
    missing = [position for position, result in enumerate(results) if result is None]
    if missing:
        raise RuntimeError(f"the scorer returned no score for {len(missing)} of {len(pairs)} pairs")
    return results


class Batcher:
    """Merges the pairs of concurrent requests into batches for `replicas` (see the module docstring). Start it with
    [`start`] inside the event loop; [`drain`] waits for the queued and running batches, then stops it."""

    def __init__(
        self, replicas: list[Replica], max_batch_size: int, max_wait: float, metrics: ServerMetrics | None = None
    ):
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, got {max_batch_size}.")
        if max_wait < 0:
            raise ValueError(f"max_wait must be 0 or more seconds, got {max_wait}.")
        self.replicas = replicas
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait
        self.metrics = metrics or ServerMetrics()
        self._queue: deque[Pair] = deque()
        self._queued = asyncio.Event()
        self._replica_freed = asyncio.Event()
        self._running: set[asyncio.Task] = set()
        self._dispatcher: asyncio.Task | None = None

    def start(self) -> None:
        self._dispatcher = asyncio.get_running_loop().create_task(self._dispatch(), name="clip-flant5-batcher")

    def submit(
        self, images: Sequence[Image.Image], texts: Sequence[str], question_template: str
    ) -> list[asyncio.Future]:
        """Queue the pairs `(images[i], texts[i])`: one future each, giving its score (a float) or raising
        [`PairError`]. Cancel a future to drop its pair (a client that went away)."""
        if self._dispatcher is None or self._dispatcher.done():
            raise RuntimeError("the batcher is not running")
        loop = asyncio.get_running_loop()
        futures = []
        for image, text in zip(images, texts):
            future = loop.create_future()
            self._queue.append(Pair(image, text, question_template, future))
            futures.append(future)
        self.metrics.queued.set(len(self._queue))
        self._queued.set()
        return futures

    async def drain(self) -> None:
        """Wait until every queued pair is scored, then stop the dispatcher and the replicas' threads."""
        while self._queue or self._running:
            await asyncio.sleep(0.01)
        if self._dispatcher is not None:
            self._dispatcher.cancel()
            try:
                await self._dispatcher
            except asyncio.CancelledError:
                pass
        for replica in self.replicas:
            replica.close()

    async def _free_replica(self) -> Replica:
        """The free replica with the least work done so far (ties: the first), waiting for one when all are busy."""
        while True:
            free = [replica for replica in self.replicas if replica.busy_batches == 0]
            if free:
                return min(free, key=lambda replica: replica.scored_items)
            self._replica_freed.clear()
            await self._replica_freed.wait()

    async def _next_batch(self) -> list[Pair]:
        """Up to `max_batch_size` live pairs: as soon as that many wait, or once the oldest has waited `max_wait`."""
        loop = asyncio.get_running_loop()
        while True:
            while not self._queue:
                self._queued.clear()
                await self._queued.wait()
            # Waiting for company is worth it only until the oldest pair has waited max_wait.
            deadline = loop.time() + max(0.0, self.max_wait - (time.monotonic() - self._queue[0].queued_at))
            while len(self._queue) < self.max_batch_size:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                self._queued.clear()
                try:
                    await asyncio.wait_for(self._queued.wait(), remaining)
                except TimeoutError:
                    break
            batch = []
            while self._queue and len(batch) < self.max_batch_size:
                pair = self._queue.popleft()
                if not pair.future.done():  # cancelled: its client went away
                    batch.append(pair)
            self.metrics.queued.set(len(self._queue))
            if batch:
                return batch

    async def _dispatch(self) -> None:
        while True:
            replica = await self._free_replica()
            batch = await self._next_batch()
            replica.busy_batches += 1
            replica.busy_items += len(batch)
            task = asyncio.get_running_loop().create_task(self._run(replica, batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _run(self, replica: Replica, batch: list[Pair]) -> None:
        loop = asyncio.get_running_loop()
        self.metrics.batch_size.observe(len(batch))
        started = time.monotonic()
        try:
            results = await loop.run_in_executor(replica.executor, score_pairs, replica.scorer, batch, self.metrics)
        except Exception as error:  # score_pairs isolates errors; this is a bug, reported to the batch's requests
            logger.exception("a batch of %d pairs failed on %s", len(batch), replica.device)
            results = [PairError(f"internal error ({type(error).__name__}; see the server log)")] * len(batch)
        finally:
            self.metrics.batch_seconds.labels(replica.device).observe(time.monotonic() - started)
            replica.busy_batches -= 1
            replica.busy_items -= len(batch)
            replica.scored_items += len(batch)
            self._replica_freed.set()
        for pair, result in zip(batch, results):
            if pair.future.done():
                continue
            if isinstance(result, PairError):
                pair.future.set_exception(result)
            else:
                pair.future.set_result(result)


__all__ = ["Batcher", "Pair", "PairError", "is_out_of_memory", "score_pairs"]
