# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""Loading the model of `clip-flant5 score`, and what the command checks before it does: that --output can be
written, that --model can be read (its processor first), and that every text fits the tokenizer."""

import argparse
import os
from pathlib import Path
from typing import Any


class ScoreUsageError(Exception):
    """An option, file or model the command cannot go on with (exit status 2); the message says what to do."""


class ScoreFileError(ScoreUsageError):
    """A pairs or output file that cannot be used as it is (the message says what to do)."""


def check_arguments(args: argparse.Namespace) -> None:
    """Raise [`ScoreUsageError`] for a --batch-size, --device or --dtype that cannot be used, before anything loads."""

    from transformers_clipflant5.scoring.devices import resolve_device, resolve_dtype
    from transformers_clipflant5.scoring.plan import check_batch_size

    try:
        check_batch_size(args.batch_size)
    except ValueError as error:
        raise ScoreUsageError(f"--batch-size: {error}") from error
    try:
        device = resolve_device(args.device)
    except ValueError as error:
        raise ScoreUsageError(f"--device: {error}") from error
    try:
        resolve_dtype(args.dtype, device)
    except ValueError as error:
        raise ScoreUsageError(f"--dtype: {error}") from error


def check_output_path(output: Path, pairs: Path | None = None) -> None:
    """Raise [`ScoreFileError`] when scores cannot be written to `output` (checked before the model loads), or when
    `output` is the `pairs` file itself (by any name: a symlink or a hard link too)."""
    folder = output.parent
    if pairs is not None and output.exists() and pairs.exists() and os.path.samefile(output, pairs):
        raise ScoreFileError(
            f"--output {output} is the pairs file {pairs}: the scores would be written into it. Pass another --output, "
            "such as scores.jsonl."
        )
    if output.is_dir():
        raise ScoreFileError(f"--output {output} is a folder; pass a file name such as {output / 'scores.jsonl'}.")
    if output.exists() and not output.is_file():
        # A pipe or device cannot be read back to resume (and opening a pipe waits for a reader).
        raise ScoreFileError(f"--output {output} is not a regular file; pass a file name such as scores.jsonl.")
    if not folder.exists():
        raise ScoreFileError(f"--output {output}: the folder {folder} does not exist; create it first.")
    if not folder.is_dir():
        raise ScoreFileError(f"--output {output}: {folder} is a file, not a folder; choose another --output.")
    if not os.access(folder, os.W_OK) or (output.exists() and not os.access(output, os.W_OK)):
        raise ScoreFileError(f"--output {output} cannot be written (permission denied); choose another --output.")
    # Permissions do not tell everything (a read-only or special filesystem, such as /proc, even for root): try it.
    existed = output.exists()
    try:
        with open(output, "a", encoding="utf-8"):
            pass
    except OSError as error:
        raise ScoreFileError(
            f"--output {output} cannot be written ({error.strerror or error}); choose another --output."
        ) from error
    if not existed:
        output.unlink(missing_ok=True)


def load_processor(args: argparse.Namespace):
    """The processor of --model, loaded before the model: it is enough to check the templates and every text's
    length."""
    from transformers_clipflant5.hub.model_source import LOAD_ERRORS, explain_load_error
    from transformers_clipflant5.processing_clip_flant5 import CLIPFlanT5Processor

    kwargs = {"revision": args.revision} if args.revision else {}
    try:
        processor = CLIPFlanT5Processor.from_pretrained(args.model, **kwargs)
    except LOAD_ERRORS as error:
        raise ScoreFileError(explain_load_error(args.model, error)) from error
    _check_templates(args, processor.image_token)
    return processor


def _check_templates(args: argparse.Namespace, image_token: str) -> None:
    """Raise [`ScoreUsageError`] for a --question-template or --answer-template the scorer would refuse."""
    from transformers_clipflant5.scoring.prompts import check_answer_template, check_question_template

    for option, template, check in (
        ("--question-template", args.question_template, check_question_template),
        ("--answer-template", args.answer_template, check_answer_template),
    ):
        if template is not None:
            try:
                check(template, image_token)
            except ValueError as error:
                raise ScoreUsageError(f"{option}: {error}") from error


def text_problem(processor, text: str, where: str, args: argparse.Namespace) -> str | None:
    """Why `text` cannot be scored with `processor` and the templates of `args`, or None."""
    from transformers_clipflant5.scoring.prompts import fit_text
    from transformers_clipflant5.scoring.vqascore import DEFAULT_ANSWER_TEMPLATE, DEFAULT_QUESTION_TEMPLATE

    try:
        fit_text(
            processor,
            text,
            where,
            args.question_template or DEFAULT_QUESTION_TEMPLATE,
            args.answer_template or DEFAULT_ANSWER_TEMPLATE,
            truncate=args.truncate_texts,
        )
    except ValueError as error:
        return str(error)
    return None


def _template_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    kwargs = {}
    if args.question_template is not None:
        kwargs["question_template"] = args.question_template
    if args.answer_template is not None:
        kwargs["answer_template"] = args.answer_template
    return kwargs


def load_scorer(args: argparse.Namespace, device=None):
    from transformers_clipflant5.hub.model_source import LOAD_ERRORS, explain_load_error
    from transformers_clipflant5.scoring.vqascore import VQAScore

    kwargs = {"revision": args.revision} if args.revision else {}
    if args.quantization is not None:
        kwargs["quantization"] = args.quantization
    if args.offload_folder is not None:
        kwargs.update(device_map="auto", offload_folder=str(args.offload_folder))
    try:
        return VQAScore.from_pretrained(
            args.model,
            dtype=args.dtype,
            device=device if device is not None else args.device,
            attn_implementation=args.attn_implementation,
            batch_size=args.batch_size,
            **_template_kwargs(args),
            **kwargs,
        )
    except LOAD_ERRORS as error:
        raise ScoreFileError(explain_load_error(args.model, error)) from error


__all__ = [
    "ScoreFileError",
    "ScoreUsageError",
    "check_arguments",
    "check_output_path",
    "load_processor",
    "load_scorer",
    "text_problem",
]
