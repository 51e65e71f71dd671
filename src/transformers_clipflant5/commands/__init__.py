"""Subcommands of the `clip-flant5` command line, one module each, every one exposing `register(subparsers)`."""
