# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""Telling a user, in one line, why a `--model` (a local folder or a Hub repo id) cannot be used.

transformers reports a mistyped local folder as a Hub repo it could not reach, a cut-off `config.json` without its
name, and a damaged `model.safetensors` with a long traceback; these helpers name the folder or file and what to do.
"""

import difflib
import json
import os
import pickle
import re
from pathlib import Path

from safetensors import SafetensorError, safe_open

from ..original.pickles import pickle_problem


# What loading a model or processor raises for an unusable source (missing, unreachable, cut off, damaged).
# ImportError: a backend the loading needs (a --quantization one) is not installed.
LOAD_ERRORS = (OSError, ValueError, RuntimeError, ImportError, SafetensorError, pickle.UnpicklingError, EOFError)
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?$")


class ModelSourceError(OSError):
    """A model source that cannot be used; the message names it and says what to do."""


def _missing_folder_message(name: str) -> str:
    path = Path(name).expanduser()
    parent = path.parent
    while not parent.is_dir() and parent != parent.parent:
        parent = parent.parent
    message = f"there is no folder {name}"
    if parent.is_dir():
        siblings = [entry.name for entry in parent.iterdir() if entry.is_dir()]
        close = difflib.get_close_matches(path.name, siblings, n=3)
        if close and parent == path.parent:
            message += f" (did you mean {', '.join(str(parent / match) for match in close)}?)"
    return message


def names_a_local_folder(name: str | os.PathLike) -> bool:
    """Whether `name`, not a folder, can only be meant as one ("./x", "a/b/c", "~/x") or may well be ("outputs/nope"
    where `outputs` is a folder here): then a missing folder is the first thing to report, not the Hub."""
    path = Path(os.fspath(name)).expanduser()
    return not _REPO_ID.match(os.fspath(name)) or (path.parent != Path(".") and path.parent.is_dir())


def check_model_source(
    name: str | os.PathLike, argument: str = "--model", revision: str | None = None, cache_dir: str | None = None
) -> None:
    """
    Raise [`ModelSourceError`], fast, when `name` cannot be loaded: a path that is not a folder (a typo is reported as
    a missing folder, not as an unreachable Hub repo), or a Hub repo id that is neither in the Hugging Face cache nor
    reachable (one request, no retries: offline, unknown, private or gated). `argument` names it in the message.
    """
    name = os.fspath(name)
    path = Path(name).expanduser()
    if path.is_dir():
        return
    if path.exists():
        raise ModelSourceError(
            f"{argument} {name} is a file; pass the folder that holds config.json, or a Hub repo id."
        )
    if not _REPO_ID.match(name):
        raise ModelSourceError(f"Cannot load {argument} {name}: {_missing_folder_message(name)}.")
    from huggingface_hub import HfApi, constants, try_to_load_from_cache
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    if isinstance(try_to_load_from_cache(name, "config.json", cache_dir=cache_dir, revision=revision), str):
        return
    local = f"{_missing_folder_message(name)}, and " if path.parent != Path(".") and path.parent.is_dir() else ""
    if constants.HF_HUB_OFFLINE:
        raise ModelSourceError(
            f"Cannot load {argument} {name}: {local}the Hub repo {name} is not in the Hugging Face cache and "
            "HF_HUB_OFFLINE=1 forbids downloading it. Download it once with network access, or pass a local folder."
        )
    try:
        HfApi().model_info(name, revision=revision, timeout=constants.HF_HUB_ETAG_TIMEOUT)
    except GatedRepoError as error:
        reason = f"the Hub repo is gated: accept its terms on the Hub and log in (`hf auth login`) ({error})"
    except RevisionNotFoundError:
        reason = f"the Hub repo has no revision {revision!r}"
    except RepositoryNotFoundError:
        reason = "there is no such Hub repo (or it is private: log in with `hf auth login`)"
    except Exception as error:  # noqa: BLE001 - any transport error means the same: the Hub cannot be reached
        reason = f"the Hugging Face Hub cannot be reached ({type(error).__name__}: {_one_line(error)})"
    else:
        return
    raise ModelSourceError(f"Cannot load {argument} {name}: {local}{reason}.")


def _damaged_files(folder: Path) -> list[str]:
    """The JSON files that do not parse, the safetensors files whose header cannot be read and the pickled weights
    that cannot be loaded (cut off, or refused by `weights_only=True` as holding more than tensors), in `folder`."""
    problems = []
    for path in sorted(folder.glob("*.json")):
        try:
            json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            problems.append(f"{path} is not valid JSON, perhaps cut off ({error})")
    for path in sorted(folder.glob("*.safetensors")):
        try:
            with safe_open(path, framework="pt"):
                pass
        except (OSError, SafetensorError) as error:
            problems.append(f"{path} cannot be read, perhaps cut off or damaged ({error})")
    # The weight files transformers loads from a folder; other pickles there (training_args.bin) are not weights.
    problems.extend(problem for path in sorted(folder.glob("pytorch_model*.bin")) if (problem := pickle_problem(path)))
    return problems


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def explain_load_error(name: str | os.PathLike, error: BaseException, argument: str = "--model") -> str:
    """One line saying why the model or processor at `name` failed to load with `error`, naming the bad file."""
    name = os.fspath(name)
    path = Path(name).expanduser()
    if path.is_dir():
        damaged = _damaged_files(path)
        if damaged:
            return f"Cannot load {argument} {name}: {'; '.join(damaged)}. Download, convert or save it again."
        return f"Cannot load {argument} {name} ({type(error).__name__}): {_one_line(error)}"
    reason = _one_line(error)
    if path.parent != Path(".") and path.parent.is_dir():
        # `outputs/clip-flant5-dmo` reads as a Hub repo id too; the existing `outputs/` says it was meant locally.
        return f"Cannot load {argument} {name}: {_missing_folder_message(name)}, and as a Hub repo id: {reason}"
    return f"Cannot load {argument} {name} as a local folder or a Hub repo id: {reason}"


__all__ = ["LOAD_ERRORS", "ModelSourceError", "check_model_source", "explain_load_error", "names_a_local_folder"]
