"""Subcommands of the `clip-flant5` command line, one module each, every one exposing `register(subparsers)`."""

import argparse
from collections.abc import Callable


def add_command(
    subparsers,
    name: str,
    run: Callable[[argparse.Namespace], int],
    help: str,
    description: str,
    epilog: str | None = None,
) -> argparse.ArgumentParser:
    """The parser of the subcommand `name`, which runs `run(args)` and exits with what it returns. `description` (the
    command module's docstring) and `epilog` are printed with their own line breaks."""
    parser = subparsers.add_parser(
        name,
        help=help,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(func=run)
    return parser
