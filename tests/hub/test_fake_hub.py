"""The fake Hub the publishing tests use answers only calls the real `HfApi` would accept."""

import pytest
from huggingface_hub import CommitOperationAdd, HfApi


def test_fake_hub_refuses_what_the_real_api_refuses(fake_hub, tmp_path):
    api = HfApi()
    with pytest.raises(TypeError, match="privat"):
        api.create_repo("someone/model", privat=True)
    with pytest.raises(TypeError):
        api.create_commit("someone/model", [], message="a misspelt commit_message")
    with pytest.raises(TypeError, match="exists_ok"):
        api.create_branch("someone/model", branch="v1", exists_ok=True)
    assert not fake_hub.repos and not fake_hub.commits and not fake_hub.branches

    # The same calls, spelt as the real API spells them, go through and are recorded.
    api.create_repo("someone/model", private=True, exist_ok=True)
    api.create_branch("someone/model", branch="v1", exist_ok=True)
    (tmp_path / "weights.txt").write_text("w")
    operation = CommitOperationAdd(path_in_repo="weights.txt", path_or_fileobj=str(tmp_path / "weights.txt"))
    api.create_commit("someone/model", [operation], commit_message="add", revision="v1")
    assert fake_hub.repos == [{"repo_id": "someone/model", "private": True, "repo_type": None, "exist_ok": True}]
    assert fake_hub.branches == [{"repo_id": "someone/model", "branch": "v1", "exist_ok": True}]
    assert [commit["files"] for commit in fake_hub.commits] == [["weights.txt"]]
    assert (fake_hub.remote("someone/model", "v1") / "weights.txt").read_text() == "w"
