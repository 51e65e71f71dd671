# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""`clip-flant5 convert`: original checkpoints to self-contained transformers Hub folders, optionally pushed.

The library is `original.convert` (one checkpoint) and `original.release` (the whole original release); publishing
is `hub.publish`.
"""

import argparse
import sys
from pathlib import Path

from ..hub.model_card import published_results
from ..hub.publish import HUB_REPO_URL, files_to_upload, folder_files, push_folder
from ..original.convert import DTYPES, convert
from ..original.release import (
    ORIGINAL_CHECKPOINTS,
    ORIGINAL_ORG,
    OriginalCheckpoint,
    PlannedConversion,
    plan_original_release,
)
from . import add_command


DESCRIPTION = """\
Convert an original CLIP-FlanT5 checkpoint (or one of ours) into a self-contained transformers Hub folder:
config with auto_map, generation config, sharded safetensors (vision tower inside, each tensor once), processor
with the chat template, remote-code files and a model card. A stage-1 repo (mm_projector.bin) becomes
projector.safetensors + projector_config.json + card. Optionally push the folder to the Hub in one commit
(pickles, optimizer states and checkpoints are never uploaded)."""

EPILOG = """\
examples:
  clip-flant5 convert zhiqiulin/clip-flant5-xxl ./clip-flant5-xxl
  clip-flant5 convert zhiqiulin/clip-flant5-xl ./clip-flant5-xl --dtype bfloat16 --max-shard-size 2GB \\
      --push-to-hub my-org/clip-flant5-xl --revision main --private
  clip-flant5 convert zhiqiulin/clip-flant5-xxl-stage-1 ./clip-flant5-xxl-stage-1
  clip-flant5 convert --all-original --output-dir ./zoo --org my-org --dry-run

The source is read through the Hugging Face cache (HF_HUB_CACHE); with HF_HUB_OFFLINE=1 it must be there already.
Converting the XXL needs about 23 GB of disk for the download and as much for the output, and holds one copy of
the weights in memory (about 23 GB in bfloat16)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", nargs="?", metavar="SRC", help="folder or Hub repo id of the checkpoint to convert")
    parser.add_argument("output_dir", nargs="?", metavar="DST", help="new (or empty) folder to write")
    parser.add_argument(
        "--dtype", choices=sorted(DTYPES), help="dtype of the written weights (default: the checkpoint's own)"
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


def _convert_and_push(
    args: argparse.Namespace,
    source: str,
    output_dir: str | Path,
    push_to: str | None,
    checkpoint: OriginalCheckpoint | None = None,
) -> None:
    result = convert(
        source,
        output_dir,
        dtype=args.dtype,
        max_shard_size=args.max_shard_size,
        repo_id=push_to or args.repo_id,
        text_model=args.text_model,
        source_revision=args.source_revision,
        cache_dir=args.cache_dir,
        overwrite=args.overwrite,
        checkpoint=checkpoint,
    )
    files = folder_files(result.folder)
    size = sum((result.folder / name).stat().st_size for name in files)
    print(f"Converted {source} ({result.kind}) -> {result.folder}: {len(files)} files, {size / 2**20:.1f} MiB")
    if push_to:
        commit = push_folder(
            result.folder, push_to, revision=args.revision, private=args.private, commit_message=args.commit_message
        )
        print(
            f"Pushed {len(files_to_upload(result.folder))} files to {HUB_REPO_URL.format(push_to)}: {commit.commit_url}"
        )


def run(args: argparse.Namespace) -> int:
    """Run the `convert` command; returns the exit status."""
    try:
        if args.all_original:
            return _run_all_original(args)
        if not args.source or not args.output_dir:
            print("error: give SRC and DST (or --all-original --output-dir DIR).", file=sys.stderr)
            return 2
        if args.dry_run:
            push = f", then push to {args.push_to_hub}" if args.push_to_hub else ""
            print(f"Dry run: would convert {args.source} -> {args.output_dir}{push}. Nothing was read or written.")
            return 0
        _convert_and_push(args, args.source, args.output_dir, args.push_to_hub)
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


def _run_all_original(args: argparse.Namespace) -> int:
    if args.source or args.output_dir or args.push_to_hub:
        print("error: --all-original takes --output-dir and --org, not SRC, DST or --push-to-hub.", file=sys.stderr)
        return 2
    if not args.output_dir_all:
        print("error: --all-original needs --output-dir DIR.", file=sys.stderr)
        return 2
    plan = plan_original_release(args.output_dir_all, args.org, args.source_org, args.source_root, args.only)
    header = "Dry run: nothing is downloaded, written or uploaded." if args.dry_run else ""
    print(f"Converting {len(plan)} original CLIP-FlanT5 checkpoint(s). {header}".rstrip())
    print(format_plan(plan))
    if args.dry_run:
        return 0
    failures = []
    for step in plan:
        try:
            _convert_and_push(args, step.source, step.output_dir, step.push_to, step.checkpoint)
        except (OSError, ValueError) as error:
            failures.append(step.checkpoint.name)
            print(f"error: {step.checkpoint.name}: {error}", file=sys.stderr)
    print(
        f"Done: {len(plan) - len(failures)} converted, {len(failures)} failed{': ' if failures else ''}{', '.join(failures)}"
    )
    return 1 if failures else 0


def _card_summary(checkpoint: OriginalCheckpoint) -> str:
    count = len(published_results(checkpoint.name))
    return f"{checkpoint.title}" + (f" + {count} published results" if count else "")


def format_plan(plan: list[PlannedConversion]) -> str:
    """A readable table of `plan`."""
    rows = [("kind", "source", "output folder", "push to", "card")]
    for step in plan:
        rows.append(
            (
                step.checkpoint.kind,
                step.source,
                str(step.output_dir),
                step.push_to or "(not pushed)",
                _card_summary(step.checkpoint),
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows)


def register(subparsers) -> None:
    help = "convert an original CLIP-FlanT5 checkpoint (or the whole original release) and optionally push it"
    add_arguments(add_command(subparsers, "convert", run, help, DESCRIPTION, EPILOG))
