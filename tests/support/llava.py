"""Rows of LLaVA conversations, and a folder of their images."""

from pathlib import Path

import torch
from PIL import Image


def human(value: str) -> dict[str, str]:
    return {"from": "human", "value": value}


def gpt(value: str) -> dict[str, str]:
    return {"from": "gpt", "value": value}


def write_images(folder: Path) -> Path:
    """`img0.png` (wide), `img1.png` (tall) and `img2.png` (square), random pixels, in `folder`."""
    rng = torch.Generator().manual_seed(0)
    for index, size in enumerate([(40, 20), (30, 50), (32, 32)]):
        pixels = (torch.rand((size[1], size[0], 3), generator=rng) * 255).to(torch.uint8).numpy()
        Image.fromarray(pixels).save(folder / f"img{index}.png")
    return folder
