# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""The `clip-flant5` command line (also `python -m transformers_clipflant5`): its parsers, help pages and `main`.

Apart from `transformers_clipflant5` so that `--help` and usage errors answer at once: importing that package imports
torch and transformers (seconds), as it must to register CLIP-FlanT5 with transformers' Auto classes. This package
imports only the standard library. Each command has a module here holding its options and help (the module's
docstring is the command's description, `HELP` its line in the command list, `EPILOG` what follows its options), and
`main` imports the implementation, `transformers_clipflant5.commands.<name>`, only once the command line has parsed.
What both sides need (choices, the original release's checkpoints) lives once, in `facts`.
"""

import argparse
import importlib
import sys
from typing import NoReturn


COMMANDS = ("env", "score", "eval", "convert", "flatten", "serve")

DESCRIPTION = "CLIP-FlanT5 (the VQAScore model) for transformers: convert, score, serve, evaluate, inspect."
EPILOG = """\
exit status (`clip-flant5 COMMAND --help` details its own):
  0  success
  1  part of the work failed, the rest was done: score (some pairs could not be scored), convert --all-original
     (some checkpoints could not be converted)
  2  the command stopped: a bad command line, or an input, output or model that cannot be used (every command;
     the error names it and what to do)"""


def build_parser() -> argparse.ArgumentParser:
    """The parser of `clip-flant5` and all its commands."""
    parser = argparse.ArgumentParser(
        prog="clip-flant5",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        command = importlib.import_module(f"{__name__}.{name}")
        # Raw: descriptions and epilogs keep their own line breaks (tables, examples).
        command.add_arguments(
            subparsers.add_parser(
                name,
                help=command.HELP,
                description=command.__doc__,
                epilog=getattr(command, "EPILOG", None),
                formatter_class=argparse.RawDescriptionHelpFormatter,
            )
        )
    return parser


def main(argv: list[str] | None = None) -> NoReturn:
    """Run `clip-flant5 ARGV` (default: `sys.argv[1:]`) and exit with the command's status (2 for a usage error)."""
    args = build_parser().parse_args(argv)
    # Only now: the implementation imports torch and transformers, which the help and usage errors never need.
    command = importlib.import_module(f"transformers_clipflant5.commands.{args.command}")
    sys.exit(command.run(args))
