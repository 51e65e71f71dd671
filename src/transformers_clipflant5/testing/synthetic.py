# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""A seeded synthetic dataset of coloured shapes in the LLaVA layout, and the held-out VQAScore check of the demo.

Each image shows one shape (`COLORS` x `SHAPES`) at one of `POSITIONS` on a noisy grey background. Each training image
gets a multi-turn conversation (a caption, VQAScore-style yes/no questions with matching and mismatched captions,
and questions about its colour, shape and position) like the LLaVA-1.5 mix, so it goes through the same flattening
as the real data; a few text-only conversations are mixed in. The held-out set holds new images, each with its
matching caption and a caption that differs in one attribute: a model that learned to look at the image scores the
first higher, which the ROC-AUC of [`evaluate_discrimination`] measures (0.5 = chance, 1 = perfect).
"""

import json
import os
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from ..scoring.prompts import DEFAULT_QUESTION_TEMPLATE
from .tiny import COLORS, POSITIONS, SHAPES


RGB = {
    "red": (220, 30, 30),
    "green": (30, 170, 40),
    "blue": (30, 60, 220),
    "yellow": (235, 220, 30),
    "purple": (140, 40, 170),
    "orange": (245, 140, 20),
    "white": (250, 250, 250),
    "black": (10, 10, 10),
}
CENTERS = {"left": (0.25, 0.5), "right": (0.75, 0.5), "top": (0.5, 0.25), "bottom": (0.5, 0.75)}


def caption(color: str, shape: str, position: str) -> str:
    return f"a {color} {shape} on the {position}"


def render(color: str, shape: str, position: str, size: int = 64, rng: random.Random | None = None) -> Image.Image:
    """One shape on a noisy grey background; `rng` jitters its size and place."""
    rng = rng or random.Random(0)
    noise = np.random.default_rng(rng.getrandbits(32)).integers(-12, 13, (size, size, 3))
    background = np.clip(128 + noise, 0, 255).astype(np.uint8)
    image = Image.fromarray(background)
    draw = ImageDraw.Draw(image)
    cx, cy = CENTERS[position]
    cx = (cx + rng.uniform(-0.02, 0.02)) * size
    cy = (cy + rng.uniform(-0.02, 0.02)) * size
    r = rng.uniform(0.19, 0.23) * size
    fill = RGB[color]
    if shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif shape == "square":
        s = r * 0.85
        draw.rectangle([cx - s, cy - s, cx + s, cy + s], fill=fill)
    elif shape == "triangle":
        draw.polygon([(cx, cy - r), (cx - r, cy + r * 0.8), (cx + r, cy + r * 0.8)], fill=fill)
    elif shape == "cross":
        w = r * 0.35
        draw.rectangle([cx - r, cy - w, cx + r, cy + w], fill=fill)
        draw.rectangle([cx - w, cy - r, cx + w, cy + r], fill=fill)
    else:
        raise ValueError(f"Unknown shape {shape!r}.")
    return image


def _other_scene(attributes: tuple[str, str, str], rng: random.Random) -> tuple[str, str, str]:
    """A random scene description different from `attributes` (in one, two or all three attributes)."""
    while True:
        other = (rng.choice(COLORS), rng.choice(SHAPES), rng.choice(POSITIONS))
        if other != attributes:
            return other


def _mismatch(attributes: tuple[str, str, str], rng: random.Random, which: int | None = None) -> tuple[str, str, str]:
    """The same attributes with colour (0), shape (1) or position (2) changed: `which`, or one at random."""
    color, shape, position = attributes
    which = rng.randrange(3) if which is None else which
    if which == 0:
        color = rng.choice([c for c in COLORS if c != color])
    elif which == 1:
        shape = rng.choice([s for s in SHAPES if s != shape])
    else:
        position = rng.choice([p for p in POSITIONS if p != position])
    return color, shape, position


def _single(attributes: tuple[str, str, str], named: int) -> str:
    """A description naming one attribute: colour (0), shape (1) or position (2)."""
    color, shape, position = attributes
    return (f"a {color} shape", f"a {shape}", f"a shape on the {position}")[named]


def _conversation(attributes: tuple[str, str, str], rng: random.Random) -> list[dict[str, str]]:
    """
    Questions about one image: a caption, one what/where question, and balanced VQAScore-style yes/no questions about
    the full caption (the "no" one describes another scene), its colour, and its shape or position (the "no" ones
    change the attribute they name). Half the rows are about colour, which a tiny model learns to compare first.
    """
    color, shape, position = attributes
    named = rng.choice((1, 2))
    pairs = [
        ("Describe the image.", caption(*attributes) + "."),
        rng.choice(
            (("What color is the shape?", color), ("What shape is it?", shape), ("Where is the shape?", position))
        ),
        (DEFAULT_QUESTION_TEMPLATE.format(caption(*attributes)), "Yes"),
        (DEFAULT_QUESTION_TEMPLATE.format(caption(*_other_scene(attributes, rng))), "No"),
        (DEFAULT_QUESTION_TEMPLATE.format(_single(attributes, 0)), "Yes"),
        (DEFAULT_QUESTION_TEMPLATE.format(_single(_mismatch(attributes, rng, 0), 0)), "No"),
        (DEFAULT_QUESTION_TEMPLATE.format(_single(attributes, named)), "Yes"),
        (DEFAULT_QUESTION_TEMPLATE.format(_single(_mismatch(attributes, rng, named), named)), "No"),
    ]
    rng.shuffle(pairs)
    messages = []
    for index, (question, answer) in enumerate(pairs):
        messages.append({"from": "human", "value": ("<image>\n" + question) if index == 0 else question})
        messages.append({"from": "gpt", "value": answer})
    return messages


def _text_only_conversation(rng: random.Random) -> list[dict[str, str]]:
    word = rng.choice(COLORS + SHAPES)
    kind = rng.choice(("color", "shape"))
    truth = (word in COLORS) == (kind == "color")
    return [
        {"from": "human", "value": f"Is {word} a {kind}?"},
        {"from": "gpt", "value": "Yes" if truth else "No"},
    ]


def write_synthetic_dataset(
    folder: str | os.PathLike,
    num_train_images: int = 512,
    num_eval_images: int = 64,
    num_text_only: int = 64,
    image_size: int = 64,
    seed: int = 0,
    captions_only: bool = False,
) -> dict[str, Path]:
    """
    Write `images/*.png`, `train.json` (LLaVA layout, multi-turn, to be flattened) and `eval.json` (held-out images,
    each with a matching and a mismatched caption) under `folder`. The same seed writes the same files.

    `captions_only` writes stage-1 data instead, laid out like LLaVA-Pretrain: one `<image>` prompt and its caption
    per image, no text-only rows.
    """
    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    train = []
    for index in range(num_train_images):
        attributes = (rng.choice(COLORS), rng.choice(SHAPES), rng.choice(POSITIONS))
        name = f"images/train_{index:05d}.png"
        render(*attributes, size=image_size, rng=rng).save(folder / name)
        if captions_only:
            conversations = [
                {"from": "human", "value": "<image>\n" + rng.choice(("Describe the image.", "What is in the image?"))},
                {"from": "gpt", "value": caption(*attributes) + "."},
            ]
        else:
            conversations = _conversation(attributes, rng)
        train.append({"id": f"train-{index}", "image": name, "conversations": conversations})
    for index in range(0 if captions_only else num_text_only):
        train.append({"id": f"text-{index}", "conversations": _text_only_conversation(rng)})
    rng.shuffle(train)

    # Held-out images come from a separate stream, so they are new renders (other jitter and noise).
    eval_rng = random.Random(f"eval-{seed}")
    evaluation = []
    for index in range(num_eval_images):
        attributes = (eval_rng.choice(COLORS), eval_rng.choice(SHAPES), eval_rng.choice(POSITIONS))
        name = f"images/eval_{index:05d}.png"
        render(*attributes, size=image_size, rng=eval_rng).save(folder / name)
        evaluation.append({"image": name, "text": caption(*attributes), "match": True})
        evaluation.append({"image": name, "text": caption(*_other_scene(attributes, eval_rng)), "match": False})

    paths = {"train": folder / "train.json", "eval": folder / "eval.json", "image_folder": folder}
    paths["train"].write_text(json.dumps(train, indent=1), encoding="utf-8")
    paths["eval"].write_text(json.dumps(evaluation, indent=1), encoding="utf-8")
    return paths


def roc_auc(positive: Sequence[float], negative: Sequence[float]) -> float:
    """Probability that a random positive scores above a random negative (ties count half): the ROC-AUC."""
    positive = np.asarray(positive, dtype=np.float64)[:, None]
    negative = np.asarray(negative, dtype=np.float64)[None, :]
    return float((positive > negative).mean() + 0.5 * (positive == negative).mean())


def evaluate_discrimination(
    scorer, eval_path: str | os.PathLike, image_folder: str | os.PathLike, progress: bool = False
) -> dict[str, Any]:
    """
    ROC-AUC of VQAScore for matching vs. mismatched captions on the held-out images of `eval.json`, the mean score of
    each group, and the scores themselves (`scores_match`, `scores_mismatch`, e.g. for a ROC curve). `scorer` is a
    [`VQAScore`] (e.g. `VQAScore.from_pretrained(output_dir)`, or `VQAScore(model, processor)` for a model in
    memory); `progress` shows a progress bar.
    """
    rows = json.loads(Path(eval_path).read_text(encoding="utf-8"))
    images, texts = [Path(image_folder) / row["image"] for row in rows], [row["text"] for row in rows]
    scores = scorer(images, texts, progress=progress).tolist()
    positive = [score for score, row in zip(scores, rows) if row["match"]]
    negative = [score for score, row in zip(scores, rows) if not row["match"]]
    return {
        "roc_auc": roc_auc(positive, negative),
        "mean_score_match": float(np.mean(positive)),
        "mean_score_mismatch": float(np.mean(negative)),
        "pairs": len(positive),
        "scores_match": positive,
        "scores_mismatch": negative,
    }


__all__ = ["caption", "evaluate_discrimination", "render", "roc_auc", "write_synthetic_dataset"]
