"""Synthetic videos written with PyAV, and the `concat` strip rebuilt independently of the library's."""

from pathlib import Path

import numpy as np


# Lossless (frames decode to exactly what was written): FFV1 in Matroska, in an RGB pixel format.
LOSSLESS = ("ffv1", "bgr0")
# Lossy, the common case: H.264 in 4:2:0.
LOSSY = ("libx264", "yuv420p")


def random_frames(count: int, height: int = 24, width: int = 40, seed: int = 0) -> np.ndarray:
    """`(count, height, width, 3)` uint8 frames, each different."""
    return np.random.default_rng(seed).integers(0, 256, (count, height, width, 3), dtype=np.uint8)


def write_video(path: Path, frames: np.ndarray, codec: tuple[str, str] = LOSSLESS, rate: int = 25, **options) -> Path:
    """Write `(T, H, W, 3)` uint8 frames with PyAV (`codec`: (encoder, pixel format)); `options` go to the encoder."""
    import av

    encoder, pixel_format = codec
    with av.open(str(path), "w") as container:
        stream = container.add_stream(encoder, rate=rate)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], pixel_format
        if options:
            stream.options = {name: str(value) for name, value in options.items()}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        container.mux(stream.encode())
    return path


def reference_strip(frames: list[np.ndarray], gap: int = 10) -> np.ndarray:
    """The original's concat image, rebuilt with numpy: frames left to right, `gap` black columns between them, on a
    black canvas as tall as the tallest frame, each frame at the top."""
    height = max(frame.shape[0] for frame in frames)
    width = sum(frame.shape[1] for frame in frames) + gap * (len(frames) - 1)
    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    left = 0
    for frame in frames:
        canvas[: frame.shape[0], left : left + frame.shape[1]] = frame
        left += frame.shape[1] + gap
    return canvas


def reference_indices(total: int, count: int) -> list[int]:
    """Uniform sampling written out another way: frame k * floor(total / count), or every frame of a shorter video."""
    if total < count:
        return list(range(total))
    return [k * int(np.floor(total / count)) for k in range(count)]
