"""Running the `clip-flant5` command line in the test process."""

import pytest

from clip_flant5_cli import main


def run_command(argv: list[str]) -> int:
    """Run `clip-flant5 ARGV` here and return its exit status (argparse's usage errors included)."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    return exit_info.value.code


def run_convert(argv: list[str]) -> int:
    """Run `clip-flant5 convert ARGV` here and return its exit status."""
    return run_command(["convert", *argv])


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    """Run `clip-flant5 ARGV` here: its exit status and what it printed to stdout and stderr."""
    status = run_command(argv)
    captured = capsys.readouterr()
    return status, captured.out, captured.err
