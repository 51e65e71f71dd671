"""The Hub without a network: a cache laid out as a download leaves it, and a fake `HfApi` that records commits."""

import os
import shutil
from pathlib import Path
from unittest.mock import create_autospec

from huggingface_hub import CommitInfo, HfApi, RepoUrl, constants


def hub_cache(
    cache: Path, repo_id: str, source: Path, commit: str = "0123456789abcdef0123456789abcdef01234567"
) -> Path:
    """Lay `source` out as the Hugging Face Hub cache entry of `repo_id` (blobs, a snapshot of symlinks, refs/main),
    what a download leaves behind; returns `cache`."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    snapshot.mkdir(parents=True)
    for index, path in enumerate(sorted(p for p in source.rglob("*") if p.is_file())):
        relative = path.relative_to(source)
        blob = repo / "blobs" / f"{commit[:8]}-{index:04d}"
        shutil.copy(path, blob)
        (snapshot / relative).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(blob, (snapshot / relative).parent), snapshot / relative)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return cache


class FakeHub:
    """Records what `HfApi` would send, and keeps the committed files in `remote/<repo>@<revision>/`. The fakes are
    checked against the real `HfApi` signatures."""

    def __init__(self, root: Path):
        self.root = root
        self.repos: list[dict] = []
        self.branches: list[dict] = []
        self.commits: list[dict] = []

    def install(self, monkeypatch) -> None:
        hub = self

        def create_repo(api, repo_id, *, private=None, repo_type=None, exist_ok=False, **kwargs):
            hub.repos.append({"repo_id": repo_id, "private": private, "repo_type": repo_type, "exist_ok": exist_ok})
            return RepoUrl(f"https://huggingface.co/{repo_id}")

        def create_branch(api, repo_id, *, branch, repo_type=None, exist_ok=False, **kwargs):
            hub.branches.append({"repo_id": repo_id, "branch": branch, "exist_ok": exist_ok})

        def create_commit(api, repo_id, operations, *, commit_message, revision=None, repo_type=None, **kwargs):
            operations = list(operations)
            revision = revision or "main"
            target = hub.remote(repo_id, revision)
            for operation in operations:
                destination = target / operation.path_in_repo
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(operation.path_or_fileobj, destination)
            hub.commits.append(
                {
                    "repo_id": repo_id,
                    "revision": revision,
                    "message": commit_message,
                    "files": sorted(operation.path_in_repo for operation in operations),
                    "repo_type": repo_type,
                }
            )
            url = f"https://huggingface.co/{repo_id}/commit/{len(hub.commits):040d}"
            return CommitInfo(commit_url=url, commit_message=commit_message, commit_description="", oid="0" * 40)

        def no_network(api, *args, **kwargs):
            raise AssertionError("push_folder must upload in one create_commit, not through upload_folder")

        # Each fake takes the real method's signature (autospec): an argument the real HfApi would refuse, such as a
        # misspelt keyword, raises TypeError here too instead of vanishing into **kwargs.
        for name, fake in (
            ("create_repo", create_repo),
            ("create_branch", create_branch),
            ("create_commit", create_commit),
            ("upload_folder", no_network),
        ):
            monkeypatch.setattr(HfApi, name, create_autospec(getattr(HfApi, name), side_effect=fake))
        # The fake Hub is reachable: a push is not refused as offline (the tests run with HF_HUB_OFFLINE=1, under
        # which the real HfApi refuses to upload). Downloads stay local: no test loads a Hub id while it is installed.
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)

    def remote(self, repo_id: str, revision: str = "main") -> Path:
        return self.root / f"{repo_id.replace('/', '--')}@{revision}"
