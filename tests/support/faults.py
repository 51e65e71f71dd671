"""Faults injected into a real `clip-flant5` process, for the tests of what a run leaves when it is stopped.

Run as `python -m tests.support.faults ARGS...` (or under torchrun with `-m tests.support.faults`): the `clip-flant5`
command line with the fault named by the environment:

- `CLIP_FLANT5_FAULT=kill:<n>` / `enospc:<n>`: the n-th write of score lines (one per window of rows) puts one line
  and 10 bytes of the next on disk, then the process is SIGKILLed / the write fails with ENOSPC (a full disk);
- `CLIP_FLANT5_FAULT=hold:<ready file>:<go file>`: once the run holds its lock on --output it creates the ready file
  and waits for the go file before it scores;
- `CLIP_FLANT5_FAULT_RANK=<rank>`: only that process of a multi-process run has the fault.

`python -m tests.support.faults --hold-lock OUTPUT READY GO` holds the lock on OUTPUT (as a run writing there does),
creates READY, and lets go once GO exists.
"""

import errno
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
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
        import clip_flant5_cli.score.command as score_command

        ready, go = Path(settings[0]), Path(settings[1])
        score = score_command._score_pairs_file

        def held(*args, **kwargs):
            ready.touch()
            wait_for_file(go)
            return score(*args, **kwargs)

        score_command._score_pairs_file = held
    else:
        raise ValueError(f"unknown fault {fault!r}")


def wait_for_file(path: Path) -> None:
    deadline = time.monotonic() + _HOLD_LIMIT_S
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)


def hold_lock(output: str, ready: str, go: str) -> None:
    import importlib.util

    from tests.support.paths import REPO_ROOT

    # The module alone (standard library and filelock): importing the package would import torch, for seconds.
    spec = importlib.util.spec_from_file_location(
        "output_lock", REPO_ROOT / "src/transformers_clipflant5/output_lock.py"
    )
    output_lock = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(output_lock)
    with output_lock.exclusive_output(output):
        Path(ready).touch()
        wait_for_file(Path(go))


@contextmanager
def held_by_another_process(output: str | os.PathLike, scratch: Path) -> Iterator[subprocess.Popen]:
    """A process holding the lock on `output` for the body (the process is yielded, for its pid)."""
    from tests.support.paths import REPO_ROOT

    ready, go = scratch / "holder-ready", scratch / "holder-go"
    ready.unlink(missing_ok=True)
    go.unlink(missing_ok=True)
    environment = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO_ROOT / "src"), str(REPO_ROOT)]))
    holder = subprocess.Popen(
        [sys.executable, "-m", "tests.support.faults", "--hold-lock", str(output), str(ready), str(go)],
        cwd=REPO_ROOT,
        env=environment,
    )
    try:
        deadline = time.monotonic() + _HOLD_LIMIT_S
        while not ready.exists():
            assert holder.poll() is None and time.monotonic() < deadline, "the lock holder stopped or hung"
            time.sleep(0.05)
        yield holder
    finally:
        go.touch()
        holder.wait(timeout=_HOLD_LIMIT_S)


def main() -> None:
    if sys.argv[1:2] == ["--hold-lock"]:
        return hold_lock(*sys.argv[2:5])
    from clip_flant5_cli import main as cli

    fault = os.environ.get("CLIP_FLANT5_FAULT")
    rank = os.environ.get("CLIP_FLANT5_FAULT_RANK")
    if fault and (rank is None or rank == os.environ.get("RANK", "0")):
        install(fault)
    cli(sys.argv[1:])


if __name__ == "__main__":
    main()
