"""The `clip-flant5` entry point: its help, which answers without importing torch, and `env`."""

import re
import subprocess
import sys

import pytest

from clip_flant5_cli import COMMANDS, main


# Runs the installed `clip-flant5` console script's function in a fresh interpreter, then reports on stderr which
# heavy packages the run imported and its exit status (help goes to stdout).
PROBE = """
import sys
from importlib.metadata import entry_points

(script,) = [point for point in entry_points(group="console_scripts") if point.name == "clip-flant5"]
assert script.value == "clip_flant5_cli:main", f"clip-flant5 runs {script.value}: reinstall the package"
try:
    script.load()(sys.argv[1:])
except SystemExit as exit:
    status = exit.code
heavy = sorted({name.split(".")[0] for name in sys.modules} & {"torch", "transformers", "transformers_clipflant5"})
print(f"probe: status={status} heavy={','.join(heavy)}", file=sys.stderr)
"""


def run_probe(argv: list[str]) -> tuple[int, list[str], str, str]:
    """Exit status, heavy packages imported, stdout and stderr of `clip-flant5 ARGV` run in a new process."""
    result = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True)
    report = re.search(r"^probe: status=(\S+) heavy=(\S*)$", result.stderr, re.M)
    assert report, result.stderr[-3000:]
    return int(report[1]), [name for name in report[2].split(",") if name], result.stdout, result.stderr


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_imports_neither_torch_nor_transformers(command):
    status, heavy, out, _ = run_probe(["--help"] if command is None else [command, "--help"])
    assert status == 0 and heavy == []
    # Every help page says what its exit statuses mean.
    assert re.search(r"^exit status", out, re.M | re.I), out
    if command is None:
        for name in COMMANDS:
            assert re.search(rf"^\s+{name}\s+\S", out, re.M), f"{name} is not listed:\n{out}"
        for code in ("0", "1", "2"):
            assert re.search(rf"^\s+{code}\s+\S", out, re.M), f"exit status {code} is not described:\n{out}"


def test_a_usage_error_imports_neither_torch_nor_transformers():
    status, heavy, _, err = run_probe(["score", "--quantization", "int3"])
    assert status == 2 and heavy == [] and "invalid choice: 'int3'" in err


def test_the_probe_sees_torch_when_a_command_runs():
    """The check above can fail: a command that runs imports the implementation, and the probe reports it."""
    status, heavy, out, _ = run_probe(["score", "--model", "no-such-folder/x", "--image", "x.png", "--text", "a"])
    assert status == 2 and "torch" in heavy and "transformers_clipflant5" in heavy


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
