# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""VQAScore of (video, text) pairs, through the scorer's public image API.

- `mode="average"`: the sampled frames are scored as images, each with the text, and the score is their mean (a
  frame sampled twice counts twice). Frames with the same pixels are scored once, and every distinct frame goes
  through the vision tower once per call chunk, however many texts it is paired with (the same frame objects are
  handed to the scorer, whose distinct-image planning does the rest).
- `mode="concat"`: the sampled frames side by side in one strip (see `strip`), scored as one image.

Videos are read a chunk at a time (about `FRAMES_PER_CHUNK` sampled frames), so memory stays bounded however many
videos a call has; all the rows of a video are in its chunk.
"""

import hashlib
from collections.abc import Callable, Iterator, Sequence
from functools import partial

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from clip_flant5_choices import VIDEO_MODES

from ..plan import as_list
from ..scorer_api import ScorerAPI
from .decoding import VideoInput, read_frames, video_key
from .sampling import check_sampling, frame_indices
from .strip import build_strip, check_strip_pixels, strip_size


# Called with (row index, error) for each row whose video cannot be read, when the caller prefers skipping to raising.
VideoErrorHandler = Callable[[int, Exception], None]
# Sampled frames held in memory at a time (a chunk holds at least one video).
FRAMES_PER_CHUNK = 256


def as_videos(videos) -> list:
    """`videos` as a list of videos: a path or a 4-D array/tensor is one video, a 5-D one a batch of videos; a list
    or tuple is a list of videos (one video given as frames is a list of frames inside it)."""
    if isinstance(videos, (np.ndarray, torch.Tensor)):
        if videos.ndim == 4:
            return [videos]
        if videos.ndim == 5:
            return list(videos)
        raise ValueError(
            f"A video array must be 4-D (T, H, W, C) / (T, C, H, W), or 5-D for a batch; got shape "
            f"{tuple(videos.shape)}."
        )
    return as_list(videos, "videos")


def _check_options(mode: str, num_frames: int, sampling: str) -> None:
    if mode not in VIDEO_MODES:
        raise ValueError(f"mode must be one of {VIDEO_MODES}, got {mode!r}.")
    check_sampling(num_frames, sampling)


def _pixel_key(image: Image.Image) -> tuple:
    return (image.size, image.mode, hashlib.blake2b(image.tobytes(), digest_size=16).digest())


def _distinct_frames(frames: list[Image.Image]) -> tuple[list[Image.Image], list[int]]:
    """The frames with distinct pixels, and how many of `frames` each stands for."""
    slots: dict[tuple, int] = {}
    distinct, counts = [], []
    for frame in frames:
        key = _pixel_key(frame)
        if key not in slots:
            slots[key] = len(distinct)
            distinct.append(frame)
            counts.append(0)
        counts[slots[key]] += 1
    return distinct, counts


def iter_video_scores(
    scorer: ScorerAPI,
    videos: Sequence[VideoInput],
    texts: Sequence[str],
    num_frames: int = 8,
    mode: str = "average",
    sampling: str = "uniform",
    batch_size: int | None = None,
    question_template: str | None = None,
    answer_template: str | None = None,
    progress: bool = False,
    on_video_error: VideoErrorHandler | None = None,
    truncate_texts: bool = False,
) -> Iterator[tuple[list[int], torch.Tensor]]:
    """
    Score `videos[i]` with `texts[i]`, yielding `(row indices, scores)` a chunk of videos at a time (rows in no
    particular order). Arguments as in [`score_videos`]; `on_video_error(row, error)`, when given, is called for each
    row whose video cannot be read, and those rows are skipped; by default such a video raises, naming its row.
    """
    _check_options(mode, num_frames, sampling)
    videos, texts = as_videos(videos), as_list(texts, "texts")
    if len(videos) != len(texts):
        raise ValueError(
            f"Got {len(videos)} videos and {len(texts)} texts; score_videos scores videos[i] with texts[i], so both "
            "lists need the same length (use score_videos_matrix for every combination)."
        )
    texts, _, _ = scorer.check_texts(texts, question_template, answer_template, truncate_texts)
    rows_by_video: dict[tuple, list[int]] = {}
    first_video: dict[tuple, VideoInput] = {}
    for row, video in enumerate(videos):
        key = video_key(video)
        rows_by_video.setdefault(key, []).append(row)
        first_video.setdefault(key, video)
    keys = list(rows_by_video)
    per_chunk = max(1, FRAMES_PER_CHUNK // num_frames)
    indices = partial(frame_indices, num_frames=num_frames, sampling=sampling)
    image_processor = scorer.processor.image_processor
    bar = tqdm(total=len(videos), disable=not progress, unit="pair", desc="VQAScore (videos)")
    try:
        for start in range(0, len(keys), per_chunk):
            # (image, text) pairs to score, and for each (row, weight) lists of the pairs that make up its score.
            images: list[Image.Image] = []
            pair_texts: list[str] = []
            parts: dict[int, list[tuple[int, int]]] = {}
            for key in keys[start : start + per_chunk]:
                rows = rows_by_video[key]
                try:
                    frames = read_frames(first_video[key], indices, image_processor.max_image_pixels)
                    if mode == "concat":
                        check_strip_pixels(strip_size([frame.size for frame in frames]), image_processor)
                        distinct, counts = [build_strip(frames)], [1]
                    else:
                        distinct, counts = _distinct_frames(frames)
                except (OSError, ValueError, TypeError) as error:
                    if on_video_error is None:
                        # Same exception type, with the offending row named.
                        raise type(error)(f"videos[{rows[0]}]: {error}") from error
                    for row in rows:
                        on_video_error(row, error)
                    bar.update(len(rows))
                    continue
                pair_of_text: dict[str, int] = {}
                for row in rows:
                    text = texts[row]
                    if text not in pair_of_text:
                        pair_of_text[text] = len(images)
                        images.extend(distinct)
                        pair_texts.extend([text] * len(distinct))
                    first = pair_of_text[text]
                    parts[row] = [(first + offset, count) for offset, count in enumerate(counts)]
            if not images:
                continue
            pair_scores = np.full(len(images), np.nan)
            for pairs, batch_scores in scorer.iter_scores(
                images, pair_texts, batch_size, question_template, answer_template, progress=False
            ):
                pair_scores[pairs] = batch_scores.double().numpy()
            rows = list(parts)
            scores = torch.tensor(
                [
                    sum(pair_scores[pair] * count for pair, count in parts[row]) / sum(c for _, c in parts[row])
                    for row in rows
                ],
                dtype=torch.float64,
            )
            bar.update(len(rows))
            yield rows, scores.float()
    finally:
        bar.close()


def score_videos(
    scorer: ScorerAPI,
    videos: Sequence[VideoInput],
    texts: Sequence[str],
    num_frames: int = 8,
    mode: str = "average",
    sampling: str = "uniform",
    batch_size: int | None = None,
    question_template: str | None = None,
    answer_template: str | None = None,
    progress: bool = False,
    truncate_texts: bool = False,
) -> torch.Tensor:
    """
    Score `videos[i]` with `texts[i]` for every i.

    Args:
        videos: video files (mp4, webm, mkv, mov, gif, ...), `(T, H, W, C)` or `(T, C, H, W)` arrays or tensors
            (uint8, uint16 or float in [0, 1], as images), or lists of frames (PIL images, arrays or image paths);
            a single path or 4-D array is one video, a 5-D array a batch.
        texts: one text per video (a single string is one pair).
        num_frames: how many frames to sample (see `sampling`).
        mode: `"average"` (the mean of the frames' scores) or `"concat"` (the frames side by side in one image).
        sampling: `"uniform"` (frames `0, s, 2s, ...` with `s = total // num_frames`; every frame of a shorter
            video) or `"genai-bench"` (GenAI-Bench-Video's protocol: the first 36 frames, padded with the last;
            `num_frames` 36, 9 or 4). See `transformers_clipflant5.scoring.video.sampling`.
        batch_size, question_template, answer_template, progress, truncate_texts: as in `VQAScore.__call__`.

    Returns:
        `torch.Tensor` of shape `(len(videos),)`, float32, on CPU.
    """
    videos = as_videos(videos)
    scores = torch.full((len(videos),), float("nan"))
    for rows, batch_scores in iter_video_scores(
        scorer, videos, texts, num_frames, mode, sampling, batch_size, question_template, answer_template, progress,
        truncate_texts=truncate_texts,
    ):  # fmt: skip
        scores[rows] = batch_scores
    return scores


def score_videos_matrix(
    scorer: ScorerAPI,
    videos: Sequence[VideoInput],
    texts: Sequence[str],
    num_frames: int = 8,
    mode: str = "average",
    sampling: str = "uniform",
    batch_size: int | None = None,
    question_template: str | None = None,
    answer_template: str | None = None,
    progress: bool = False,
    truncate_texts: bool = False,
) -> torch.Tensor:
    """
    Score every video with every text (arguments as in [`score_videos`]); each video is read once.

    Returns:
        `torch.Tensor` of shape `(len(videos), len(texts))`, float32, on CPU: `[i, j]` scores `videos[i]` with
        `texts[j]`.
    """
    videos, texts = as_videos(videos), as_list(texts, "texts")
    pair_videos = [video for video in videos for _ in texts]
    scores = score_videos(
        scorer, pair_videos, texts * len(videos), num_frames, mode, sampling, batch_size, question_template,
        answer_template, progress, truncate_texts,
    )  # fmt: skip
    return scores.view(len(videos), len(texts))


def score_video_pixels(
    scorer: ScorerAPI,
    videos: torch.Tensor | Sequence[torch.Tensor],
    texts: Sequence[str],
    num_frames: int | None = None,
    sampling: str = "uniform",
    **score_pixels_kwargs,
) -> torch.Tensor:
    """
    Differentiable `average`-mode score of video tensors: `videos[i]` with `texts[i]`, the mean of its frames' scores
    by `VQAScore.score_pixels`, with the autograd graph back to the pixels (a reward for video generators).

    Args:
        videos: a float `(N, T, 3, H, W)` tensor in [0, 1], or a list of `(T, 3, H, W)` tensors.
        texts: one text per video.
        num_frames: score these many frames, sampled as in [`score_videos`]; None (the default) scores every frame.
        sampling: as in [`score_videos`].
        score_pixels_kwargs: passed to `VQAScore.score_pixels` (`question_template`, `autocast_dtype`, `quantize`,
            ...).

    Returns:
        `(N,)` scores on the model's device, with the autograd graph.
    """
    if isinstance(videos, torch.Tensor):
        if videos.dim() != 5:
            raise ValueError(
                f"videos must be a (N, T, 3, H, W) tensor or a list of (T, 3, H, W) tensors, got shape "
                f"{tuple(videos.shape)}."
            )
        videos = list(videos.unbind(0))
    videos, texts = list(videos), as_list(texts, "texts")
    if len(videos) != len(texts):
        raise ValueError(f"Got {len(videos)} videos and {len(texts)} texts; score_video_pixels needs one text each.")
    frames, frame_texts, owners = [], [], []
    for number, (video, text) in enumerate(zip(videos, texts)):
        if not isinstance(video, torch.Tensor) or video.dim() != 4 or video.shape[1] != 3 or len(video) == 0:
            shape = tuple(video.shape) if isinstance(video, torch.Tensor) else type(video).__name__
            raise ValueError(f"videos[{number}] must be a (T, 3, H, W) tensor with T > 0, got {shape}.")
        indices = range(len(video)) if num_frames is None else frame_indices(len(video), num_frames, sampling)
        frames.extend(video[index] for index in indices)
        frame_texts.extend([text] * len(indices))
        owners.extend([number] * len(indices))
    # One batch when every frame has the same size (score_pixels then preprocesses them together).
    same_size = len({tuple(frame.shape) for frame in frames}) == 1
    frame_scores = scorer.score_pixels(
        torch.stack(frames) if same_size else frames, frame_texts, **score_pixels_kwargs
    )
    owners = torch.tensor(owners, device=frame_scores.device)
    totals = frame_scores.new_zeros(len(videos)).index_add(0, owners, frame_scores)
    return totals / torch.bincount(owners, minlength=len(videos)).to(frame_scores.dtype)


__all__ = [
    "FRAMES_PER_CHUNK",
    "VideoErrorHandler",
    "as_videos",
    "iter_video_scores",
    "score_video_pixels",
    "score_videos",
    "score_videos_matrix",
]
