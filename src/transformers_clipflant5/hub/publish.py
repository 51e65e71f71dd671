# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""Publishing a folder to the Hugging Face Hub in one commit, never with pickles or training state.

Used alike by `clip-flant5 convert --push-to-hub` and by the trainer's `push_to_hub` (`--push_to_hub`).
"""

from pathlib import Path

from huggingface_hub import CommitInfo, CommitOperationAdd, HfApi, constants
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import filter_repo_objects, validate_repo_id


PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
# Never published: pickles (training_args.bin above all, which unpickles arbitrary objects), optimizer and scheduler
# states, intermediate checkpoints, logs and caches. A training output folder can be pushed as it is.
PUSH_IGNORE_PATTERNS = [
    *(f"*{suffix}" for suffix in PICKLE_SUFFIXES),
    "*optimizer*",
    "*scheduler*",
    "*rng_state*",
    "checkpoint-*",
    "global_step*",
    "runs/*",
    "wandb/*",
    ".git/*",
    ".cache/*",
    "*__pycache__*",
    "*.lock",
    "*.tmp",
]
HUB_REPO_URL = "https://huggingface.co/{}"


def folder_files(folder: str | Path) -> list[str]:
    """Every file below `folder`, as sorted POSIX paths relative to it."""
    folder = Path(folder)
    return sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file())


def is_pickle(name: str) -> bool:
    """Whether the file `name` is a pickle by its suffix, in any case (`model.BIN` unpickles like `model.bin`)."""
    return name.lower().endswith(PICKLE_SUFFIXES)


def files_to_upload(folder: str | Path) -> list[str]:
    """The files of `folder` that [`push_folder`] uploads: everything but pickles, optimizer/scheduler states,
    intermediate checkpoints, logs and caches (see `PUSH_IGNORE_PATTERNS`), whatever the case of their names."""
    # The patterns are lower case; matching the lower-cased names makes them case-insensitive (`x.PT`, `Optimizer.pt`).
    return list(filter_repo_objects(folder_files(folder), ignore_patterns=PUSH_IGNORE_PATTERNS, key=str.lower))


def check_repo_id(repo_id: str, option: str = "--push-to-hub", *, push: bool = False) -> None:
    """
    Raise `ValueError` naming `option` if `repo_id` is not a Hub repo id (`name` or `namespace/name`), or, when the
    folder is to be pushed to it (`push`), if `HF_HUB_OFFLINE` forbids uploading: checked before converting, so
    that a conversion of many GB is not done for a push that cannot happen.
    """
    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise ValueError(
            f"{option} {repo_id!r} is not a Hub repo id: use 'name' or 'namespace/name', of letters, digits, '-', "
            "'_' and '.' (at most 96 characters)."
        ) from error
    if push and constants.HF_HUB_OFFLINE:
        raise ValueError(
            f"{option} {repo_id}: HF_HUB_OFFLINE=1 forbids uploading. Unset it to push, or convert without {option} "
            "and push the folder later."
        )


def push_folder(
    folder: str | Path,
    repo_id: str,
    *,
    revision: str | None = None,
    private: bool = False,
    commit_message: str | None = None,
    commit_description: str | None = None,
    token: str | None = None,
) -> CommitInfo:
    """
    Upload `folder` to the Hub model repo `repo_id` (created if needed) in ONE commit on branch `revision` (created
    from main if needed), leaving out the files `files_to_upload` excludes.

    Built on `HfApi.create_commit` rather than `upload_folder`, which may split a large folder into several commits.
    """
    folder = Path(folder)
    files = files_to_upload(folder)
    if not files:
        raise ValueError(f"{folder} holds nothing to upload.")
    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    if revision is not None and revision != "main":
        api.create_branch(repo_id, branch=revision, repo_type="model", exist_ok=True)
    operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(folder / name)) for name in files]
    return api.create_commit(
        repo_id,
        operations,
        commit_message=commit_message or f"Upload CLIP-FlanT5 ({len(files)} files) with transformers-clipflant5",
        commit_description=commit_description,
        revision=revision,
        repo_type="model",
    )


__all__ = [
    "HUB_REPO_URL",
    "PICKLE_SUFFIXES",
    "PUSH_IGNORE_PATTERNS",
    "check_repo_id",
    "files_to_upload",
    "folder_files",
    "is_pickle",
    "push_folder",
]
