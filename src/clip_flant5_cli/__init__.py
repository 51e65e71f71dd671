# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""The `clip-flant5` command line (also `python -m transformers_clipflant5`): each command in a folder of its own.

`clip_flant5_cli/<name>/__init__.py` holds the command's options and help (its docstring is the command's description,
`HELP` its line in the command list, `EPILOG` what follows its options) and imports only the standard library and
`clip_flant5_choices`, so that `--help` and usage errors answer at once; `clip_flant5_cli/<name>/command.py` holds
`run(args) -> exit status`, which calls the library (`transformers_clipflant5`, whose import takes seconds: torch and
transformers). `main` imports a command's `command` module only once the command line has parsed.
"""

import argparse
import importlib
import sys
from typing import NoReturn


COMMANDS = ("env", "score", "eval", "convert", "flatten", "serve", "demo")

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
    command = importlib.import_module(f"{__name__}.{args.command}.command")
    sys.exit(command.run(args))
