# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""Training data for CLIP-FlanT5: reading the LLaVA JSON layout, flattening multi-turn conversations, and
validating every row (and image file) before training starts.

The LLaVA layout is a JSON list (or JSON lines) of `{"id", "image"?: path relative to an image folder,
"conversations": [{"from": "human" | "gpt", "value": str}, ...]}`. Rows without "image" are text-only.
"""

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..json_rows import read_json_rows
from ..processing_clip_flant5 import DEFAULT_IMAGE_TOKEN
from .templates import ROLES, STAGE1_TEMPLATES, TEMPLATES


# Columns of the training `datasets.Dataset`. The image column is not called "image": TRL treats a dataset with an
# "image" column as a vision dataset and changes how it prepares and filters it.
IMAGE_COLUMN = "image_file"
LENGTH_COLUMN = "length"


class DataValidationError(ValueError):
    """The training data has malformed rows or missing images; the message lists the first offenders and counts."""


@dataclass
class Offender:
    index: int
    sample_id: str
    reason: str

    def __str__(self) -> str:
        return f"row {self.index} (id {self.sample_id!r}): {self.reason}"


@dataclass
class ValidationReport:
    """What validation found in a LLaVA JSON file. `kept` is the number of rows that go to training."""

    total: int = 0
    kept: int = 0
    image_rows: int = 0
    text_rows: int = 0
    malformed: list[Offender] = field(default_factory=list)
    missing_images: list[Offender] = field(default_factory=list)
    skipped_missing_images: int = 0
    # Rows that needed a fix of the original data's defects (counted, reported, not fatal).
    placeholder_added: int = 0
    stray_placeholder_removed: int = 0
    max_offenders: int = 10

    def summary(self) -> str:
        lines = [
            f"{self.total} rows: {self.kept} kept ({self.image_rows} with an image, {self.text_rows} text-only), "
            f"{len(self.malformed)} malformed, {len(self.missing_images)} with a missing or empty image file"
            + (f" ({self.skipped_missing_images} skipped)" if self.skipped_missing_images else "")
            + "."
        ]
        if self.placeholder_added:
            lines.append(f"{self.placeholder_added} image rows had no '<image>' in their text; it was added.")
        if self.stray_placeholder_removed:
            lines.append(
                f"{self.stray_placeholder_removed} text-only rows carried a literal '<image>' (an artefact of the "
                "original flattening script); it was removed."
            )
        for title, offenders in (("Malformed rows", self.malformed), ("Missing images", self.missing_images)):
            if offenders:
                shown = offenders[: self.max_offenders]
                lines.append(f"{title} (first {len(shown)} of {len(offenders)}):")
                lines.extend(f"  - {offender}" for offender in shown)
        return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------------------
# Reading and flattening


def read_llava_json(path: str | os.PathLike) -> list[Any]:
    """Read a LLaVA JSON list (`.json`) or JSON lines (`.jsonl`) file (`FileNotFoundError` or `DataValidationError`)."""
    return read_json_rows(path, DataValidationError)


def flatten_conversations(
    samples: Sequence[dict[str, Any]],
) -> tuple[list[dict[str, Any]], dict[str, int], list[int]]:
    """
    Split multi-turn conversations into single-turn samples, as the original stage-2 data
    (`llava_v1_5_mix665k_flattened_multi_turn.json`) was made: a conversation of one question/answer pair is kept as it
    is; a longer one becomes one sample per question/answer pair without the earlier turns (nor a leading gpt turn,
    which training drops too, see `stage2_messages`), and every pair after the first gets `<image>\\n` before its
    question, unless that question already has one, so that it still sees the image. Unlike the original script,
    text-only conversations get no `<image>` (the original added it to them too, leaving a literal "<image>" string in
    rows without an image).

    A row that stage-2 validation would refuse is kept whole, unsplit, for validation to report it once with its reason
    (its pieces would be refused for reasons of their own, or pass as something the row never said).

    Returns the samples, counts, and for each sample the index of the input row it came from (for error messages that
    name the row of the file the user has).
    """
    bad = [i for i, s in enumerate(samples) if not isinstance(s, dict) or not isinstance(s.get("conversations"), list)]
    if bad:
        raise DataValidationError(
            f"Cannot flatten: {len(bad)} rows have no 'conversations' list (first: {bad[:10]}); is this LLaVA-layout "
            "data?"
        )
    flattened: list[dict[str, Any]] = []
    source_rows: list[int] = []
    single = multi = 0
    for index, sample in enumerate(samples):
        conversations = sample["conversations"]
        if _check_row(sample, "t5_v1")[0] is not None:
            flattened.append(sample)
            source_rows.append(index)
            continue
        messages = conversations[1:] if conversations[0]["from"] != "human" else conversations
        if len(messages) == 2:
            single += 1
            flattened.append(sample)
            source_rows.append(index)
            continue
        multi += 1
        has_image = sample.get("image") is not None
        for start in range(0, len(messages), 2):
            pair = [dict(message) for message in messages[start : start + 2]]
            if start > 0 and has_image and DEFAULT_IMAGE_TOKEN not in pair[0]["value"]:
                pair[0]["value"] = DEFAULT_IMAGE_TOKEN + "\n" + pair[0]["value"]
            flattened.append({**sample, "conversations": pair})
            source_rows.append(index)
    counts = {"samples": len(samples), "single_turn": single, "multi_turn": multi, "flattened": len(flattened)}
    return flattened, counts, source_rows


# ----------------------------------------------------------------------------------------------------------------------
# Validation


def _check_conversations(conversations: Any, template: str, has_image: bool) -> str | None:
    """Why a conversation list cannot be trained on with `template`, or None if it can."""
    if not isinstance(conversations, list) or not conversations:
        return "'conversations' must be a non-empty list"
    for position, message in enumerate(conversations):
        if not isinstance(message, dict):
            return f"message {position} must be an object with 'from' and 'value', got {type(message).__name__}"
        missing = [name for name in ("from", "value") if name not in message]
        if missing:
            return f"message {position} has no {' or '.join(repr(name) for name in missing)} field"
        if not isinstance(message["from"], str) or message["from"] not in ROLES:
            return f"message {position} has 'from' {message['from']!r}; expected 'human' or 'gpt'"
        if not isinstance(message["value"], str):
            return f"message {position} has a non-string 'value' ({type(message['value']).__name__})"
        if not message["value"].strip():
            # A blank question trains on nothing; a blank reply teaches the model to answer with EOS alone.
            return f"message {position} ({message['from']}) is empty; give it text or remove the row"
    if template in STAGE1_TEMPLATES:
        if not has_image:
            return f"template {template!r} (stage 1) needs an image in every row"
        if len(conversations) != 2 or [m["from"] for m in conversations] != ["human", "gpt"]:
            return f"template {template!r} needs exactly one human message followed by one gpt reply (the caption)"
        return None
    messages = conversations[1:] if conversations[0]["from"] != "human" else conversations
    if len(messages) < 2:
        return "needs at least one human message and one gpt reply"
    expected = ["human", "gpt"] * (len(messages) // 2 + 1)
    if [m["from"] for m in messages] != expected[: len(messages)]:
        return "messages must alternate human, gpt, human, gpt, ..."
    if messages[-1]["from"] != "gpt":
        return "the last message must be a gpt reply (the training target)"
    return None


def _check_row(sample: Any, template: str) -> tuple[str | None, list[dict[str, str]], str | None]:
    """
    `(reason, conversations, fix)`: why `sample` cannot be trained on with `template` (None if it can); its
    conversations as training reads them (only `from` and `value`, a stray '<image>' removed from a text-only row); and
    the fix that needed ("placeholder_added", "stray_placeholder_removed" or None), for the report to count.
    """
    if not isinstance(sample, dict):
        return f"a row must be an object, got {type(sample).__name__}", [], None
    image = sample.get("image")
    if image is not None and (not isinstance(image, str) or not image):
        return f"'image' must be a relative path string, got {image!r}", [], None
    reason = _check_conversations(sample.get("conversations"), template, image is not None)
    if reason is not None:
        return reason, [], None
    conversations = [{"from": m["from"], "value": m["value"]} for m in sample["conversations"]]
    fix = None
    if image is not None:
        if not any(DEFAULT_IMAGE_TOKEN in m["value"] for m in conversations if m["from"] == "human"):
            # The template puts the image at the start of the first question.
            fix = "placeholder_added"
    elif any(DEFAULT_IMAGE_TOKEN in m["value"] for m in conversations):
        for message in conversations:
            message["value"] = message["value"].replace(DEFAULT_IMAGE_TOKEN + "\n", "")
            message["value"] = message["value"].replace(DEFAULT_IMAGE_TOKEN, "")
        fix = "stray_placeholder_removed"
    if any(DEFAULT_IMAGE_TOKEN in m["value"] for m in conversations if m["from"] == "gpt"):
        return "a gpt reply contains '<image>'", conversations, None
    placeholders = sum(m["value"].count(DEFAULT_IMAGE_TOKEN) for m in conversations)
    if image is not None and placeholders > 1:
        # The template keeps one '<image>' at the start of the first question: the others would be dropped and the
        # question changed without a word.
        return (
            f"{placeholders} '<image>' placeholders for one image; keep one '<image>' (in the first question)",
            conversations,
            None,
        )
    return None, conversations, fix


def _image_ok(path: str) -> bool:
    try:
        return os.stat(path).st_size > 0
    except OSError:
        return False


def validate_llava_samples(
    samples: Sequence[Any],
    template: str,
    image_folder: str | os.PathLike | None = None,
    skip_missing_images: bool = False,
    check_images: bool = True,
    max_offenders: int = 10,
    num_threads: int = 16,
    row_numbers: Sequence[int] | None = None,
) -> tuple[list[dict[str, Any]], ValidationReport]:
    """
    Check every row for the layout `template` needs and every image file for existence (without decoding it, so that
    hundreds of thousands of rows check in seconds; an unreadable image still fails with its path when opened).

    Returns the normalised rows that go to training (columns `id`, `image_file`, `conversations`, `length`) and a
    [`ValidationReport`]. Raises [`DataValidationError`] listing the first offenders when a row is malformed, or when
    an image is missing and `skip_missing_images` is False. `row_numbers` are the row numbers to report for the
    samples (the input rows that flattened samples came from, see [`flatten_conversations`]); by default their
    positions.
    """
    if template not in TEMPLATES:
        raise ValueError(f"Unknown template {template!r}; choose one of {TEMPLATES}.")
    report = ValidationReport(total=len(samples), max_offenders=max_offenders)
    rows: list[dict[str, Any]] = []
    for position, sample in enumerate(samples):
        index = row_numbers[position] if row_numbers is not None else position
        sample_id = str(sample.get("id", index)) if isinstance(sample, dict) else str(index)
        reason, conversations, fix = _check_row(sample, template)
        if reason is not None:
            report.malformed.append(Offender(index, sample_id, reason))
            continue
        if fix == "placeholder_added":
            report.placeholder_added += 1
        elif fix == "stray_placeholder_removed":
            report.stray_placeholder_removed += 1
        image = sample.get("image")
        words = sum(len(m["value"].split()) for m in conversations)
        rows.append(
            {
                "id": sample_id,
                IMAGE_COLUMN: image,
                "conversations": conversations,
                # The original's modality lengths: word count, negative for text-only rows.
                LENGTH_COLUMN: words if image is not None else -words,
                "_index": position,
                "_row": index,
            }
        )

    if check_images:
        folder = Path(image_folder) if image_folder is not None else None
        image_rows = [row for row in rows if row[IMAGE_COLUMN] is not None]
        if image_rows and folder is None:
            raise DataValidationError(
                f"{len(image_rows)} rows name an image but no image folder was given (--image_folder)."
            )
        paths = sorted({row[IMAGE_COLUMN] for row in image_rows})
        # Threads: stat() releases the GIL and network file systems answer slowly one call at a time.
        with ThreadPoolExecutor(max_workers=num_threads) as pool:
            present = dict(zip(paths, pool.map(lambda name: _image_ok(str(folder / name)), paths)))
        missing_ids = set()
        for row in image_rows:
            if not present[row[IMAGE_COLUMN]]:
                report.missing_images.append(
                    Offender(row["_row"], row["id"], f"image {row[IMAGE_COLUMN]!r} missing or empty in {folder}")
                )
                missing_ids.add(row["_index"])
        if missing_ids and skip_missing_images:
            rows = [row for row in rows if row["_index"] not in missing_ids]
            report.skipped_missing_images = len(missing_ids)

    for row in rows:
        del row["_index"], row["_row"]
    report.kept = len(rows)
    report.image_rows = sum(row[IMAGE_COLUMN] is not None for row in rows)
    report.text_rows = report.kept - report.image_rows
    if report.malformed or (report.missing_images and not skip_missing_images):
        hint = (
            "Fix the rows listed above"
            + ("" if skip_missing_images or not report.missing_images else ", or pass --skip_missing_images")
            + "."
        )
        raise DataValidationError(f"Training data did not validate.\n{report.summary()}\n{hint}")
    if not rows:
        raise DataValidationError(f"No training rows left.\n{report.summary()}")
    return rows, report


def load_llava_dataset(
    data_path: str | os.PathLike,
    template: str,
    image_folder: str | os.PathLike | None = None,
    skip_missing_images: bool = False,
    flatten: bool = False,
    check_images: bool = True,
):
    """
    Read, optionally flatten, and validate a LLaVA JSON file into a `datasets.Dataset` with the columns `id`,
    `image_file`, `conversations` and `length`. Images stay on disk; the collator opens them batch by batch.
    Returns `(dataset, report)`.
    """
    from datasets import Dataset, Features, List, Value

    samples = read_llava_json(data_path)
    row_numbers = None
    if flatten:
        samples, _, row_numbers = flatten_conversations(samples)
    rows, report = validate_llava_samples(
        samples,
        template,
        image_folder,
        skip_missing_images=skip_missing_images,
        check_images=check_images,
        row_numbers=row_numbers,
    )
    features = Features(
        {
            "id": Value("string"),
            IMAGE_COLUMN: Value("string"),
            "conversations": List({"from": Value("string"), "value": Value("string")}),
            LENGTH_COLUMN: Value("int64"),
        }
    )
    return Dataset.from_list(rows, features=features), report


__all__ = [
    "IMAGE_COLUMN",
    "LENGTH_COLUMN",
    "DataValidationError",
    "ValidationReport",
    "flatten_conversations",
    "load_llava_dataset",
    "read_llava_json",
    "validate_llava_samples",
]
