# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""The benchmark metrics VQAScore papers report, from scores and a benchmark file.

Three kinds of benchmark, each a JSON list or a JSONL file of objects (`id` is optional everywhere):

- `winoground` (Winoground, EqBen): two images and two captions, caption k describing image k.
  `{"id": ..., "images": [image_0, image_1], "captions": [caption_0, caption_1]}`.
  Metrics, in percent: text score (each image prefers its own caption), image score (each caption prefers its own
  image) and group score (both), with strict inequalities as in the Winoground paper.

- `pairwise` (GenAI-Arena-style human votes between two images for one prompt):
  `{"id": ..., "text": prompt, "images": [image_a, image_b], "preference": 0 | 1 | "tie"}` (0 means image_a won).
  Metrics, in percent: accuracy on the rows without a human tie (a metric tie counts as wrong), and the
  tie-calibrated accuracy over all rows (Deutsch et al., 2023: the metric calls a pair a tie when its two scores
  differ by at most epsilon; epsilon is chosen to maximise the accuracy and reported).

- `correlation` (GenAI-Bench, TIFA160, ...: a human rating per (image, text) pair):
  `{"id": ..., "image": ..., "text": ..., "human": rating or [ratings of several raters], "group": optional}`.
  Metrics: Pearson, Spearman and Kendall (tau-b) correlation between scores and the (mean) human ratings, and the
  tie-calibrated pairwise accuracy in percent over every pair of rows (only pairs within the same `group` when rows
  have one: e.g. images of the same prompt).

- `genai-bench-video` (GenAI-Bench-Video): rows `{"id": ..., "video": ..., "text": ..., "human": [ratings]}`, read
  from the release's `genai_video.json` by `genai_bench_video.read_genai_bench_video`. Metrics: those of
  `correlation`, over every video, ungrouped; scores from a `clip-flant5 score` output only.

Scores come either inside the benchmark rows (`"scores": [[s00, s01], [s10, s11]]` for winoground, with `s[i][j]` the
score of image i with caption j; `"scores": [score_a, score_b]` for pairwise; `"score": s` for correlation) or from
the JSONL output of `clip-flant5 score`, joined on the exact (image, text) strings. `benchmark_pairs` lists the pairs a
benchmark needs, to be written as the pairs file of `clip-flant5 score`.

The correlations need scipy (`pip install scipy`).
"""

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from clip_flant5_choices import EVAL_TASKS as TASKS

from ..json_rows import read_json_rows


class BenchmarkError(ValueError):
    """A benchmark or scores file that cannot be evaluated; the message names the row and the problem."""


# --------------------------------------------------------------------------------------------------------------------
# Metrics


def winoground_metrics(scores: np.ndarray | Sequence) -> dict[str, float]:
    """
    Winoground text, image and group scores in percent.

    Args:
        scores: `(n, 2, 2)` array, `scores[k, i, j]` = score of image i with caption j in example k; caption j
            describes image j.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 3 or scores.shape[1:] != (2, 2):
        raise BenchmarkError(f"Winoground scores must have shape (n, 2, 2), got {scores.shape}.")
    if len(scores) == 0:
        raise BenchmarkError("No Winoground examples to evaluate.")
    text = (scores[:, 0, 0] > scores[:, 0, 1]) & (scores[:, 1, 1] > scores[:, 1, 0])
    image = (scores[:, 0, 0] > scores[:, 1, 0]) & (scores[:, 1, 1] > scores[:, 0, 1])
    return {
        "text_score": 100.0 * text.mean(),
        "image_score": 100.0 * image.mean(),
        "group_score": 100.0 * (text & image).mean(),
        "num_examples": len(scores),
    }


