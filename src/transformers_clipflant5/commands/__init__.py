"""What the subcommands of `clip-flant5` do: one module each, exposing `run(args) -> exit status`.

Their parsers and help pages are in `clip_flant5_cli`, which imports only the standard library and imports
`transformers_clipflant5.commands.<name>` once the command line has parsed.
"""
