"""Who may use the server: loopback addresses, API key files and the bearer check."""

import pytest

from transformers_clipflant5.serving.security import (
    ExposureError,
    bearer_matches,
    check_exposure,
    is_loopback,
    read_api_key,
)


KEY = "a-long-enough-key-0123456789"


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "localhost", "::1", "[::1]"])
def test_loopback_hosts(host):
    assert is_loopback(host)
    assert check_exposure(host, None, False) is None


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.3", "my-gpu-node", "example.org"])
def test_other_hosts_need_a_key_or_no_auth(host, tmp_path, caplog):
    assert not is_loopback(host)
    with pytest.raises(ExposureError, match="--api-key-file"):
        check_exposure(host, None, False)
    assert check_exposure(host, None, True) is None
    assert "WITHOUT authentication" in caplog.text
    key_file = tmp_path / "key"
    key_file.write_text(f"  {KEY}\n")
    assert check_exposure(host, key_file, False) == KEY
    with pytest.raises(ExposureError, match="not both"):
        check_exposure(host, key_file, True)


def test_unusable_key_files(tmp_path):
    with pytest.raises(ExposureError, match="cannot be read"):
        read_api_key(tmp_path / "missing")
    for content, problem in [("", "empty"), ("short", "at least 16"), ("with a space in it!", "one line")]:
        (tmp_path / "key").write_text(content)
        with pytest.raises(ExposureError, match=problem):
            read_api_key(tmp_path / "key")


def test_bearer_check():
    assert bearer_matches(f"Bearer {KEY}", KEY)
    assert bearer_matches(f"bearer {KEY}", KEY)
    for header in [None, "", KEY, f"Basic {KEY}", f"Bearer {KEY}x", f"Bearer {KEY[:-1]}", "Bearer ", "Bearer ünï"]:
        assert not bearer_matches(header, KEY)
