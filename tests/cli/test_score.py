"""`clip-flant5 score`: one pair, files of pairs (JSONL/CSV) with per-row errors, resuming, and a two-process run."""

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.support.cli import run_cli
from tests.support.images import make_images
from tests.support.original_reference import NaiveOriginal, vqa_prompt
from transformers_clipflant5 import VQAScore


TEXTS = ["a red circle", "a blue square on the left", "green", "a yellow cross on the top", "x"]


@pytest.fixture(scope="module")
def workdir(tiny, tmp_path_factory):
    """Our-format model folder, four images (plus an empty and a corrupt one) and the API's scores of every pair."""
    folder = tmp_path_factory.mktemp("cli")
    model, processor = tiny
    model.save_pretrained(folder / "model")
    processor.save_pretrained(folder / "model")
    (folder / "images").mkdir()
    for index, image in enumerate(make_images([(20, 40), (50, 30), (33, 33), (24, 10)], seed=2)):
        image.save(folder / "images" / f"{index}.png")
    (folder / "images" / "empty.png").write_bytes(b"")
    (folder / "images" / "corrupt.png").write_bytes(b"not an image at all")
    return folder


@pytest.fixture(scope="module")
def reference(tiny, workdir):
    """score(image i, text j) from the API."""
    model, processor = tiny
    paths = [str(workdir / "images" / f"{index}.png") for index in range(4)]
    return VQAScore(model=model, processor=processor).score_matrix(paths, TEXTS)


def good_rows(count: int) -> list[dict]:
    return [{"id": f"r{k}", "image": f"images/{k % 4}.png", "text": TEXTS[k % len(TEXTS)]} for k in range(count)]


def write_jsonl(path: Path, rows, extra_lines=()) -> Path:
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")
        for line in extra_lines:
            handle.write(line + "\n")
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def expected_score(reference, row: dict) -> float:
    return float(reference[int(Path(row["image"]).stem), TEXTS.index(row["text"])])


def test_one_pair_prints_its_score(workdir, reference, capsys):
    code, out, _ = run_cli(
        ["score", "--model", str(workdir / "model"), "--image", str(workdir / "images/1.png"), "--text", TEXTS[2]],
        capsys,
    )
    assert code == 0
    assert float(out.strip()) == pytest.approx(float(reference[1, 2]), rel=1e-5)


def test_one_pair_with_an_original_layout_model(original_folder, workdir, capsys):
    image = str(workdir / "images/0.png")
    code, out, _ = run_cli(["score", "--model", str(original_folder), "--image", image, "--text", "a cat"], capsys)
    assert code == 0
    expected = float(NaiveOriginal(original_folder).score([image], [vqa_prompt("a cat")], ["Yes"])[0])
    assert float(out.strip()) == pytest.approx(expected, rel=1e-5)


def test_one_pair_with_a_bad_image_or_template_is_an_error(workdir, capsys):
    model = str(workdir / "model")
    code, out, err = run_cli(["score", "--model", model, "--image", str(workdir / "nope.png"), "--text", "a"], capsys)
    assert code == 1 and out == "nan\n" and "nope.png" in err and "not found" in err
    code, _, err = run_cli(
        [
            "score",
            "--model",
            model,
            "--image",
            str(workdir / "images/0.png"),
            "--text",
            "a",
            "--question-template",
            "Q?",
        ],
        capsys,
    )
    assert code == 2 and "question_template must contain '{}'" in err
    code, _, err = run_cli(["score", "--model", model, "--image", "a.png"], capsys)
    assert code == 2 and "--text" in err
    pairs = write_jsonl(workdir / "few.jsonl", good_rows(2))
    output = str(workdir / "few_scores.jsonl")
    code, _, err = run_cli(
        ["score", "--model", str(workdir / "no-model"), "--pairs", str(pairs), "--output", output], capsys
    )
    assert code == 2 and "Cannot load --model" in err and "no-model" in err


