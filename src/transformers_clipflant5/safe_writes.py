# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""Appending records to a file so that it stays valid whatever stops the writer.

[`LineAppender`] writes whole lines with `os.write` (no Python buffer that could drop or hold back bytes when a
write fails) and forces each batch to disk. When a write fails (a full disk, a quota, an I/O error) it cuts the file
back to the end of its last complete line, which needs no space, and raises [`AppendFailed`] saying how many lines
are safely there. A process killed mid-write can leave only the start of one line at the end of the file: readers
ignore it and the next writer cuts it (`cut_unfinished_line`).
"""

import os
import sys
from pathlib import Path


class AppendFailed(OSError):
    """A batch of lines could not be written; the file holds every line written before it, and nothing else."""

    def __init__(self, path: Path, error: OSError, lines_on_disk: int):
        self.path = path
        self.error = error
        self.lines_on_disk = lines_on_disk
        super().__init__(error.errno, f"{path}: {error.strerror or error}")


class LineAppender:
    """
    Append lines to `path`, batch by batch: `append(lines)` returns once they are on disk (written and fsync'ed), or
    raises [`AppendFailed`] with the file cut back to the lines before the batch. `lines_on_disk` counts the lines
    appended by this appender (the file may hold more from before). The file must end with a complete line (or be
    empty) when it is opened: see `cut_unfinished_line`.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.lines_on_disk = 0
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
        self._end = os.fstat(self._fd).st_size

    def append(self, lines: list[str]) -> None:
        data = "".join(line + "\n" for line in lines).encode("utf-8")
        view = memoryview(data)
        try:
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
            os.fsync(self._fd)
        except OSError as error:
            # Cutting the file frees space, so it works on a full disk; if it fails too the cut line is left for the
            # next run to remove.
            try:
                os.ftruncate(self._fd, self._end)
                os.fsync(self._fd)
            except OSError:
                pass
            raise AppendFailed(self.path, error, self.lines_on_disk) from error
        self._end += len(data)
        self.lines_on_disk += len(lines)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> "LineAppender":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def cut_unfinished_line(path: str | os.PathLike, end: int, what: str = "record") -> bool:
    """Cut `path` back to byte `end` (where its last complete line ends) if anything follows it, saying so on stderr;
    True if it cut. The caller has checked that what follows is the start of a line left unfinished by a writer that
    was stopped."""
    path = Path(path)
    size = path.stat().st_size
    if size == end:
        return False
    print(
        f"warning: {path} ended with an unfinished {what} ({size - end} bytes, left by a run that was stopped while "
        "writing it): removed; its row is scored again.",
        file=sys.stderr,
    )
    os.truncate(path, end)
    return True


__all__ = ["AppendFailed", "LineAppender", "cut_unfinished_line"]
