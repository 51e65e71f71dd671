"""The `clip-flant5` entry point: its help, and `env`."""

import subprocess
import sys

import pytest

from clip_flant5_cli import main


def test_cli_help_and_env(capsys):
    result = subprocess.run(
        [sys.executable, "-m", "transformers_clipflant5", "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0 and "usage: clip-flant5" in result.stdout
    with pytest.raises(SystemExit) as exit_info:
        main(["env"])
    assert exit_info.value.code == 0
    printed = capsys.readouterr().out
    assert "- transformers:" in printed and "attention backends" in printed
