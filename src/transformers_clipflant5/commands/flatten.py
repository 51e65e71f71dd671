"""`clip-flant5 flatten IN OUT`: flattening multi-turn LLaVA conversations into a file. The options and the help
(what is flattened how, exit statuses) are in `clip_flant5_cli.flatten`."""

import argparse
import json
import sys


def run(args: argparse.Namespace) -> int:
    from ..training.data import DataValidationError, flatten_conversations, read_llava_json

    if args.output.exists() and not args.force:
        print(f"error: {args.output} exists; pass --force to overwrite it.", file=sys.stderr)
        return 2
    if args.output.resolve() == args.input.resolve():
        print("error: OUTPUT must differ from INPUT.", file=sys.stderr)
        return 2
    try:
        flattened, counts = flatten_conversations(read_llava_json(args.input))
    except (FileNotFoundError, DataValidationError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
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
