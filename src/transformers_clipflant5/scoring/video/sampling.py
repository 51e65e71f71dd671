# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""Which frames of a video are scored.

- `"uniform"` (the default): with `total` frames and `num_frames` wanted, the step is `total // num_frames` and the
  frames are `0, step, 2 * step, ..., (num_frames - 1) * step` (the rule of the original package's concat mode, e.g.
  frames 0, 12, 24, ..., 84 of a 100-frame video for 8 frames). A video shorter than `num_frames` gives each of its
  frames once, in order (the original would have repeated frame 0 `num_frames` times, its step being 0).
- `"genai-bench"`: GenAI-Bench-Video's evaluation protocol. The video is cut to its first 36 frames, or padded to 36
  by repeating its last frame; `num_frames=36` scores all 36 positions (the paper's `avg_frames`), `9` positions 0, 4,
  ..., 32 and `4` positions 0, 8, 16, 24. A padded position is the last frame, counted once per position in the
  average.

Indices are always in time order; repeated indices weigh in `average` mode as often as they appear.
"""

from clip_flant5_choices import GENAI_BENCH_VIDEO_FRAMES, VIDEO_SAMPLINGS


# GenAI-Bench-Video pads or cuts every video to this many frames before sampling.
GENAI_BENCH_CLIP_FRAMES = 36
# Positions in those 36 frames of each protocol, by frame count (`facts.GENAI_BENCH_VIDEO_FRAMES`).
GENAI_BENCH_POSITIONS = {
    36: tuple(range(36)),
    9: tuple(range(0, 36, 4)),
    4: (0, 8, 16, 24),
}


def check_sampling(num_frames: int, sampling: str) -> None:
    """A ValueError naming the problem for a frame count or sampling rule [`frame_indices`] does not take."""
    if sampling not in VIDEO_SAMPLINGS:
        raise ValueError(f"sampling must be one of {VIDEO_SAMPLINGS}, got {sampling!r}.")
    if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1:
        raise ValueError(f"num_frames must be a positive integer, got {num_frames!r}.")
    if sampling == "genai-bench" and num_frames not in GENAI_BENCH_POSITIONS:
        raise ValueError(
            f"GenAI-Bench-Video's protocols score {', '.join(map(str, GENAI_BENCH_VIDEO_FRAMES))} frames, not "
            f"{num_frames}: pass one of those, or sampling='uniform'."
        )


def frame_indices(total: int, num_frames: int, sampling: str = "uniform") -> list[int]:
    """The indices (0-based, in time order, possibly repeated) of the frames scored in a video of `total` frames."""
    check_sampling(num_frames, sampling)
    if total < 1:
        raise ValueError("The video has no frames.")
    if sampling == "genai-bench":
        return [min(position, total - 1) for position in GENAI_BENCH_POSITIONS[num_frames]]
    if total < num_frames:
        return list(range(total))
    step = total // num_frames
    return [number * step for number in range(num_frames)]


__all__ = ["GENAI_BENCH_CLIP_FRAMES", "GENAI_BENCH_POSITIONS", "check_sampling", "frame_indices"]
