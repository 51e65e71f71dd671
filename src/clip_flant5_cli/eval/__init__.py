"""`clip-flant5 eval`: benchmark metrics (Winoground, pairwise preference, correlation) from VQAScore scores.

Benchmark files are JSON lists or JSONL files, one object per example:

  winoground   {"id": ..., "images": [image_0, image_1], "captions": [caption_0, caption_1]}
               caption k describes image k. Reports text, image and group scores (percent).
  pairwise     {"id": ..., "text": prompt, "images": [image_a, image_b], "preference": 0 | 1 | "tie"}
               0: image_a preferred by humans. Reports accuracy without human ties and tie-calibrated
               accuracy (percent) with its epsilon.
  correlation  {"id": ..., "image": ..., "text": ..., "human": rating or [ratings], "group": optional}
               Reports Pearson, Spearman, Kendall tau-b, and tie-calibrated pairwise accuracy over pairs of
               rows (within a group when rows have one).
  genai-bench-video  the release's genai_video.json: {"<prompt id>": {"prompt": ..., "models": {"<generator>":
               [ratings]}}}, videos at <generator>/<prompt id>.mp4 beside it. Reports Pearson, Spearman, Kendall
               tau-b and tie-calibrated pairwise accuracy over every video, against its mean rating. Scores: --scores
               only; the paper's protocol scores with `clip-flant5 score --frame-sampling genai-bench --num-frames
               36` (or 9, 4). See docs/video.md.

Scores: with --scores, the JSONL output of `clip-flant5 score`, joined on the exact (image, text) strings;
without it, inside the benchmark rows ("scores": [[s00, s01], [s10, s11]] with s[i][j] = image i with caption j
for winoground, "scores": [score_a, score_b] for pairwise, "score": s for correlation).

Typical run:
  clip-flant5 eval --task winoground --benchmark wino.jsonl --write-pairs pairs.jsonl
  clip-flant5 score --model zhiqiulin/clip-flant5-xxl --pairs pairs.jsonl --output scores.jsonl
  clip-flant5 eval --task winoground --benchmark wino.jsonl --scores scores.jsonl
(--write-pairs writes the image strings as the benchmark has them; score resolves relative ones against the
pairs file's folder, or --image-root.)
"""

import argparse
from pathlib import Path

from clip_flant5_choices import EVAL_TASKS


HELP = "benchmark metrics (Winoground, pairwise preference, correlation, GenAI-Bench-Video) from scores"
EPILOG = """\
exit status:
  0  the metrics were printed (or, with --write-pairs, the pairs written)
  2  nothing was printed or written: a bad command line, a benchmark or scores file that cannot be read or
     evaluated (the message names the row), or a --write-pairs or --output file that cannot be written"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--task",
        required=True,
        choices=EVAL_TASKS,
        help="which metrics to compute (the benchmark file's row format depends on it, see above)",
    )
    parser.add_argument("--benchmark", required=True, type=Path, help="benchmark file (JSON list or JSONL)")
    parser.add_argument("--scores", type=Path, help="JSONL output of `clip-flant5 score` (default: scores in rows)")
    parser.add_argument("--output", type=Path, help="also write the metrics to this JSON file")
    parser.add_argument(
        "--write-pairs", type=Path, metavar="PAIRS_JSONL", help="write the (image, text) pairs to score, then stop"
    )
