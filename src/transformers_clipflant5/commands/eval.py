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
import json
import sys
from pathlib import Path

from . import add_command


def register(subparsers) -> None:
    parser = add_command(
        subparsers,
        "eval",
        run,
        help="benchmark metrics (Winoground, pairwise preference, correlation) from scores",
        description=__doc__,
    )
    parser.add_argument(
        "--task",
        required=True,
        choices=("winoground", "pairwise", "correlation"),
        help="which metrics to compute (the benchmark file's row format depends on it, see above)",
    )
    parser.add_argument("--benchmark", required=True, type=Path, help="benchmark file (JSON list or JSONL)")
    parser.add_argument("--scores", type=Path, help="JSONL output of `clip-flant5 score` (default: scores in rows)")
    parser.add_argument("--output", type=Path, help="also write the metrics to this JSON file")
    parser.add_argument(
        "--write-pairs", type=Path, metavar="PAIRS_JSONL", help="write the (image, text) pairs to score, then stop"
    )


def run(args: argparse.Namespace) -> int:
    from transformers_clipflant5.evaluation import (
        BenchmarkError,
        benchmark_pairs,
        evaluate,
        read_rows,
        read_score_table,
    )

    try:
        rows = read_rows(args.benchmark)
        if args.write_pairs is not None:
            pairs = benchmark_pairs(args.task, rows)
            with open(args.write_pairs, "w", encoding="utf-8") as handle:
                for image, text in pairs:
                    handle.write(json.dumps({"image": image, "text": text}, ensure_ascii=False) + "\n")
            print(f"Wrote {len(pairs)} pairs to {args.write_pairs}.", file=sys.stderr)
            return 0
        table = read_score_table(args.scores) if args.scores is not None else None
        metrics = evaluate(args.task, rows, table)
    except (BenchmarkError, FileNotFoundError, ImportError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    text = json.dumps({"task": args.task, "benchmark": str(args.benchmark), **metrics}, indent=2)
    print(text)
    if args.output is not None:
        args.output.write_text(text + "\n", encoding="utf-8")
    return 0
