"""`clip-flant5 flatten IN OUT`: split multi-turn LLaVA conversations into single-turn samples (stage-2 data prep).

Reproduces the original stage-2 data preparation (llava_v1_5_mix665k.json ->
llava_v1_5_mix665k_flattened_multi_turn.json): a conversation of one question/answer pair is kept as it is; a longer
one becomes one sample per pair, without the earlier turns (nor a leading gpt turn, which training drops too), and
every pair after the first gets '<image>\\n' before its question unless it has one. Unlike the original script,
text-only conversations get no '<image>' (the original added it to them too). Every row is checked as stage-2
training checks it (images aside): a row it would refuse stops the command, named by its row number in INPUT. Reads
a JSON list or JSON lines; writes the same format as the output's extension (.jsonl or .JSONL for JSON lines,
anything else a JSON list).
"""

import argparse
from pathlib import Path


HELP = "split multi-turn LLaVA conversations into single-turn samples, as for the stage-2 training data"
EPILOG = """\
exit status:
  0  the samples were written
  2  nothing was written: a bad command line, OUTPUT exists (pass --force), is a folder, is INPUT or cannot be
     written, or INPUT cannot be read as LLaVA conversations or has rows training would refuse (the message names
     the rows)"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", type=Path, help="LLaVA-layout JSON (.json) or JSON lines (.jsonl) file")
    parser.add_argument("output", type=Path, help="where to write the flattened samples")
    parser.add_argument("--indent", type=int, default=None, help="indent the output JSON list (default: compact)")
    parser.add_argument("--force", action="store_true", help="overwrite OUTPUT if it exists")
