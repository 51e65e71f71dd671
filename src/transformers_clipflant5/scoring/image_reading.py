# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""Reading and preprocessing a scoring call's images on a pool of CPU threads.

On a GPU, reading an image (decode, pad, resize, normalize) costs about as much CPU time as the model spends scoring
a pair, so images read one after the other before the model starts leave the GPU idle. PIL decodes and resizes
without holding the GIL, so threads read images in parallel, and `VQAScore` hands the next chunk of images to the
pool before it scores the current one where the model runs on an accelerator (on CPU the threads would take cores
from the model). Each image goes through the image processor alone: the pixels are those of processing the images
as one list (the processor transforms images one by one).
"""

import os
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import torch

from ..image_processing_clip_flant5 import ImageInput, load_image


# Enough to keep ahead of a GPU (about 4 images per GPU-second of work each); more would only contend for the GIL.
MAX_READING_THREADS = 8


def reading_threads() -> int:
    """Threads for reading images: the CPUs this process may run on, at most `MAX_READING_THREADS`."""
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(MAX_READING_THREADS, available))


class ImageReader:
    """Pixel values of images, read on a thread pool: `read(images)` returns one future per image, which gives the
    `(1, 3, H, W)` pixel values or raises what reading or preprocessing that image raised. Use as a context manager:
    leaving it drops the images not yet started."""

    def __init__(self, image_processor, threads: int | None = None):
        self.image_processor = image_processor
        self.pool = ThreadPoolExecutor(threads or reading_threads(), thread_name_prefix="clip-flant5-images")

    def read(self, images: Sequence[ImageInput]) -> list[Future]:
        return [self.pool.submit(self._pixel_values, image) for image in images]

    def read_chunks(
        self, images: Sequence[ImageInput], chunks: Sequence[Sequence[int]], read_ahead: bool
    ) -> Iterator[list[Future]]:
        """`read` of each chunk of `images` (`chunks`: lists of positions in `images`) in turn. With `read_ahead`, the
        next chunk is queued (behind this one's images) as this one is handed out, so that it is read while the
        caller works on this one; without, once the caller asks for it."""

        def read(number: int) -> list[Future]:
            return self.read([images[position] for position in chunks[number]])

        pending = read(0) if chunks else []
        for number in range(len(chunks)):
            current, has_next = pending, number + 1 < len(chunks)
            if read_ahead and has_next:
                pending = read(number + 1)
            yield current
            if not read_ahead and has_next:
                pending = read(number + 1)

    def _pixel_values(self, image: ImageInput) -> torch.Tensor:
        loaded = load_image(image, self.image_processor.max_image_pixels)
        return self.image_processor(loaded, return_tensors="pt")["pixel_values"]

    def __enter__(self) -> "ImageReader":
        return self

    def __exit__(self, *exc) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
