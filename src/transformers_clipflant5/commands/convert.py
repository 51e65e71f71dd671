"""`clip-flant5 convert`: original checkpoints to self-contained transformers Hub folders, optionally pushed."""

import argparse

from ..convert_clip_flant5_original_to_hf import DESCRIPTION, EPILOG, add_arguments, run


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="convert an original CLIP-FlanT5 checkpoint (or the whole original release) and optionally push it",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    parser.set_defaults(func=run)
