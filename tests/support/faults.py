"""Faults injected into a real `clip-flant5` process, for the tests of what a run leaves when it is stopped.

Run as `python -m tests.support.faults ARGS...` (or under torchrun with `-m tests.support.faults`): the `clip-flant5`
command line with the fault named by the environment:

- `CLIP_FLANT5_FAULT=kill:<n>` / `enospc:<n>`: the n-th write of score lines (one per window of rows) puts one line
  and 10 bytes of the next on disk, then the process is SIGKILLed / the write fails with ENOSPC (a full disk);
- `CLIP_FLANT5_FAULT=hold:<ready file>:<go file>`: once the run holds its lock on --output it creates the ready file
  and waits for the go file before it scores;
- `CLIP_FLANT5_FAULT_RANK=<rank>`: only that process of a multi-process run has the fault.
"""

import errno
import os
import signal
import sys
import time
from pathlib import Path


# A hang guard: a test that never creates the go file fails instead of stalling.
_HOLD_LIMIT_S = 600


class _FaultyOs:
    """The `os` module as `safe_writes` sees it, whose n-th `write` stops part-way."""

    def __init__(self, action: str, at_call: int):
        self.action, self.at_call, self.calls = action, at_call, 0

    def __getattr__(self, name):
        return getattr(os, name)

    def write(self, fd: int, data) -> int:
        self.calls += 1
        if self.calls != self.at_call:
            return os.write(fd, data)
        data = bytes(data)
        cut = data.index(b"\n") + 11
        os.write(fd, data[:cut])
        os.fsync(fd)
        if self.action == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def install(fault: str) -> None:
    kind, *settings = fault.split(":")
    if kind in ("kill", "enospc"):
        import transformers_clipflant5.safe_writes as safe_writes

        safe_writes.os = _FaultyOs(kind, int(settings[0]))
    elif kind == "hold":
        import transformers_clipflant5.commands.score as score_command

        ready, go = Path(settings[0]), Path(settings[1])
        score = score_command._score_pairs_file

        def held(*args, **kwargs):
            ready.touch()
            deadline = time.monotonic() + _HOLD_LIMIT_S
            while not go.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            return score(*args, **kwargs)

        score_command._score_pairs_file = held
    else:
        raise ValueError(f"unknown fault {fault!r}")


def main() -> None:
    from clip_flant5_cli import main as cli

    fault = os.environ.get("CLIP_FLANT5_FAULT")
    rank = os.environ.get("CLIP_FLANT5_FAULT_RANK")
    if fault and (rank is None or rank == os.environ.get("RANK", "0")):
        install(fault)
    cli(sys.argv[1:])


if __name__ == "__main__":
    main()
