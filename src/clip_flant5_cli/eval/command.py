"""`clip-flant5 eval`: reading a benchmark and its scores, and printing the metrics. The options and the help (the
benchmark formats, exit statuses) are in `clip_flant5_cli.eval`."""

import argparse
import json
import sys


def run(args: argparse.Namespace) -> int:
    from transformers_clipflant5.evaluation import (
        BenchmarkError,
        benchmark_pairs,
        evaluate,
        genai_bench_video,
        read_rows,
        read_score_table,
    )

    videos = args.task == genai_bench_video.TASK
    try:
        rows = genai_bench_video.read_genai_bench_video(args.benchmark) if videos else read_rows(args.benchmark)
        if args.write_pairs is not None:
            pairs = benchmark_pairs(args.task, rows)
            with open(args.write_pairs, "w", encoding="utf-8") as handle:
                for image, text in pairs:
                    record = {"video" if videos else "image": image, "text": text}
                    handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            print(f"Wrote {len(pairs)} pairs to {args.write_pairs}.", file=sys.stderr)
            return 0
        table = read_score_table(args.scores) if args.scores is not None else None
        metrics = evaluate(args.task, rows, table)
        if videos:
            metrics["video_frames"] = genai_bench_video.score_settings(args.scores)
        text = json.dumps({"task": args.task, "benchmark": str(args.benchmark), **metrics}, indent=2)
        # Written before printing: an --output that cannot be written stops the command with status 2, as its help
        # says, instead of a traceback after the metrics.
        if args.output is not None:
            args.output.write_text(text + "\n", encoding="utf-8")
    except (BenchmarkError, OSError, ImportError) as error:
        # OSError: a missing file to read, or a --write-pairs/--output file that cannot be written (a folder, no
        # permission, a missing folder).
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(text)
    return 0
