"""`clip-flant5 score` under faults injected for real: two runs on one output, a full disk (a real tmpfs where one
can be mounted, and a failing write), a process SIGKILLed mid-line, a rank of a two-process run killed. Every test
checks the files: each row scored once, every line a record, and a re-run finishing what was left."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import transformers_clipflant5.safe_writes as safe_writes
from tests.support.cli import run_cli
from tests.support.faults import _FaultyOs
from tests.support.images import make_images
from tests.support.models import save_model_folder
from tests.support.paths import REPO_ROOT


ROWS = 24
# A window is --batch-size x 8 rows: 8 rows per write, so a fault in the second write falls after 8 rows.
ARGS = ["--batch-size", "1", "--no-progress"]
# A hang guard for waiting on another process; no test comes near it.
WAIT_LIMIT_S = 600


@pytest.fixture(scope="module")
def workdir(tiny, tmp_path_factory):
    folder = tmp_path_factory.mktemp("faults")
    save_model_folder(tiny, folder / "model")
    (folder / "images").mkdir()
    for index, image in enumerate(make_images([(20, 40), (50, 30), (33, 33)], seed=3)):
        image.save(folder / "images" / f"{index}.png")
    with open(folder / "pairs.jsonl", "w", encoding="utf-8") as handle:
        for k in range(ROWS):
            # Long ids: a few rows fill a page of the small disk below.
            row = {"id": f"r{k}-" + "x" * 200, "image": f"images/{k % 3}.png", "text": f"a red circle {k}"}
            handle.write(json.dumps(row) + "\n")
    return folder


def error_lines(err: str) -> list[str]:
    """What the command printed on stderr but its start line ("Scoring N pairs with M on ...")."""
    return [line for line in err.strip().splitlines() if not line.startswith("Scoring ")]


def score_argv(workdir: Path, output: Path) -> list[str]:
    return ["score", "--model", str(workdir / "model"), "--pairs", str(workdir / "pairs.jsonl"), "--output",
            str(output), *ARGS]  # fmt: skip


def records(output: Path) -> list[dict]:
    """Every line of `output` as a record: a line that is not one fails the test."""
    data = output.read_text(encoding="utf-8")
    assert data == "" or data.endswith("\n"), f"{output} ends with a cut line: {data[-60:]!r}"
    return [json.loads(line) for line in data.splitlines()]


def assert_each_row_once(output: Path) -> None:
    rows = [record["row"] for record in records(output)]
    assert rows == list(range(ROWS)), rows


def environment(**extra: str) -> dict[str, str]:
    return dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(REPO_ROOT / "src"), str(REPO_ROOT)]),
        HF_HUB_OFFLINE="1",
        OMP_NUM_THREADS="1",
        **extra,
    )


def wait_for(path: Path, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + WAIT_LIMIT_S
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "hang guard"
        time.sleep(0.05)


def test_a_second_run_on_the_same_output_is_refused_and_no_row_is_written_twice(workdir, tmp_path, capsys):
    output = tmp_path / "scores.jsonl"
    ready, go = tmp_path / "ready", tmp_path / "go"
    first = subprocess.Popen(
        [sys.executable, "-m", "tests.support.faults", *score_argv(workdir, output)],
        env=environment(CLIP_FLANT5_FAULT=f"hold:{ready}:{go}"),
        cwd=REPO_ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # The first run holds the lock (and waits, about to score): a second one, started now, is refused.
        wait_for(ready, first)
        second = subprocess.run(
            [sys.executable, "-m", "transformers_clipflant5", *score_argv(workdir, output)],
            env=environment(),
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
        )
    finally:
        go.touch()
        _, first_err = first.communicate(timeout=WAIT_LIMIT_S)
    assert second.returncode == 2, second.stderr
    (message,) = second.stderr.strip().splitlines()
    assert message.startswith(f"error: --output {output} is being written by process {first.pid} on host ")
    assert "one run per output at a time" in message
    assert first.returncode == 0, first_err
    assert f"{ROWS} of {ROWS} rows scored ({ROWS} in this run, 0 before)" in first_err
    assert_each_row_once(output)
    # Once the first run is over, the output is free again: a third run finds every row done.
    code, _, err = run_cli(score_argv(workdir, output), capsys)
    assert code == 0 and f"(0 in this run, {ROWS} before)" in err


def test_a_failed_write_names_the_file_and_the_rows_on_disk_and_leaves_it_valid(
    workdir, tmp_path, monkeypatch, capsys
):
    output = tmp_path / "scores.jsonl"
    with monkeypatch.context() as patch:
        # The disk fills during the second window of rows, one line and a half into it.
        patch.setattr(safe_writes, "os", _FaultyOs("enospc", 2))
        code, _, err = run_cli(score_argv(workdir, output), capsys)
    assert code == 2
    (message,) = error_lines(err)
    assert message == (
        f"error: could not write scores to {output} (No space left on device): 8 of {ROWS} rows are safely on disk "
        f"there (8 scored in this run) and the file is left valid. Free space (or fix the cause) and run the same "
        f"command again: it resumes with the {ROWS - 8} rows left."
    )
    # The line and a half of the failed window were cut away at once: no cut line waits for the next run.
    assert [record["row"] for record in records(output)] == list(range(8))
    code, _, err = run_cli(score_argv(workdir, output), capsys)
    assert code == 0 and f"({ROWS - 8} in this run, 8 before)" in err and "unfinished" not in err
    assert_each_row_once(output)


@pytest.fixture
def small_disk(tmp_path):
    """A real 32 KiB tmpfs (root only; skipped where it cannot be mounted)."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32k", "tmpfs", str(mount)], capture_output=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_a_full_disk_leaves_a_valid_file_that_a_rerun_completes(workdir, small_disk, tmp_path, capsys):
    output = small_disk / "scores.jsonl"
    # Most of the disk is taken: two 4 KiB pages are left, one for the lock's holder file, one for about 13 rows.
    (small_disk / "filler").write_bytes(b"\0" * (24 * 1024))
    code, _, err = run_cli(score_argv(workdir, output), capsys)
    assert code == 2
    (message,) = error_lines(err)
    safe = len(records(output))
    assert 0 < safe < ROWS
    assert message.startswith(f"error: could not write scores to {output} (No space left on device): {safe} of ")
    assert f"it resumes with the {ROWS - safe} rows left." in message
    (small_disk / "filler").unlink()
    code, _, err = run_cli(score_argv(workdir, output), capsys)
    assert code == 0 and f"({ROWS - safe} in this run, {safe} before)" in err
    assert_each_row_once(output)