def tie_calibrated_accuracy(metric_difference: np.ndarray, human_sign: np.ndarray) -> tuple[float, float]:
    """
    Pairwise accuracy with tie calibration (Deutsch et al., 2023, "Ties Matter", acc_23).

    For each compared pair, the metric's verdict is a tie when |metric_difference| <= epsilon and its sign otherwise;
    it is right when it equals `human_sign` (-1, 0 for a human tie, +1). Epsilon is chosen among 0 and the observed
    |differences| to maximise the accuracy (the smallest such epsilon on equal accuracy).

    Returns:
        (accuracy in percent, epsilon)
    """
    difference = np.asarray(metric_difference, dtype=np.float64).ravel()
    human = np.sign(np.asarray(human_sign, dtype=np.float64).ravel())
    if difference.shape != human.shape:
        raise BenchmarkError(f"{difference.size} metric differences but {human.size} human verdicts.")
    if difference.size == 0:
        raise BenchmarkError("No pairs to compare.")
    # A pair scores `untied` while epsilon is below its |difference|, `tied` from then on.
    untied = (np.sign(difference) == human) & (difference != 0)
    tied = human == 0
    gaps = np.abs(difference)
    order = np.argsort(gaps, kind="stable")
    gaps, change = gaps[order], (tied.astype(np.int64) - untied.astype(np.int64))[order]
    # Candidate epsilons are the distinct gaps; at each, every pair with gap <= epsilon is a metric tie.
    last_of_value = np.append(gaps[1:] != gaps[:-1], True)
    correct = untied.sum() + np.cumsum(change)[last_of_value]
    candidates = gaps[last_of_value]
    # Epsilon 0 is always allowed (pairs with exactly equal scores are ties); below any gap nothing is a tie, which
    # differs from epsilon 0 only when some gap is 0, and that case is the first candidate.
    if candidates[0] > 0:
        candidates = np.insert(candidates, 0, 0.0)
        correct = np.insert(correct, 0, untied.sum())
    best = int(np.argmax(correct))
    return 100.0 * float(correct[best]) / difference.size, float(candidates[best])


def pairwise_preference_metrics(
    score_a: Sequence[float], score_b: Sequence[float], preference: Sequence[int | str]
) -> dict[str, float]:
    """
    Agreement with human votes between two items.

    Args:
        score_a, score_b: the metric's scores of the two items of each row.
        preference: 0 (item a preferred), 1 (item b preferred) or `"tie"` per row.
    """
    score_a = np.asarray(score_a, dtype=np.float64)
    score_b = np.asarray(score_b, dtype=np.float64)
    human = np.array([_preference_sign(value, row) for row, value in enumerate(preference)], dtype=np.float64)
    if not (score_a.shape == score_b.shape == human.shape):
        raise BenchmarkError(f"{score_a.size} / {score_b.size} scores but {human.size} preferences.")
    difference = score_a - score_b
    decided = human != 0
    result: dict[str, float] = {
        "num_pairs": int(human.size),
        "num_human_ties": int((~decided).sum()),
    }
    if decided.any():
        result["accuracy_without_ties"] = 100.0 * float((np.sign(difference[decided]) == human[decided]).mean())
    accuracy, epsilon = tie_calibrated_accuracy(difference, human)
    result["accuracy_tie_calibrated"] = accuracy
    result["tie_epsilon"] = epsilon
    return result


def _preference_sign(value: int | str, row: int) -> int:
    # +1 when item a wins, so that the human sign compares with sign(score_a - score_b).
    if value in (0, "0", "a", "A"):
        return 1
    if value in (1, "1", "b", "B"):
        return -1
    if isinstance(value, str) and value.lower() == "tie":
        return 0
    raise BenchmarkError(f"Row {row}: preference must be 0, 1 or 'tie', got {value!r}.")


def correlation_metrics(
    scores: Sequence[float], human: Sequence[float], groups: Sequence[Any] | None = None
) -> dict[str, float]:
    """
    Correlation of scores with human ratings, and tie-calibrated pairwise accuracy over pairs of rows.

    Args:
        scores: metric score per row.
        human: human rating per row (the mean of several raters).
        groups: optional group per row; pairwise accuracy then compares only rows of the same group.
    """
    try:
        from scipy import stats
    except ImportError as error:
        raise ImportError("Correlation metrics need scipy: pip install scipy") from error

    scores = np.asarray(scores, dtype=np.float64)
    human = np.asarray(human, dtype=np.float64)
    if scores.shape != human.shape or scores.ndim != 1:
        raise BenchmarkError(f"{scores.size} scores but {human.size} human ratings.")
    if scores.size < 2:
        raise BenchmarkError("Correlations need at least two rows.")
    if np.ptp(scores) == 0 or np.ptp(human) == 0:
        raise BenchmarkError(
            "Every score (or every human rating) is the same: correlations are undefined. Check that the scores "
            "file belongs to this benchmark."
        )
    differences, signs = [], []
    group_rows: dict[Any, list[int]] = {}
    for row, group in enumerate(groups if groups is not None else [None] * scores.size):
        group_rows.setdefault(group, []).append(row)
    for rows in group_rows.values():
        first, second = np.triu_indices(len(rows), k=1)
        rows = np.asarray(rows)
        differences.append(scores[rows[first]] - scores[rows[second]])
        signs.append(np.sign(human[rows[first]] - human[rows[second]]))
    difference, sign = np.concatenate(differences), np.concatenate(signs)
    if difference.size == 0:
        raise BenchmarkError("No group holds two rows: there is no pair to compare.")
    accuracy, epsilon = tie_calibrated_accuracy(difference, sign)
    return {
        "pearson": float(stats.pearsonr(scores, human).statistic),
        "spearman": float(stats.spearmanr(scores, human).statistic),
        "kendall_tau_b": float(stats.kendalltau(scores, human, variant="b").statistic),
        "pairwise_accuracy_tie_calibrated": accuracy,
        "tie_epsilon": epsilon,
        "num_rows": int(scores.size),
        "num_pairs": int(difference.size),
    }


