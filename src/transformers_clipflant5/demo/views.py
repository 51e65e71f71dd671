# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""What the web demo shows of an [`Explanation`]: coloured words, the heatmap as two overlay masks, the trace as a
table. Plain numpy and PIL, so that it can be tested without a browser."""

import math

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

from ..scoring.explain import Explanation


# Shown images are at most this many pixels on their longer side (the masks are sent to the browser as PNGs).
DISPLAY_SIDE = 768
RAISES, LOWERS = "raises the score", "lowers the score"
# Red marks what lowers the score (what the model finds missing or wrong), blue what raises it, in words and regions.
HEATMAP_COLOURS = {RAISES: "#2166ac", LOWERS: "#d6604d"}
# Word classes, by the sign of the attribution and its size relative to the largest magnitude in the text.
WORD_COLOURS = {
    "lowers it a lot": "#d6604d",
    "lowers it": "#fddbc7",
    "raises it": "#d1e5f0",
    "raises it a lot": "#2166ac",
}


def word_highlights(explanation: Explanation) -> list[tuple[str, str | None]]:
    """`(word, class)` for `gr.HighlightedText` with `WORD_COLOURS`: whether leaving the word out raises the score (the
    word lowers it) or lowers it, "a lot" when by at least half the largest magnitude in the text; None (uncoloured)
    for a value of 0 or NaN. The values themselves are in the explanation's JSON."""
    values = [value for _, value in explanation.word_attributions if not math.isnan(value)]
    largest = max((abs(value) for value in values), default=0.0)
    highlights = []
    for word, value in explanation.word_attributions:
        if math.isnan(value) or value == 0:
            highlights.append((word, None))
            continue
        direction = "raises it" if value > 0 else "lowers it"
        highlights.append((word, direction + (" a lot" if abs(value) >= largest / 2 else "")))
    return highlights


def heatmap_overlay(
    image: Image.Image, heatmap: np.ndarray, method: str | None
) -> tuple[Image.Image, list[tuple[np.ndarray, str]]]:
    """`(image, masks)` for `gr.AnnotatedImage`, at most `DISPLAY_SIDE` pixels on a side: one mask where the region
    raises the score, one where it lowers it, each in [0, 1] relative to the largest magnitude. A gradient map is
    blurred first (single-pixel gradients are too fine to see); an occlusion map is shown as computed."""
    scale = min(1.0, DISPLAY_SIDE / max(image.size))
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    shown = image.resize(size, Image.Resampling.BICUBIC) if scale < 1 else image
    values = heatmap.astype(np.float32)
    if method == "gradient":
        values = gaussian_filter(values, sigma=max(image.size) / 64)
    if scale < 1:
        # Nearest: occlusion cells keep their edges; the blurred gradient has none to lose.
        values = np.asarray(Image.fromarray(values, mode="F").resize(size, Image.Resampling.NEAREST))
    largest = float(np.abs(values).max())
    if largest == 0:
        return shown, []
    return shown, [(np.clip(values, 0, None) / largest, RAISES), (np.clip(-values, 0, None) / largest, LOWERS)]


def trace_rows(explanation: Explanation) -> list[list]:
    """One row per answer token: position, expected token, its probability, the top alternatives."""
    return [
        [
            position,
            token.token,
            round(token.probability, 6),
            ", ".join(f"{name} ({probability:.4f})" for name, probability in token.alternatives),
        ]
        for position, token in enumerate(explanation.answer_tokens)
    ]


def part_rows(explanation: Explanation) -> list[list]:
    """One row per sub-question and sub-caption: kind, text, score."""
    return [["question", text, score] for text, score in explanation.sub_questions] + [
        ["caption", text, score] for text, score in explanation.sub_captions
    ]


def explanation_json(explanation: Explanation) -> dict:
    """Everything but the heatmap, as JSON for the API (the heatmap is the overlay)."""
    return {
        "text": explanation.text,
        "score": explanation.score,
        "answer_tokens": [
            {
                "token": token.token,
                "token_id": token.token_id,
                "probability": token.probability,
                "alternatives": [list(pair) for pair in token.alternatives],
            }
            for token in explanation.answer_tokens
        ],
        "word_attributions": [
            [word, None if math.isnan(value) else value] for word, value in explanation.word_attributions
        ],
        "heatmap_method": explanation.heatmap_method,
        "sub_questions": [list(pair) for pair in explanation.sub_questions],
        "sub_captions": [list(pair) for pair in explanation.sub_captions],
    }
