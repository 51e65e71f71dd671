# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""Which training checkpoints are complete, which one a run resumes from, and how the final folder is put in place.

A folder is complete when it holds [`COMPLETE_MARKER`], written (and forced to disk) after every other file of the
save, and every file the marker lists is there with the size it records. A save killed part-way (a SIGKILL, a node
lost, a full disk) leaves a folder without the marker, or with files shorter than it says: such a folder is never
resumed from. Transformers' `get_last_checkpoint` picks the highest step whatever its state, which after a cut save
is the broken folder; [`resolve_resume_checkpoint`] picks the last complete one and says which.
"""

import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR


COMPLETE_MARKER = "save_complete.json"
_CHECKPOINT_NAME = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")


def _fsync(path: Path) -> None:
    # A directory is opened read-only to sync its entries; a file to push its bytes to disk before the marker says so.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def mark_complete(folder: str | os.PathLike, names: list[str] | None = None) -> None:
    """Write the marker of a finished save in `folder` once its files are on disk, listing each with its size: the
    files `names` (relative paths), or every file below `folder`."""
    folder = Path(folder)
    if names is None:
        names = [path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file()]
    files = {}
    for name in sorted(names):
        if name != COMPLETE_MARKER:
            _fsync(folder / name)
            files[name] = (folder / name).stat().st_size
    temporary = folder / f".{COMPLETE_MARKER}.tmp"
    temporary.write_text(json.dumps({"files": files}, indent=1), encoding="utf-8")
    _fsync(temporary)
    os.replace(temporary, folder / COMPLETE_MARKER)
    _fsync(folder)


def unmark_complete(folder: str | os.PathLike) -> None:
    """Remove the marker before `folder` is written again, so that a save cut short there never looks complete."""
    (Path(folder) / COMPLETE_MARKER).unlink(missing_ok=True)


def completeness_problem(folder: str | os.PathLike) -> str | None:
    """Why `folder` is not a complete save (None if it is)."""
    folder = Path(folder)
    if not folder.is_dir():
        return "it is not a folder"
    try:
        files = json.loads((folder / COMPLETE_MARKER).read_text(encoding="utf-8"))["files"]
    except FileNotFoundError:
        return f"it has no {COMPLETE_MARKER}: its save was cut short (or it was written by another tool)"
    except (OSError, ValueError, KeyError, TypeError) as error:
        return f"its {COMPLETE_MARKER} cannot be read ({error})"
    for name, size in files.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != size:
            return f"{name} has {path.stat().st_size} bytes instead of {size}: it was cut short or changed"
    return None


def checkpoint_folders(output_dir: str | os.PathLike) -> list[Path]:
    """The `checkpoint-<step>` folders of `output_dir`, by step, the last one last."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    found = [(int(m.group(1)), path) for path in output_dir.iterdir() if (m := _CHECKPOINT_NAME.match(path.name))]
    return [path for _, path in sorted(found) if path.is_dir()]


def last_complete_checkpoint(output_dir: str | os.PathLike) -> tuple[Path | None, dict[Path, str]]:
    """The last complete checkpoint of `output_dir` (None if there is none), and the later ones it skipped, each with
    why it is not complete."""
    skipped = {}
    for folder in reversed(checkpoint_folders(output_dir)):
        problem = completeness_problem(folder)
        if problem is None:
            return folder, skipped
        skipped[folder] = problem
    return None, skipped


def resolve_resume_checkpoint(
    resume: str | bool | None, output_dir: str | os.PathLike, say: Callable[[str], None] = print
) -> str | None:
    """
    What to hand `Trainer.train(resume_from_checkpoint=...)`: `True` (or the string "true", as a command line gives
    it) becomes the last complete checkpoint of `output_dir`; a path must be a complete checkpoint. Raises
    `ValueError` naming the problem and the checkpoint to use instead. Says on stdout which checkpoint is resumed from
    and which later ones were skipped (with `say`).
    """
    if resume is None or resume is False:
        return None
    if isinstance(resume, str) and resume.strip().lower() in ("true", "false") and not Path(resume).exists():
        if resume.strip().lower() == "false":
            return None
        resume = True
    last, skipped = last_complete_checkpoint(output_dir)
    if resume is True:
        for folder, problem in skipped.items():
            say(f"Skipping {folder}: {problem}.")
        if last is None:
            raise ValueError(
                f"--resume_from_checkpoint: {output_dir} holds no complete checkpoint"
                + (f" ({len(skipped)} cut short)" if skipped else "")
                + ": start without --resume_from_checkpoint, or pass the path of a checkpoint folder."
            )
        say(f"Resuming from {last}, the last complete checkpoint.")
        return str(last)
    problem = completeness_problem(resume)
    if problem is not None:
        instead = f" Resume from {last}, the last complete one, instead." if last is not None else ""
        raise ValueError(f"--resume_from_checkpoint {resume} is not a complete checkpoint: {problem}.{instead}")
    say(f"Resuming from {resume}.")
    return str(resume)


def remove_cut_checkpoint(folder: str | os.PathLike) -> None:
    """Delete `folder` if a save cut short left it (no marker): the save about to be made there would otherwise mix
    with its files."""
    folder = Path(folder)
    if folder.is_dir() and not (folder / COMPLETE_MARKER).is_file():
        shutil.rmtree(folder)


def publish_folder(staging: str | os.PathLike, folder: str | os.PathLike) -> None:
    """
    Move the complete save in `staging` into `folder` (which may hold other things: checkpoints, logs) so that a
    loader finds either the previous save, nothing, or the whole new one, never a mix: the previous save stops being
    loadable first (its marker and `config.json` go), the files of the previous save that the new one does not have
    are removed, the new files are renamed in with `config.json` last, and the marker is written after them. Renames
    within one filesystem: `staging` must be inside `folder` or beside it.
    """
    staging, folder = Path(staging), Path(folder)
    previous = listed_files(folder)
    unmark_complete(folder)
    (folder / "config.json").unlink(missing_ok=True)
    new = sorted(path.relative_to(staging).as_posix() for path in staging.rglob("*") if path.is_file())
    for name in set(previous) - set(new):
        (folder / name).unlink(missing_ok=True)
    for name in sorted(new, key=lambda name: name == "config.json"):
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging / name, target)
    shutil.rmtree(staging, ignore_errors=True)
    mark_complete(folder, new)


def listed_files(folder: str | os.PathLike) -> list[str]:
    """The files the marker of `folder` lists (none without a readable marker)."""
    try:
        return list(json.loads((Path(folder) / COMPLETE_MARKER).read_text(encoding="utf-8"))["files"])
    except (OSError, ValueError, KeyError, TypeError):
        return []


__all__ = [
    "COMPLETE_MARKER",
    "checkpoint_folders",
    "completeness_problem",
    "last_complete_checkpoint",
    "listed_files",
    "mark_complete",
    "publish_folder",
    "remove_cut_checkpoint",
    "resolve_resume_checkpoint",
    "unmark_complete",
]