def test_several_pairs_score_the_good_ones_and_name_the_bad_ones(workdir, reference, capsys):
    pairs = [("images/0.png", TEXTS[0]), ("/dev/null", TEXTS[1]), ("images/2.png", ""), ("images/3.png", TEXTS[3])]
    argv = ["score", "--no-progress", "--model", str(workdir / "model")]
    for image, text in pairs:
        argv += ["--image", str(workdir / image) if image.startswith("images") else image, "--text", text]
    code, out, err = run_cli(argv, capsys)
    assert code == 1, err
    lines = out.splitlines()
    # One line per pair, in their order; nan where a pair could not be scored.
    assert len(lines) == 4 and lines[1] == lines[2] == "nan"
    assert float(lines[0]) == pytest.approx(float(reference[0, 0]), rel=1e-5)
    assert float(lines[3]) == pytest.approx(float(reference[3, 3]), rel=1e-5)
    assert "error: pair 2 (--image /dev/null, --text 'a blue square on the left'): " in err
    assert "error: pair 3 (" in err and "is empty" in err and err.count("error:") == 2, err


def test_pairs_file_reports_bad_rows_and_resumes_without_rescoring(workdir, reference, capsys):
    rows = good_rows(10)
    rows.insert(2, {"id": "empty-image", "image": "images/empty.png", "text": "a"})
    rows.insert(4, {"id": "corrupt", "image": "images/corrupt.png", "text": "a"})
    rows.insert(5, {"id": "missing", "image": "images/missing.png", "text": "a"})
    rows.insert(7, {"id": "empty-text", "image": "images/0.png", "text": ""})
    rows.insert(8, {"id": "no-image", "text": "a"})
    pairs = write_jsonl(workdir / "pairs.jsonl", rows, extra_lines=["{not json"])
    output = workdir / "scores.jsonl"
    argv = ["score", "--model", str(workdir / "model"), "--pairs", str(pairs), "--output", str(output)]

    code, _, err = run_cli([*argv, "--batch-size", "3"], capsys)
    assert code == 1
    # The line that starts the work says the device and, on CPU, the threads and how idle ones wait.
    assert re.search(
        rf"^Scoring 13 pairs with {re.escape(str(workdir / 'model'))} on cpu, \d+ CPU thread", err, re.M
    ), err
    bad = {2: "empty (0 bytes)", 4: "not a readable image", 5: "not found", 7: "'text' is empty", 8: "no 'image'"}
    bad[15] = "not valid JSON"
    for index, reason in bad.items():
        line = next(line for line in err.splitlines() if line.strip().startswith(f"{pairs} row {index} "))
        assert reason in line, line
    assert "6 row(s) could not be scored" in err
    assert "(10 in this run, 0 before)" in err
    records = read_jsonl(output)
    good = [index for index in range(len(rows)) if index not in bad]
    assert [record["row"] for record in records] == good  # input order, bad rows left out
    for record in records:
        row = rows[record["row"]]
        assert (record["id"], record["image"], record["text"]) == (row["id"], row["image"], row["text"])
        assert record["score"] == pytest.approx(expected_score(reference, row), rel=1e-5)

    # A re-run keeps every finished row as it is and only retries the bad ones.
    before = output.read_bytes()
    code, _, err = run_cli(argv, capsys)
    assert code == 1 and "(0 in this run, 10 before)" in err
    assert output.read_bytes() == before

    # A crash mid-write: three records and half of the fourth. The re-run completes the file without duplicates.
    lines = before.decode().splitlines(keepends=True)
    output.write_text("".join(lines[:3]) + lines[3][:20])
    code, _, err = run_cli(argv, capsys)
    assert code == 1 and "(7 in this run, 3 before)" in err
    resumed = read_jsonl(output)
    assert [record["row"] for record in resumed] == good
    assert output.read_text().splitlines(keepends=True)[:3] == lines[:3]
    for record, original in zip(resumed, records):
        assert record["score"] == pytest.approx(original["score"], rel=1e-5)

    # Once the images are fixed, the skipped rows are scored and the file stays in input order.
    fixed = [
        dict(row, image="images/3.png") if row.get("id") in ("empty-image", "corrupt", "missing") else row
        for row in rows
    ]
    write_jsonl(pairs, fixed, extra_lines=["{not json"])
    code, _, err = run_cli(argv, capsys)
    assert code == 1 and "(3 in this run, 10 before)" in err
    assert [record["row"] for record in read_jsonl(output)] == sorted(good + [2, 4, 5])

    # An output written for other pairs is refused rather than mixed.
    write_jsonl(pairs, [dict(row, text=f"{row.get('text')} changed") for row in rows])
    code, _, err = run_cli(argv, capsys)
    assert code == 2 and "does not match the pairs file" in err