# --------------------------------------------------------------------------------------------------------------------
# Files


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """Objects of a JSON list file or a JSONL file (blank lines ignored)."""
    try:
        return read_json_rows(path, BenchmarkError, objects_only=True)
    except FileNotFoundError as error:
        raise BenchmarkError(str(error)) from error


def read_score_table(path: str | Path) -> dict[tuple[str, str], float]:
    """(image, text) -> score from the JSONL output of `clip-flant5 score`."""
    table: dict[tuple[str, str], float] = {}
    for index, row in enumerate(read_rows(path)):
        try:
            # A video row of `clip-flant5 score` names its video where an image row names its image.
            key, score = (row["video"] if "video" in row else row["image"], row["text"]), float(row["score"])
        except (KeyError, TypeError, ValueError) as error:
            raise BenchmarkError(f"{path} row {index} has no image (or video)/text/score ({error!r}).") from error
        if not math.isfinite(score):
            raise BenchmarkError(
                f"{path} row {index} (image {key[0]!r}, text {key[1]!r}) has the score {score}: a failed score "
                "(e.g. an fp16 overflow) would silently decide comparisons. Score that pair again."
            )
        if key in table and not math.isclose(table[key], score, rel_tol=1e-6, abs_tol=1e-9):
            raise BenchmarkError(f"{path} scores the pair {key} twice with different values ({table[key]}, {score}).")
        table[key] = score
    return table


