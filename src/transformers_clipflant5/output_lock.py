# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""One writer per output: an exclusive lock on a score file, a conversion's destination or a training output folder.

The lock is `filelock`'s (`flock(2)` on Unix) on a hidden file `.<output name>.lock` beside the output; who holds it
(host, pid, command) is written to `.<output name>.lock.holder` once the lock is taken (and removed on release), so
that a second run can say who writes there. The kernel drops the lock when its holder exits, however it exits
(SIGKILL, a node crash on a local disk): a leftover `.lock` file blocks nobody. It is kept on release (deleting a lock
file others may have opened lets two runs lock two different files), and may be deleted whenever no run is going.

Which filesystems the lock works on is in `docs/robustness.md`: local filesystems always; NFS v4 (and v3 with its
lock daemon) across machines; Lustre only when mounted with `-o flock`. Where `flock` is not supported at all,
filelock 4 uses its own marker-file lock; with older filelock versions the run goes on unlocked, with a warning.
"""

import json
import os
import socket
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from errno import ENOLCK, ENOSYS, EOPNOTSUPP
from pathlib import Path

from filelock import FileLock, Timeout


# What a filesystem without flock answers (Lustre without -o flock, NFS mounted with nolock on some kernels).
_NO_LOCKING_ERRNOS = (ENOLCK, ENOSYS, EOPNOTSUPP)


class OutputInUseError(OSError):
    """Another run holds the lock on an output: it is writing there now (an `OSError`, as the output cannot be
    written)."""


def lock_path(output: str | os.PathLike) -> Path:
    """The lock file of `output` (a file or a folder): `.<output name>.lock`, beside it."""
    output = Path(output)
    return output.with_name(f".{output.name}.lock")


def _holder_path(output: Path) -> Path:
    return output.with_name(f".{output.name}.lock.holder")


def read_holder(output: str | os.PathLike) -> dict | None:
    """Who holds (or last held) the lock on `output`, as it recorded itself: host, pid, command; None if unknown."""
    output = Path(output)
    try:
        holder = json.loads(_holder_path(output).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) else None


def describe_holder(holder: dict | None) -> str:
    if not holder:
        return "another process (it has not recorded its host and pid yet)"
    return (
        f"process {holder.get('pid')} on host {holder.get('host')} ({holder.get('command', 'command not recorded')})"
    )


@contextmanager
def exclusive_output(output: str | os.PathLike, what: str = "the output") -> Iterator[None]:
    """
    Hold the exclusive lock on `output` (a file or folder, which need not exist yet) for the body, or raise
    [`OutputInUseError`] at once, naming `output` and the run holding it. `what` names the output in messages (e.g.
    "--output", "DST", "output_dir"). The folder that holds `output` must exist.
    """
    output = Path(output)
    lock = FileLock(str(lock_path(output)), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        instead = f"choose another {what.removeprefix('the ')}" if what.startswith("the ") else f"pass another {what}"
        raise OutputInUseError(
            f"{what} {output} is being written by {describe_holder(read_holder(output))}: one run per output at a "
            f"time. Wait for that run to end (a run that was killed releases its lock when its process is gone), or "
            f"{instead}."
        ) from None
    except (OSError, NotImplementedError) as error:
        # filelock 3 raises NotImplementedError where flock is missing; filelock 4 falls back to its own lock file.
        if isinstance(error, OSError) and error.errno not in _NO_LOCKING_ERRNOS:
            raise
        warnings.warn(
            f"{what} {output}: this filesystem does not support file locks ({error}); going on without one, so a "
            "second run on the same output would not be refused (see docs/robustness.md).",
            stacklevel=3,
        )
        yield
        return
    holder_file = _holder_path(output)
    try:
        try:
            _write_holder(holder_file)
        except OSError:
            # A full disk, say: the lock holds all the same, only a second run cannot name its holder.
            pass
        yield
    finally:
        holder_file.unlink(missing_ok=True)
        lock.release()


def _write_holder(path: Path) -> None:
    record = {"host": socket.gethostname(), "pid": os.getpid(), "command": " ".join(sys.argv)[:500]}
    temporary = path.with_name(f"{path.name}.{os.getpid()}")
    temporary.write_text(json.dumps(record), encoding="utf-8")
    os.replace(temporary, path)


__all__ = ["OutputInUseError", "describe_holder", "exclusive_output", "lock_path", "read_holder"]
