# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""`clip-flant5 convert`: original checkpoints to self-contained transformers Hub folders, optionally pushed.

The library is `hub.convert_original` (one checkpoint) and `original.release` (the whole original release); publishing
is `hub.publish`. The command's options and help are in `clip_flant5_cli.convert`.
"""

import argparse
import json
import sys
from pathlib import Path

from transformers_clipflant5.hub.convert_original import convert
from transformers_clipflant5.hub.model_card import published_results
from transformers_clipflant5.hub.model_source import LOAD_ERRORS, check_model_source, explain_load_error
from transformers_clipflant5.hub.publish import HUB_REPO_URL, check_repo_id, files_to_upload, folder_files, push_folder
from transformers_clipflant5.original.release import (
    OriginalCheckpoint,
    PlannedConversion,
    plan_original_release,
)


def _convert_and_push(
    args: argparse.Namespace,
    source: str,
    output_dir: str | Path,
    push_to: str | None,
    checkpoint: OriginalCheckpoint | None = None,
) -> None:
    # A missing folder, or a Hub repo that is not cached and cannot be reached, fails here at once (not after the
    # download's retries, blamed on the repo).
    check_model_source(source, "SRC", args.source_revision, args.cache_dir)
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
        _check_repo_ids(args, args.push_to_hub)
        if args.dry_run:
            push = f", then push to {args.push_to_hub}" if args.push_to_hub else ""
            print(f"Dry run: would convert {args.source} -> {args.output_dir}{push}. Nothing was read or written.")
            return 0
        _convert_and_push(args, args.source, args.output_dir, args.push_to_hub)
    except LOAD_ERRORS as error:
        print(f"error: {_error_message(args.source, error)}", file=sys.stderr)
        return 2
    return 0


def _error_message(source: str | None, error: BaseException) -> str:
    # A cut-off JSON file or a damaged weight file (safetensors, pickle) is named, instead of a bare message or a
    # traceback. Without a source (--all-original before its loop) the error is all there is to say.
    plain = isinstance(error, (OSError, ValueError)) and not isinstance(error, json.JSONDecodeError)
    return str(error) if plain or source is None else explain_load_error(source, error, "SRC")


def _check_repo_ids(args: argparse.Namespace, push_to: str | None) -> None:
    """Refuse a push target or --repo-id that cannot be used, before any conversion (exit status 2)."""
    if push_to:
        check_repo_id(push_to, "--push-to-hub" if args.push_to_hub else "--org", push=not args.dry_run)
    if args.repo_id:
        check_repo_id(args.repo_id, "--repo-id")


def _run_all_original(args: argparse.Namespace) -> int:
    if args.source or args.output_dir or args.push_to_hub:
        print("error: --all-original takes --output-dir and --org, not SRC, DST or --push-to-hub.", file=sys.stderr)
        return 2
    if not args.output_dir_all:
        print("error: --all-original needs --output-dir DIR.", file=sys.stderr)
        return 2
    plan = plan_original_release(args.output_dir_all, args.org, args.source_org, args.source_root, args.only)
    # Every push target is --org/<name>: one checks --org for all.
    _check_repo_ids(args, plan[0].push_to if plan else None)
    header = "Dry run: nothing is downloaded, written or uploaded." if args.dry_run else ""
    print(f"Converting {len(plan)} original CLIP-FlanT5 checkpoint(s). {header}".rstrip())
    print(format_plan(plan))
    if args.dry_run:
        return 0
    failures = []
    for step in plan:
        try:
            _convert_and_push(args, step.source, step.output_dir, step.push_to, step.checkpoint)
        except LOAD_ERRORS as error:
            # Whatever one checkpoint's files raise, the others are still converted; the exit status says it.
            failures.append(step.checkpoint.name)
            print(f"error: {step.checkpoint.name}: {_error_message(step.source, error)}", file=sys.stderr)
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
