# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""Pictures of a training run for its folder and model card: the training loss curve (from the trainer's
`log_history`) and ROC curves of matching vs. mismatched captions. They need matplotlib (the `train` extra)."""

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np


def _figure(width: float = 5.0, height: float = 3.6):
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError(
            "Drawing the training pictures needs matplotlib: pip install 'transformers-clipflant5[train]' "
            "(or pip install matplotlib)."
        ) from None
    # A bare Figure renders with the Agg canvas on savefig: no pyplot, no global backend state, no display needed.
    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def roc_curve(positive: Sequence[float], negative: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """
    `(false_positive_rate, true_positive_rate)` of the ROC curve, from (0, 0) to (1, 1), one point per distinct score
    (tied scores move both rates at once, so the area under it is the ROC-AUC with ties counted half).
    """
    positive = np.asarray(positive, dtype=np.float64)
    negative = np.asarray(negative, dtype=np.float64)
    if positive.size == 0 or negative.size == 0:
        raise ValueError("A ROC curve needs at least one matching and one mismatched score.")
    thresholds = np.unique(np.concatenate([positive, negative]))[::-1]
    # Rates of the scores >= each threshold, from the highest threshold down.
    tpr = (positive[None, :] >= thresholds[:, None]).mean(axis=1)
    fpr = (negative[None, :] >= thresholds[:, None]).mean(axis=1)
    return np.concatenate([[0.0], fpr]), np.concatenate([[0.0], tpr])


def curve_area(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """The area under a ROC curve (trapezoids, as `numpy.trapezoid`, which older numpy lacks)."""
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def plot_loss_curve(
    log_history: Sequence[Mapping[str, Any]], path: str | os.PathLike, title: str = "Training loss"
) -> Path:
    """Draw the logged training loss against the optimizer step (`trainer.state.log_history`) into the PNG `path`."""
    points = [(entry["step"], entry["loss"]) for entry in log_history if "loss" in entry and "step" in entry]
    if not points:
        raise ValueError("The log history holds no training loss: train with logging_steps below the step count.")
    steps, losses = zip(*points)
    figure = _figure()
    axes = figure.add_subplot()
    axes.plot(steps, losses, marker="o", markersize=3, linewidth=1.5)
    axes.set(xlabel="optimizer step", ylabel="loss (token cross-entropy)", title=title)
    axes.grid(alpha=0.3)
    return _save(figure, path)


def plot_roc_curves(
    curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    path: str | os.PathLike,
    title: str = "Held-out ROC curve",
) -> Path:
    """
    Draw one ROC curve per entry of `curves` (label -> `(matching scores, mismatched scores)`), its ROC-AUC in the
    legend, and the chance diagonal, into the PNG `path`.
    """
    figure = _figure(4.2, 4.2)
    axes = figure.add_subplot()
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="chance (AUC 0.5)")
    for label, (positive, negative) in curves.items():
        fpr, tpr = roc_curve(positive, negative)
        axes.plot(fpr, tpr, linewidth=2, label=f"{label} (AUC {curve_area(fpr, tpr):.3f})")
    axes.set(
        xlabel="false positive rate (mismatched captions)",
        ylabel="true positive rate (matching captions)",
        title=title,
        xlim=(0, 1),
        ylim=(0, 1.01),
        aspect="equal",
    )
    axes.legend(loc="lower right", fontsize="small")
    axes.grid(alpha=0.3)
    return _save(figure, path)


def _save(figure, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return path


__all__ = ["curve_area", "plot_loss_curve", "plot_roc_curves", "roc_curve"]
