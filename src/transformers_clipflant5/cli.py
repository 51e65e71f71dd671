"""The `clip-flant5` command line (also `python -m transformers_clipflant5`).

Each subcommand lives in `transformers_clipflant5.commands.<name>` and exposes `register(subparsers)`, which adds its
parser and sets `func(args) -> int` (the exit status).
"""

import argparse
import importlib
import sys


COMMANDS = ("env", "score", "eval", "convert", "flatten")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clip-flant5",
        description="CLIP-FlanT5 (the VQAScore model) for transformers: convert, score, evaluate, inspect.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"transformers_clipflant5.commands.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    sys.exit(args.func(args))
