"""The web demo served on a free localhost port, in the test's process, around a tiny scorer."""

import socket
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from PIL import Image


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def running_demo(scorer) -> Iterator[str]:
    """Serve the demo of `scorer` on 127.0.0.1 until the block ends; yields its URL."""
    from transformers_clipflant5.demo.app import launch_demo

    demo = launch_demo(scorer, host="127.0.0.1", port=free_port(), block=False)
    try:
        yield demo.local_url
    finally:
        demo.close()


def write_images(folder, count: int, size: tuple[int, int] = (30, 50)) -> list:
    """`count` random PNG images (each different) in `folder`, named image-0.png, image-1.png, ..."""
    paths = []
    for index in range(count):
        pixels = np.random.default_rng(index).integers(0, 256, (*size, 3), dtype=np.uint8)
        path = folder / f"image-{index}.png"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


def write_bad_image(folder):
    """A file named like an image that holds text."""
    path = folder / "not-an-image.png"
    path.write_text("this is not an image\n")
    return path