def benchmark_pairs(task: str, rows: Iterable[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """The distinct (image, text) pairs a benchmark needs scored, in first-use order."""
    pairs: dict[tuple[str, str], None] = {}
    for index, row in enumerate(rows):
        for pair in _row_pairs(task, row, index):
            pairs.setdefault(pair, None)
    return list(pairs)


def _row_pairs(task: str, row: Mapping[str, Any], index: int) -> list[tuple[str, str]]:
    if task == "winoground":
        images, captions = _two(row, "images", index), _two(row, "captions", index)
        return [(image, caption) for image in images for caption in captions]
    if task == "pairwise":
        text = _field(row, "text", index)
        return [(image, text) for image in _two(row, "images", index)]
    if task == "correlation":
        return [(_field(row, "image", index), _field(row, "text", index))]
    if task == "genai-bench-video":
        return [(_field(row, "video", index), _field(row, "text", index))]
    raise BenchmarkError(f"Unknown task {task!r}; choose one of {TASKS}.")


def _field(row: Mapping[str, Any], name: str, index: int) -> Any:
    if name not in row:
        raise BenchmarkError(f"Row {index} (id {row.get('id')!r}) has no {name!r} field.")
    return row[name]


def _inline_scores(row: Mapping[str, Any], name: str, index: int, shape: tuple[int, ...]) -> np.ndarray:
    """A row's own scores as finite floats of `shape`; anything else is an error naming the row."""
    value = _field(row, name, index)
    try:
        scores = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise BenchmarkError(f"Row {index} (id {row.get('id')!r}): {name!r} is not numeric ({value!r}).") from error
    if scores.shape != shape:
        layout = {(): "a number", (2,): "[score_a, score_b]", (2, 2): "[[s00, s01], [s10, s11]]"}[shape]
        raise BenchmarkError(f"Row {index} (id {row.get('id')!r}): {name!r} must be {layout}, got {value!r}.")
    if not np.isfinite(scores).all():
        raise BenchmarkError(
            f"Row {index} (id {row.get('id')!r}): {name!r} holds a non-finite score ({value!r}); score it again."
        )
    return scores


def _two(row: Mapping[str, Any], name: str, index: int) -> list:
    value = _field(row, name, index)
    if not isinstance(value, list) or len(value) != 2:
        raise BenchmarkError(f"Row {index} (id {row.get('id')!r}): {name!r} must be a list of two, got {value!r}.")
    return value


def evaluate(
    task: str, rows: Sequence[Mapping[str, Any]], score_table: Mapping[tuple[str, str], float] | None = None
) -> dict[str, float]:
    """
    Metrics of a benchmark. With `score_table` ((image, text) -> score), scores are looked up there; without it, they
    are read from each row (see the module docstring for the keys). A missing score is an error, never skipped.
    """
    if task not in TASKS:
        raise BenchmarkError(f"Unknown task {task!r}; choose one of {TASKS}.")
    if not rows:
        raise BenchmarkError("The benchmark has no rows.")
    # Every row must have its full structure, even where the scores are inline: a malformed row is an error.
    needed = benchmark_pairs(task, rows)
    if score_table is not None:
        missing = [pair for pair in needed if pair not in score_table]
        if missing:
            raise BenchmarkError(
                f"{len(missing)} (image, text) pair(s) of the benchmark have no score, e.g. {missing[:3]}. Score "
                "them (clip-flant5 eval --write-pairs lists every pair needed) with the same image strings."
            )

    def lookup(image: str, text: str) -> float:
        return float(score_table[(image, text)])

    if task == "genai-bench-video":
        if score_table is None:
            raise BenchmarkError(
                "genai-bench-video reads its scores from a `clip-flant5 score` output: pass --scores (clip-flant5 eval "
                "--write-pairs lists the videos to score)."
            )
        # One row per video, compared with the mean of its raters, ungrouped, as the GenAI-Bench-Video paper does.
        video_rows = [{**row, "image": row["video"], "group": None} for row in rows]
        return evaluate("correlation", video_rows, score_table)

    if task == "winoground":
        matrices = []
        for index, row in enumerate(rows):
            if score_table is None:
                matrix = _inline_scores(row, "scores", index, (2, 2))
            else:
                images, captions = _two(row, "images", index), _two(row, "captions", index)
                matrix = np.array([[lookup(image, caption) for caption in captions] for image in images])
            matrices.append(matrix)
        return winoground_metrics(np.stack(matrices))

    if task == "pairwise":
        score_a, score_b, preferences = [], [], []
        for index, row in enumerate(rows):
            if score_table is None:
                pair_scores = _inline_scores(row, "scores", index, (2,))
            else:
                pair_scores = [lookup(image, _field(row, "text", index)) for image in _two(row, "images", index)]
            score_a.append(float(pair_scores[0]))
            score_b.append(float(pair_scores[1]))
            preferences.append(_field(row, "preference", index))
        return pairwise_preference_metrics(score_a, score_b, preferences)

    scores, human, groups = [], [], []
    for index, row in enumerate(rows):
        if score_table is None:
            scores.append(float(_inline_scores(row, "score", index, ())))
        else:
            scores.append(lookup(_field(row, "image", index), _field(row, "text", index)))
        rating = _field(row, "human", index)
        ratings = rating if isinstance(rating, list) else [rating]
        if not ratings or not all(
            isinstance(value, (int, float)) and not isinstance(value, bool) for value in ratings
        ):
            raise BenchmarkError(f"Row {index}: 'human' must be a number or a list of numbers, got {rating!r}.")
        human.append(float(np.mean(ratings)))
        groups.append(row.get("group"))
    has_groups = any(group is not None for group in groups)
    return correlation_metrics(scores, human, groups if has_groups else None)


__all__ = [
    "TASKS",
    "BenchmarkError",
    "benchmark_pairs",
    "correlation_metrics",
    "evaluate",
    "pairwise_preference_metrics",
    "read_rows",
    "read_score_table",
    "tie_calibrated_accuracy",
    "winoground_metrics",
]
