# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""Publishing a folder to the Hugging Face Hub in one commit, never with pickles or training state.

Used alike by `clip-flant5 convert --push-to-hub` and by the trainer's `push_to_hub` (`--push_to_hub`).
"""

from pathlib import Path

from huggingface_hub import CommitInfo, CommitOperationAdd, HfApi
from huggingface_hub.utils import filter_repo_objects


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


def files_to_upload(folder: str | Path) -> list[str]:
    """The files of `folder` that [`push_folder`] uploads: everything but pickles, optimizer/scheduler states,
    intermediate checkpoints, logs and caches (see `PUSH_IGNORE_PATTERNS`)."""
    return list(filter_repo_objects(folder_files(folder), ignore_patterns=PUSH_IGNORE_PATTERNS))


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


__all__ = ["HUB_REPO_URL", "PICKLE_SUFFIXES", "PUSH_IGNORE_PATTERNS", "files_to_upload", "folder_files", "push_folder"]
