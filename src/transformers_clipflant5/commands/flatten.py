"""`clip-flant5 flatten IN OUT`: split multi-turn LLaVA conversations into single-turn samples (stage-2 data prep).

Reproduces the original stage-2 data preparation (llava_v1_5_mix665k.json ->
llava_v1_5_mix665k_flattened_multi_turn.json): a conversation of one question/answer pair is kept as it is; a longer
one becomes one sample per pair, without the earlier turns, and every pair after the first gets '<image>\\n' before
its question. Unlike the original script, text-only conversations get no '<image>' (the original added it to them
too). Reads a JSON list or JSON lines; writes the same format as the output's extension (.jsonl for JSON lines,
anything else a JSON list).
"""

import argparse
import json
from pathlib import Path

from . import add_command


def register(subparsers) -> None:
    parser = add_command(
        subparsers,
        "flatten",
        run,
        help="split multi-turn LLaVA conversations into single-turn samples, as for the stage-2 training data",
        description=__doc__,
    )
    parser.add_argument("input", type=Path, help="LLaVA-layout JSON (.json) or JSON lines (.jsonl) file")
    parser.add_argument("output", type=Path, help="where to write the flattened samples")
    parser.add_argument("--indent", type=int, default=None, help="indent the output JSON list (default: compact)")
    parser.add_argument("--force", action="store_true", help="overwrite OUTPUT if it exists")


def run(args: argparse.Namespace) -> int:
    from ..training.data import DataValidationError, flatten_conversations, read_llava_json

    if args.output.exists() and not args.force:
        print(f"error: {args.output} exists; pass --force to overwrite it.")
        return 1
    if args.output.resolve() == args.input.resolve():
        print("error: OUTPUT must differ from INPUT.")
        return 1
    try:
        flattened, counts = flatten_conversations(read_llava_json(args.input))
    except (FileNotFoundError, DataValidationError) as error:
        print(f"error: {error}")
        return 1
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
