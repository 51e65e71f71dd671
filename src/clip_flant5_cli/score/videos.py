# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""The rows of a `clip-flant5 score --pairs` file with `"video"` instead of `"image"`: their frame options
(--video-mode, --num-frames, --frame-sampling) and their scoring, with a video that cannot be read reported as its
row's problem, like an unreadable image."""

import argparse
import sys
from collections.abc import Callable

from tqdm.auto import tqdm

from .checks import ScoreUsageError


def check_video_arguments(args: argparse.Namespace) -> None:
    """Raise [`ScoreUsageError`] for a --num-frames / --frame-sampling pair that cannot be used."""
    from transformers_clipflant5.scoring.video.sampling import check_sampling

    try:
        check_sampling(args.num_frames, args.frame_sampling)
    except ValueError as error:
        raise ScoreUsageError(f"--num-frames/--frame-sampling: {error}") from error


def video_frames(args: argparse.Namespace) -> str:
    """How a video row is scored, as its records state it (a re-run with other options is refused, not mixed)."""
    return f"{args.video_mode}, {args.num_frames} frames, {args.frame_sampling}"


def score_video_rows(
    args: argparse.Namespace,
    scorer,
    rows: list,
    resolve: Callable[[str], str],
    write: Callable[[int, float], None],
    problems: list[tuple[int, str]],
    bar: tqdm,
) -> None:
    """Score the video `rows` (each `PairRow` with a `video`) a window of `--batch-size` videos at a time, calling
    `write(row index, score)` for each scored row, in input order within a window; a video that cannot be read adds
    its row to `problems` and is reported on stderr."""
    from transformers_clipflant5.scoring.video import iter_video_scores

    window = max(1, args.batch_size)
    for start in range(0, len(rows), window):
        window_rows = rows[start : start + window]

        def on_video_error(position: int, error: Exception, window_rows: list = window_rows) -> None:
            row = window_rows[position]
            message = f"{args.pairs} row {row.index} (line {row.line}), video {row.video!r}: {error}"
            problems.append((row.index, message))
            tqdm.write(f"skipped: {message}", file=sys.stderr)
            bar.update(1)

        scores: dict[int, float] = {}
        for positions, batch_scores in iter_video_scores(
            scorer,
            [resolve(row.video) for row in window_rows],
            [row.text for row in window_rows],
            num_frames=args.num_frames,
            mode=args.video_mode,
            sampling=args.frame_sampling,
            batch_size=args.batch_size,
            question_template=args.question_template,
            answer_template=args.answer_template,
            on_video_error=on_video_error,
            truncate_texts=args.truncate_texts,
        ):
            for position, score in zip(positions, batch_scores.tolist()):
                scores[window_rows[position].index] = score
            bar.update(len(positions))
        for index in sorted(scores):
            write(index, scores[index])


def video_record(row, score: float) -> dict:
    """The output record of a video row."""
    return {
        "row": row.index, "id": row.id, "video": row.video, "text": row.text, "score": score,
        "video_frames": row.video_frames,
    }  # fmt: skip


__all__ = ["check_video_arguments", "score_video_rows", "video_frames", "video_record"]
