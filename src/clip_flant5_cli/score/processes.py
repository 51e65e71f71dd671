"""What the processes of a multi-process (and multi-machine) `clip-flant5 score` run agree on: the rows already
scored, as the main process reads them, whether every process's scores reached the main process's merge, and what
is left when a process dies before the others are done."""

import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar


T = TypeVar("T")


class LauncherStopped(Exception):
    """The launcher (torchrun, accelerate) sent SIGTERM: another process of the run failed or was killed."""


@contextmanager
def stop_raises_on_sigterm() -> Iterator[None]:
    """While in the body, SIGTERM raises [`LauncherStopped`] (Python's default is to die at once): torchrun stops
    every process that way when one dies, and the main process must first say what the run left undone."""

    def stopped(signum, frame):
        raise LauncherStopped()

    previous = signal.signal(signal.SIGTERM, stopped)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


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


def report_unfinished_processes(
    assignments: dict[int, list[int]], on_disk: set[int], output: Path, main_stopped: bool
) -> None:
    """Say on stderr, for a run whose processes did not all finish, which processes left rows unscored and how many
    rows a re-run has to score. `assignments` holds the rows each process had to score in this run, `on_disk` the
    rows now in `output` and its part files."""
    left = {process: len(set(rows) - on_disk) for process, rows in sorted(assignments.items())}
    unfinished = ", ".join(
        f"process {process}{' (stopped by the launcher)' if process == 0 and main_stopped else ''}: {count} of "
        f"{len(assignments[process])} rows unscored"
        for process, count in left.items()
        if count
    )
    total_left = sum(left.values())
    print(
        f"error: the run stopped before all of its {len(assignments)} processes were done (one was killed or failed: "
        f"see its error, or the launcher's report, which names its rank). "
        + (f"{unfinished}. " if unfinished else "Every row of this run is on disk. ")
        + f"{len(on_disk)} rows are on disk in {output} and its part files; run the same command again to "
        + (f"score the {total_left} rows left" if total_left else "merge them")
        + " (rows on disk are kept, none is scored twice).",
        file=sys.stderr,
    )
