"""`clip-flant5 flatten IN OUT`: split multi-turn LLaVA conversations into single-turn samples (stage-2 data prep)."""

import argparse
import json
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "flatten",
        help="split multi-turn LLaVA conversations into single-turn samples, as for the stage-2 training data",
        description=(
            "Reproduce the original stage-2 data preparation (llava_v1_5_mix665k.json -> "
            "llava_v1_5_mix665k_flattened_multi_turn.json): a conversation of one question/answer pair is kept as it "
            "is; a longer one becomes one sample per pair, without the earlier turns, and every pair after the first "
            "gets '<image>\\n' before its question. Unlike the original script, text-only conversations get no "
            "'<image>' (the original added it to them too). Reads a JSON list or JSON lines; writes the same format "
            "as the output's extension (.jsonl for JSON lines, anything else a JSON list)."
        ),
    )
    parser.add_argument("input", type=Path, help="LLaVA-layout JSON (.json) or JSON lines (.jsonl) file")
    parser.add_argument("output", type=Path, help="where to write the flattened samples")
    parser.add_argument("--indent", type=int, default=None, help="indent the output JSON list (default: compact)")
    parser.add_argument("--force", action="store_true", help="overwrite OUTPUT if it exists")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..training.data import DataValidationError, flatten_conversations, read_llava_json

    if args.output.exists() and not args.force:
        print(f"error: {args.output} exists; pass --force to overwrite it.")
        return 1
    if args.output.resolve() == args.input.resolve():
        print("error: OUTPUT must differ from INPUT.")
        return 1
    try:
        samples = read_llava_json(args.input)
    except (FileNotFoundError, DataValidationError) as error:
        print(f"error: {error}")
        return 1
    bad = [
        index
        for index, sample in enumerate(samples)
        if not isinstance(sample, dict) or not isinstance(sample.get("conversations"), list)
    ]
    if bad:
        print(f"error: {len(bad)} rows have no 'conversations' list (first: {bad[:10]}); is this LLaVA-layout data?")
        return 1
    flattened, counts = flatten_conversations(samples)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    with open(args.output, "w", encoding="utf-8") as handle:
        if args.output.suffix == ".jsonl":
            for sample in flattened:
                handle.write(json.dumps(sample, ensure_ascii=False) + "\n")
        else:
            json.dump(flattened, handle, ensure_ascii=False, indent=args.indent)
    print(
        f"{counts['samples']} samples: {counts['single_turn']} single-turn kept, {counts['multi_turn']} multi-turn "
        f"split; {counts['flattened']} samples written to {args.output}."
    )
    return 0
