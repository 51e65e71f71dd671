"""What the processes of a multi-process (and multi-machine) `clip-flant5 score` run agree on: the rows already
scored, as the main process reads them, and whether every process's scores reached the main process's merge."""

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar


T = TypeVar("T")


def main_process_answer(state: Any, compute: Callable[[], T]) -> T:
    """`compute()` run by the main process only, its result (or the exception it raised) sent to every process.
    On a shared filesystem another machine's view of a file may lag behind the main process's, and the rows to split
    must be the same everywhere; an error reaches every process instead of leaving them waiting for the main one."""
    from accelerate.utils import broadcast_object_list

    answer: list[Any] = [None]
    if state.is_main_process:
        try:
            answer = [("result", compute())]
        except Exception as error:  # re-raised below, in every process
            answer = [("error", error)]
    if state.num_processes > 1:
        broadcast_object_list(answer)
    kind, value = answer[0]
    if kind == "error":
        raise value
    return value


def report_lost_rows(reports: list[tuple[int, list[int], Any]], merged: set[int], output: Path, suffix: str) -> bool:
    """Say on stderr which processes' scores are missing from the merged `output`; True if any are.

    `reports` holds (process, rows it wrote, ...) for every process."""
    lost = {process: len(set(written) - merged) for process, written, *_ in reports if set(written) - merged}
    if lost:
        print(
            f"error: the scores of process(es) {sorted(lost)} ({sum(lost.values())} rows) are not in {output.parent}: "
            f"each process appends to {output.name}{suffix}<process> there and the main process merges them, so on "
            "several machines --output must be on a filesystem they all share. The missing part files are on the "
            "other machines: copy them next to --output and run the same command again to merge them.",
            file=sys.stderr,
        )
    return bool(lost)
