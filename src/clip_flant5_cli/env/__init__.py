"""`clip-flant5 env`: the Python, package versions, available devices and attention backends, for bug reports."""

import argparse


HELP = "print versions, devices and attention backends (paste this into bug reports)"
EPILOG = """\
exit status:
  0  always, once the command line parses (2 when it does not)"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`env` has no options."""
