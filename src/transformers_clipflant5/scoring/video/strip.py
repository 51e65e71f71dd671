# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""The image `concat` mode scores: a video's sampled frames side by side, left to right in time order, separated by
10-pixel black gaps, on a black canvas as tall as the tallest frame (each frame at the top), as the original package
built it for CLIP-FlanT5 (it then wrote it as a JPEG and read it back; here it stays in memory, lossless)."""

from collections.abc import Sequence

from PIL import Image


STRIP_GAP = 10


def strip_size(sizes: Sequence[tuple[int, int]], gap: int = STRIP_GAP) -> tuple[int, int]:
    """`(width, height)` of the strip of frames of these `(width, height)` sizes."""
    return sum(width for width, _ in sizes) + gap * (len(sizes) - 1), max(height for _, height in sizes)


def build_strip(frames: Sequence[Image.Image], gap: int = STRIP_GAP) -> Image.Image:
    """The frames (RGB PIL images) side by side with `gap` black pixels between them."""
    if not frames:
        raise ValueError("A strip needs at least one frame.")
    strip = Image.new("RGB", strip_size([frame.size for frame in frames], gap))
    left = 0
    for frame in frames:
        strip.paste(frame.convert("RGB"), (left, 0))
        left += frame.width + gap
    return strip


def check_strip_pixels(size: tuple[int, int], image_processor) -> None:
    """Refuse a strip the image processor would blow up past its `max_image_pixels` (padded to a square with
    `do_pad`, else resized to its shortest edge), before it is built, with what to do instead."""
    limit = image_processor.max_image_pixels
    if limit is None:
        return
    width, height = size
    short, long = sorted(size)
    if image_processor.do_pad:
        working = long * long
    elif image_processor.do_resize and image_processor.size.shortest_edge:
        edge = image_processor.size.shortest_edge
        working = edge * round(long * edge / short)
    else:
        working = width * height
    if working > limit:
        raise ValueError(
            f"Its concat strip would be {width}x{height} pixels, {working} once the image processor pads or resizes "
            f"it, more than the limit of {limit} (max_image_pixels). Use mode='average', fewer frames, or raise "
            "max_image_pixels if the memory is there."
        )


__all__ = ["STRIP_GAP", "build_strip", "check_strip_pixels", "strip_size"]
