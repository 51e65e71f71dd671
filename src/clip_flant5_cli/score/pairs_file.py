# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""The pairs file `clip-flant5 score --pairs` reads: JSON lines or CSV/TSV rows of (image, text[, id]), each row
checked on its own so that a bad row is reported and skipped, never fatal to the others."""

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers_clipflant5.json_rows import json_lines, read_json_rows

from .checks import ScoreFileError


@dataclass
class PairRow:
    """One row of a pairs file; `problem` says why it cannot be scored, if so."""

    index: int
    line: int
    id: Any = None
    image: str | None = None
    text: str | None = None
    problem: str | None = None
    # A video row (`"video"` instead of `"image"`) and how its frames are scored (see videos.py).
    video: str | None = None
    video_frames: str | None = None

    def record(self, score: float) -> dict[str, Any]:
        if self.video is not None:
            from .videos import video_record

            return video_record(self, score)
        return {"row": self.index, "id": self.id, "image": self.image, "text": self.text, "score": score}


def read_pairs(path: Path) -> list[PairRow]:
    """The rows of a JSONL, JSON (a list of objects, as `clip-flant5 eval --write-pairs` writes), CSV or TSV pairs
    file; rows that cannot be scored carry a `problem` instead of raising. In a JSON list a row's "line" is its
    position in the list (from 1)."""
    if not path.is_file():
        raise ScoreFileError(f"Pairs file not found: {path}")
    suffix = path.suffix.lower()
    if suffix not in (".jsonl", ".json", ".csv", ".tsv"):
        raise ScoreFileError(f"Unknown pairs file type {path.suffix!r} ({path}): use .jsonl, .json, .csv or .tsv.")
    if suffix == ".json":
        rows = [_pair_row(index, index + 1, data) for index, data in enumerate(read_json_rows(path, ScoreFileError))]
        for row in rows:
            row.problem = row.problem or _row_problem(row)
        return rows
    text = _read_text(path)
    if suffix == ".jsonl":
        rows = _read_jsonl_pairs(text)
    else:
        rows = _read_csv_pairs(path, text, delimiter="\t" if suffix == ".tsv" else ",")
    for row in rows:
        if row.problem is None:
            row.problem = _row_problem(row)
    return rows


def _read_text(path: Path) -> str:
    """The text of `path`, UTF-8 with or without the byte order mark that Excel's "CSV UTF-8" writes."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        # error.object: what was decoded, the byte order mark left out.
        line_number = error.object.count(b"\n", 0, error.start) + 1
        raise ScoreFileError(
            f"{path} line {line_number} is not UTF-8 text ({error.reason}: {error.object[error.start : error.end]!r})"
            ": save the pairs file as UTF-8 (in Excel: CSV UTF-8) and run again."
        ) from error


def _read_jsonl_pairs(text: str) -> list[PairRow]:
    rows = []
    # Lines split as a file opened in text mode splits them (\n, \r\n or \r).
    with io.StringIO(text, newline=None) as handle:
        for line_number, data in json_lines(handle):
            if isinstance(data, json.JSONDecodeError):
                rows.append(PairRow(index=len(rows), line=line_number, problem=f"not valid JSON ({data})"))
            else:
                rows.append(_pair_row(len(rows), line_number, data))
    return rows


def _pair_row(index: int, line: int, data: Any) -> PairRow:
    if isinstance(data, dict):
        row = PairRow(index=index, line=line, id=data.get("id"), image=data.get("image"), text=data.get("text"))
        row.video = data.get("video")
        return row
    problem = f"expected a JSON object with 'image' and 'text', got {type(data).__name__}"
    return PairRow(index=index, line=line, problem=problem)


def _read_csv_pairs(path: Path, text: str, delimiter: str) -> list[PairRow]:
    # Line ends left to the csv reader, as it requires (quoted fields may hold them).
    with io.StringIO(text, newline="") as handle:
        reader = csv.DictReader(handle, delimiter=delimiter)
        columns = set(reader.fieldnames or [])
        missing = {"image" if "video" not in columns else "video", "text"} - columns
        if missing:
            raise ScoreFileError(
                f"{path} has no column(s) {sorted(missing)} in its header {reader.fieldnames}; it needs 'image' and "
                "'text' (and optionally 'id')."
            )
        rows = []
        for record in reader:
            # The reader's line_num is the line the record ended on (quoted fields may span lines).
            row = PairRow(index=len(rows), line=reader.line_num, image=record.get("image"), text=record["text"])
            row.video = record.get("video") or None
            if "video" in columns and not row.image:
                row.image = None  # an empty cell: the row names its video (or nothing)
            row.id = record.get("id") or None
            # Fields beyond the header's (the reader keeps them under None): most likely a text with an unquoted
            # delimiter, which would otherwise be scored cut at it.
            extra = record.get(None)
            if extra:
                name = "tab" if delimiter == "\t" else "comma"
                row.problem = (
                    f"{len(reader.fieldnames) + len(extra)} fields, the header has {len(reader.fieldnames)}: put "
                    f'double quotes around a text that contains a {name} ("a red circle{delimiter} on the left")'
                )
            rows.append(row)
    return rows


def _row_problem(row: PairRow) -> str | None:
    from transformers_clipflant5.scoring.prompts import check_text

    if row.video is not None:
        if row.image is not None:
            return "both 'image' and 'video': a row scores one of them"
        if not isinstance(row.video, str) or not row.video.strip():
            return f"'video' must be a non-empty path string, got {row.video!r}"
    elif row.image is None:
        return "no 'image' field: every row needs the path of its image (or 'video', of its video)"
    elif not isinstance(row.image, str) or not row.image.strip():
        return f"'image' must be a non-empty path string, got {row.image!r}"
    if row.text is None:
        return "no 'text' field: every row needs the text to score its image with"
    try:
        check_text(row.text, "'text'")
    except (TypeError, ValueError) as error:
        return str(error)
    return None
