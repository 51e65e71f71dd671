# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""The one reader of JSON row files: a JSON list (`.json`) or JSON lines (`.jsonl`, one value per line).

Training data (LLaVA JSON), benchmark files, pairs files and score outputs are all read through [`json_lines`] and
[`read_json_rows`], each caller choosing the exception its users expect.
"""

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO


def json_lines(lines: Iterable[str]) -> Iterator[tuple[int, Any]]:
    """
    `(line number, value)` for every non-blank line (numbered from 1). A line that is not valid JSON yields its
    `json.JSONDecodeError` as the value, so that a caller can report it, skip it or raise.
    """
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as error:
            yield number, error


def is_json_lines(path: str | os.PathLike) -> bool:
    """Whether `path` is read and written as JSON lines: its suffix is `.jsonl`, in any case (`OUT.JSONL` too)."""
    return Path(path).suffix.lower() == ".jsonl"


def read_json_rows(
    path: str | os.PathLike, error_type: type[Exception] = ValueError, objects_only: bool = False
) -> list[Any]:
    """
    The rows of a JSON lines file (suffix `.jsonl`, blank lines ignored) or of a JSON file holding a list (any other
    suffix), read as UTF-8 (a byte-order mark is allowed). Raises `FileNotFoundError` for a missing file (or a folder)
    and `error_type`, naming the file and line, for text that is not UTF-8, invalid JSON, a JSON document that is not
    a list, or (with `objects_only`) a row that is not an object.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is a folder, not a file." if path.is_dir() else f"File not found: {path}")
    try:
        # utf-8-sig: files saved by Windows editors start with a byte-order mark, which json refuses.
        with open(path, encoding="utf-8-sig") as handle:
            rows = (
                _read_json_lines(path, handle, error_type)
                if is_json_lines(path)
                else _read_json_list(path, handle, error_type)
            )
    except UnicodeDecodeError as error:
        raise error_type(
            f"{path} is not UTF-8 text (byte {error.start}: {error.reason}); re-save it as UTF-8."
        ) from error
    if objects_only:
        for index, row in enumerate(rows):
            if not isinstance(row, dict):
                raise error_type(f"{path} row {index} is a {type(row).__name__}, not an object.")
    return rows


def _read_json_lines(path: Path, handle: TextIO, error_type: type[Exception]) -> list[Any]:
    rows = []
    for number, value in json_lines(handle):
        if isinstance(value, json.JSONDecodeError):
            raise error_type(f"{path}, line {number}: not valid JSON ({value}).")
        rows.append(value)
    return rows


def _read_json_list(path: Path, handle: TextIO, error_type: type[Exception]) -> list[Any]:
    try:
        rows = json.load(handle)
    except json.JSONDecodeError as error:
        # "Extra data" after a first complete value is what a JSON lines file named .json gives.
        hint = (
            " If it holds one JSON value per line (JSON lines), name it .jsonl." if error.msg == "Extra data" else ""
        )
        raise error_type(f"{path} is not valid JSON ({error}).{hint}") from error
    if not isinstance(rows, list):
        raise error_type(
            f"{path} holds a JSON {type(rows).__name__}, not a list of rows (or write JSON lines, .jsonl)."
        )
    return rows


__all__ = ["is_json_lines", "json_lines", "read_json_rows"]