def test_csv_pairs_with_image_root(workdir, reference, capsys, tmp_path):
    pairs = tmp_path / "pairs.csv"
    with open(pairs, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["id", "image", "text"])
        writer.writeheader()
        writer.writerows(good_rows(6))
        writer.writerow({"id": "", "image": "images/2.png", "text": 'with "quotes", commas'})
    output = tmp_path / "out.jsonl"
    argv = ["score", "--model", str(workdir / "model"), "--pairs", str(pairs), "--output", str(output)]
    code, _, err = run_cli([*argv, "--image-root", str(workdir), "--no-progress"], capsys)
    assert code == 0, err
    records = read_jsonl(output)
    assert [record["row"] for record in records] == list(range(7))
    assert records[6]["id"] is None and records[6]["text"] == 'with "quotes", commas'
    for record in records[:6]:
        assert record["score"] == pytest.approx(expected_score(reference, record), rel=1e-5)
    # Without --image-root, paths are relative to the pairs file: here they do not exist, and each row says so.
    code, _, err = run_cli([*argv[:-1], str(tmp_path / "out2.jsonl")], capsys)
    assert code == 1 and "7 row(s) could not be scored" in err and "Image file not found" in err


def test_two_processes_split_the_rows_and_merge_them_in_order(workdir, reference, tmp_path):
    rows = good_rows(9)
    rows.insert(3, {"id": "missing", "image": "images/missing.png", "text": "a"})
    pairs = write_jsonl(tmp_path / "pairs.jsonl", [dict(row, image=str(workdir / row["image"])) for row in rows])
    output = tmp_path / "scores.jsonl"
    # Two rows are already done: they must be kept as they are and not be scored again.
    done = [
        {"row": k, "id": rows[k]["id"], "image": rows[k]["image"], "text": rows[k]["text"], "score": 0.5}
        for k in (0, 1)
    ]
    write_jsonl(output, [dict(record, image=str(workdir / record["image"])) for record in done])
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    command = [
        *(sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"),
        *("-m", "transformers_clipflant5", "score", "--model", str(workdir / "model")),
        *("--pairs", str(pairs), "--output", str(output), "--batch-size", "2", "--no-progress"),
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    assert "process 0 of 2: 4 rows to score" in result.stderr and "process 1 of 2: 4 rows to score" in result.stderr
    assert result.stderr.count("could not be scored") == 1, result.stderr  # one summary, from the main process
    assert "row 3 (line 4)" in result.stderr and "Image file not found" in result.stderr
    # The missing image is reported in the summary; the status is 0 under a launcher, which would otherwise print a
    # crash report (ChildFailedError and its traceback) after the summary.
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    records = read_jsonl(output)
    assert [record["row"] for record in records] == [0, 1, 2, 4, 5, 6, 7, 8, 9]
    assert [record["score"] for record in records[:2]] == [0.5, 0.5]
    for record in records[2:]:
        source = rows[record["row"]]
        assert record["id"] == source["id"]
        assert record["score"] == pytest.approx(expected_score(reference, source), rel=1e-5)
    assert not list(tmp_path.glob("scores.jsonl.part-*"))
    assert torch.isfinite(torch.tensor([record["score"] for record in records])).all()


def test_resume_from_leftover_part_files_and_a_crash_during_the_merge(
    workdir, reference, tmp_path, monkeypatch, capsys
):
    rows = good_rows(8)
    pairs = write_jsonl(tmp_path / "pairs.jsonl", [dict(row, image=str(workdir / row["image"])) for row in rows])
    output = tmp_path / "scores.jsonl"
    argv = ["score", "--model", str(workdir / "model"), "--pairs", str(pairs), "--output", str(output)]

    def done(k: int, score: float) -> dict:
        return {"row": k, "id": rows[k]["id"], "image": str(workdir / rows[k]["image"]), "text": rows[k]["text"],
                "score": score}  # fmt: skip

    # What a two-process run killed mid-way leaves: rows 0-1 merged, each process's part file with the rows it had
    # finished (one cut mid-line), and the merge's temporary file half written. Finished rows carry a score no model
    # gives, so that rescoring would show.
    write_jsonl(output, [done(0, 0.25), done(1, 0.25)])
    write_jsonl(Path(f"{output}.part-00000"), [done(2, 0.5), done(4, 0.5)])
    with open(f"{output}.part-00000", "a", encoding="utf-8") as handle:
        handle.write(json.dumps(done(6, 0.5))[:30])
    write_jsonl(Path(f"{output}.part-00001"), [done(3, 0.75)])
    Path(f"{output}.merging").write_text(json.dumps(done(0, 0.99))[:40])

    code, _, err = run_cli(argv, capsys)
    assert code == 0, err
    assert "(3 in this run, 5 before)" in err
    records = read_jsonl(output)
    assert [record["row"] for record in records] == list(range(8))
    assert [record["score"] for record in records[:5]] == [0.25, 0.25, 0.5, 0.75, 0.5]
    for record in records[5:]:
        assert record["score"] == pytest.approx(expected_score(reference, rows[record["row"]]), rel=1e-5)
    # Nothing else is left but the (hidden) lock file, which is kept: see output_lock.
    assert sorted(path.name for path in tmp_path.iterdir()) == [".scores.jsonl.lock", "pairs.jsonl", "scores.jsonl"]

    # A crash during the merge itself, after the merged file replaced the output but before the part files were
    # deleted: the re-run finds every row in both, scores nothing and leaves one record per row.
    finished = output.read_bytes()
    write_jsonl(Path(f"{output}.part-00001"), [done(3, 0.75), done(7, records[7]["score"])])
    code, _, err = run_cli(argv, capsys)
    assert code == 0 and "(0 in this run, 8 before)" in err
    assert output.read_bytes() == finished and not list(tmp_path.glob("scores.jsonl.part-*"))

    # A crash before the merged file replaced the output: the output is untouched, and the re-run merges.
    import clip_flant5_cli.score.command as score_command

    write_jsonl(output, [done(0, 0.25), done(1, 0.25)])
    write_jsonl(Path(f"{output}.part-00000"), [done(k, json.loads(finished.splitlines()[k])["score"]) for k in (2, 4, 5, 6, 7)])  # fmt: skip
    write_jsonl(Path(f"{output}.part-00001"), [done(3, 0.75)])

    def killed(*args):
        raise OSError("killed before the rename")

    with monkeypatch.context() as patch:
        patch.setattr(score_command.os, "replace", killed)
        code, _, err = run_cli(argv, capsys)
    assert code == 2 and "killed before the rename" in err
    assert [record["row"] for record in read_jsonl(output)] == [0, 1]
    code, _, err = run_cli(argv, capsys)
    assert code == 0 and "(0 in this run, 8 before)" in err
    assert output.read_bytes() == finished
