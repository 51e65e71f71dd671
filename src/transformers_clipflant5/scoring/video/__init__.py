# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""Video VQAScore: `VQAScore.score_videos` (`average` and `concat` modes), `score_videos_matrix` and the
differentiable `score_video_pixels`, with videos read in memory by PyAV (the `video` extra). See docs/video.md.

- `sampling`: which frames are scored (uniform, or GenAI-Bench-Video's 36/9/4-frame protocols);
- `decoding`: reading those frames from a file (seeking, not decoding everything), an array or a list of frames;
- `strip`: the `concat` mode's strip of frames;
- `scoring`: the scores, through the scorer's public image API.
"""

from .decoding import VideoInput, read_frames
from .sampling import frame_indices
from .scoring import iter_video_scores, score_video_pixels, score_videos, score_videos_matrix
from .strip import STRIP_GAP, build_strip


__all__ = [
    "STRIP_GAP",
    "VideoInput",
    "build_strip",
    "frame_indices",
    "iter_video_scores",
    "read_frames",
    "score_video_pixels",
    "score_videos",
    "score_videos_matrix",
]