def test_a_run_killed_mid_line_is_repaired_and_resumed(workdir, tmp_path, capsys):
    output = tmp_path / "scores.jsonl"
    killed = subprocess.run(
        [sys.executable, "-m", "tests.support.faults", *score_argv(workdir, output)],
        env=environment(CLIP_FLANT5_FAULT="kill:2"),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert killed.returncode == -9, killed.stderr
    # The first window, one more line, and the start of another, cut by the kill.
    data = output.read_bytes()
    assert data.count(b"\n") == 9 and not data.endswith(b"\n")
    code, _, err = run_cli(score_argv(workdir, output), capsys)
    assert code == 0, err
    assert f"warning: {output} ended with an unfinished record (10 bytes" in err
    assert f"({ROWS - 9} in this run, 9 before)" in err
    assert_each_row_once(output)


def test_a_rank_killed_mid_run_is_named_and_a_rerun_finishes_its_rows(workdir, tmp_path, capsys):
    output = tmp_path / "scores.jsonl"
    command = [
        *(sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"),
        *("-m", "tests.support.faults", *score_argv(workdir, output)),
    ]
    # Process 1 (12 rows) dies in its second write: 9 of its rows on disk, the 10th cut.
    result = subprocess.run(
        command,
        env=environment(CLIP_FLANT5_FAULT="kill:2", CLIP_FLANT5_FAULT_RANK="1"),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    (report,) = [line for line in result.stderr.splitlines() if line.startswith("error: the run stopped")]
    assert "process 1: 3 of 12 rows unscored" in report, report
    assert "run the same command again to score the" in report
    part = Path(f"{output}.part-00001")
    assert part.read_bytes().count(b"\n") == 9 and not part.read_bytes().endswith(b"\n")
    # Process 0's rows are kept wherever it stopped: on disk in its part file, or in the output.
    on_disk = sum(len(records(path)) for path in (output, Path(f"{output}.part-00000")) if path.exists())

    code, _, err = run_cli(score_argv(workdir, output), capsys)
    assert code == 0, err
    assert f"({ROWS - 9 - on_disk} in this run, {9 + on_disk} before)" in err
    assert_each_row_once(output)
    assert not list(tmp_path.glob("scores.jsonl.part-*"))
