# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""Convert an original CLIP-FlanT5 checkpoint (or one of ours) into a self-contained transformers Hub folder:
config with auto_map, generation config, sharded safetensors (vision tower inside, each tensor once), processor
with the chat template, remote-code files and a model card. A stage-1 repo (mm_projector.bin) becomes
projector.safetensors + projector_config.json + card. Optionally push the folder to the Hub in one commit
(pickles, optimizer states and checkpoints are never uploaded)."""

import argparse

from clip_flant5_choices import CONVERT_DTYPES, ORIGINAL_CHECKPOINTS, ORIGINAL_ORG


HELP = "convert an original CLIP-FlanT5 checkpoint (or the whole original release) and optionally push it"
EPILOG = """\
examples:
  clip-flant5 convert zhiqiulin/clip-flant5-xxl ./clip-flant5-xxl
  clip-flant5 convert zhiqiulin/clip-flant5-xl ./clip-flant5-xl --dtype bfloat16 --max-shard-size 2GB \\
      --push-to-hub my-org/clip-flant5-xl --revision main --private
  clip-flant5 convert zhiqiulin/clip-flant5-xxl-stage-1 ./clip-flant5-xxl-stage-1
  clip-flant5 convert --all-original --output-dir ./zoo --org my-org --dry-run

The source is read through the Hugging Face cache (HF_HUB_CACHE); with HF_HUB_OFFLINE=1 it must be there already.
Converting the XXL needs about 23 GB of disk for the download and as much for the output, and holds one copy of
the weights in memory (about 23 GB in bfloat16).

exit status:
  0  every conversion (and push) asked for was done, or printed with --dry-run
  1  with --all-original: some checkpoints were converted (and pushed), others failed (each error names the
     file, folder or repo, and why)
  2  the conversion stopped: a bad command line, SRC or DST missing or unusable (a source that cannot be read, an
     occupied DST), a failed push (the folder stays written), the error naming which and why; or --all-original
     without --output-dir, with SRC, DST or --push-to-hub, or with a name in --only the original release lacks"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", nargs="?", metavar="SRC", help="folder or Hub repo id of the checkpoint to convert")
    parser.add_argument("output_dir", nargs="?", metavar="DST", help="new (or empty) folder to write")
    parser.add_argument(
        "--dtype", choices=CONVERT_DTYPES, help="dtype of the written weights (default: the checkpoint's own)"
    )
    parser.add_argument(
        "--max-shard-size", default="5GB", help="largest safetensors shard, e.g. 2GB or 500MB (default: 5GB)"
    )
    parser.add_argument("--push-to-hub", metavar="REPO", help="after converting, upload the folder to this Hub repo")
    parser.add_argument("--revision", metavar="BRANCH", help="branch of the pushed repo (created if needed)")
    parser.add_argument("--private", action="store_true", help="create the pushed repo as private")
    parser.add_argument("--commit-message", help="message of the upload commit")
    parser.add_argument("--source-revision", metavar="REV", help="revision of a Hub source (branch, tag or commit)")
    parser.add_argument("--cache-dir", help="Hugging Face cache folder to read Hub sources from")
    parser.add_argument(
        "--repo-id", help="repo id the model card's usage examples name, when not pushing (default: a placeholder)"
    )
    parser.add_argument(
        "--text-model",
        help="Hub id of the base text model, for the card, when SRC is not one of the original checkpoints",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace a previous conversion in DST (only such a folder is deleted)"
    )
    zoo = parser.add_argument_group("the whole original release")
    zoo.add_argument(
        "--all-original",
        action="store_true",
        help="convert every original checkpoint ("
        + ", ".join(entry.name for entry in ORIGINAL_CHECKPOINTS)
        + ") into --output-dir/<name>, and push each to --org/<name> when --org is given",
    )
    zoo.add_argument(
        "--output-dir",
        dest="output_dir_all",
        metavar="DIR",
        help="with --all-original: the folder that receives one sub-folder per checkpoint",
    )
    zoo.add_argument("--org", help="with --all-original: the Hub user or organisation to push to")
    zoo.add_argument(
        "--source-org", default=ORIGINAL_ORG, help=f"with --all-original: where to read from (default: {ORIGINAL_ORG})"
    )
    zoo.add_argument(
        "--source-root", help="with --all-original: read each checkpoint from SOURCE_ROOT/<name> instead of the Hub"
    )
    zoo.add_argument("--only", nargs="+", metavar="NAME", help="with --all-original: convert only these checkpoints")
    parser.add_argument(
        "--dry-run", action="store_true", help="print what would be done; read, write and upload nothing"
    )
