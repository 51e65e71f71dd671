"""`clip-flant5 flatten IN OUT`: flattening multi-turn LLaVA conversations into a file. The options and the help
(what is flattened how, exit statuses) are in `clip_flant5_cli.flatten`."""

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from transformers_clipflant5.json_rows import is_json_lines


def run(args: argparse.Namespace) -> int:
    from transformers_clipflant5.training.data import (
        DataValidationError,
        flatten_conversations,
        read_llava_json,
        validate_llava_samples,
    )

    output: Path = args.output
    if output.is_dir():
        print(
            f"error: {output} is a folder; OUTPUT must name a file (e.g. {output / 'flattened.json'}).",
            file=sys.stderr,
        )
        return 2
    if output.exists() and not args.force:
        print(f"error: {output} exists; pass --force to overwrite it.", file=sys.stderr)
        return 2
    if output.resolve() == args.input.resolve():
        print("error: OUTPUT must differ from INPUT.", file=sys.stderr)
        return 2
    try:
        samples = read_llava_json(args.input)
    except (FileNotFoundError, DataValidationError) as error:
        # These name the file.
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        flattened, counts, source_rows = flatten_conversations(samples)
        # Written rows must be rows stage-2 training accepts: a malformed input row is refused here, by its input row
        # number, not found in the output at the start of a training run. Images are the training run's to check.
        validate_llava_samples(flattened, "t5_v1", check_images=False, row_numbers=source_rows)
    except DataValidationError as error:
        print(f"error: {args.input}: {error}\nNothing was written.", file=sys.stderr)
        return 2
    try:
        _write_atomically(output, flattened, args.indent)
    except OSError as error:
        print(f"error: cannot write {output}: {error}. Nothing was written.", file=sys.stderr)
        return 2
    print(
        f"{counts['samples']} samples: {counts['single_turn']} single-turn kept, {counts['multi_turn']} multi-turn "
        f"split; {counts['flattened']} samples written to {output}."
    )
    return 0


def _write_atomically(output: Path, samples: list[dict[str, Any]], indent: int | None) -> None:
    """Write `samples` as JSON lines or a JSON list (by `output`'s suffix) through a temporary file, so that a failed
    write (a full disk) leaves no half file and `--force` never destroys the old one for nothing."""
    output.parent.mkdir(parents=True, exist_ok=True)
    temporary = output.with_name(output.name + ".partial")
    try:
        with open(temporary, "w", encoding="utf-8") as handle:
            if is_json_lines(output):
                for sample in samples:
                    handle.write(json.dumps(sample, ensure_ascii=False) + "\n")
            else:
                json.dump(samples, handle, ensure_ascii=False, indent=indent)
        os.replace(temporary, output)
    finally:
        temporary.unlink(missing_ok=True)
