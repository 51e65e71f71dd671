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
