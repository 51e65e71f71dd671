"""`clip-flant5 score` and `convert` on bad input: one clear line naming the argument, row or file, found before the
model loads, with the documented exit status (the same with --image/--text and with --pairs); and a fuzzed pairs
reader that never fails on a row."""

import json
import os
import re
import shutil
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clip_flant5_cli.score.pairs_file import read_pairs
from tests.support.cli import run_cli
from tests.support.images import make_images
from tests.support.models import save_model_folder


@pytest.fixture(scope="module")
def folder(tiny, tmp_path_factory):
    """A model folder, a copy with a cut-off config.json, one with a damaged model.safetensors, and an image."""
    root = tmp_path_factory.mktemp("score-errors")
    save_model_folder(tiny, root / "model")
    shutil.copytree(root / "model", root / "cut-config")
    config = (root / "model" / "config.json").read_text()
    (root / "cut-config" / "config.json").write_text(config[: len(config) // 2])
    shutil.copytree(root / "model", root / "damaged-weights")
    weights = (root / "model" / "model.safetensors").read_bytes()
    (root / "damaged-weights" / "model.safetensors").write_bytes(weights[:1000])
    make_images([(20, 30)], seed=1)[0].save(root / "cat.png")
    (root / "pairs.jsonl").write_text(json.dumps({"image": "cat.png", "text": "a cat"}) + "\n")
    return root


def both_modes(folder, model, tmp_path, text="a cat", extra=()):
    """(status, stderr) of the same pair scored with --image/--text and with --pairs."""
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"image": str(folder / "cat.png"), "text": text}) + "\n")
    single = ["score", "--no-progress", "--model", str(model), "--image", str(folder / "cat.png"), "--text", text]
    many = ["score", "--no-progress", "--model", str(model), "--pairs", str(pairs), "--output", str(tmp_path / "o")]
    return single + list(extra), many + list(extra)


def score_pairs(folder, pairs, output, capsys) -> tuple[int, str, str]:
    argv = ["score", "--no-progress", "--model", str(folder / "model"), "--pairs", str(pairs), "--output", str(output)]
    return run_cli(argv, capsys)


@pytest.mark.parametrize(
    "model, message",
    [
        ("cut-config", r"cut-config/config.json is not valid JSON, perhaps cut off"),
        ("damaged-weights", r"damaged-weights/model.safetensors cannot be read, perhaps cut off or damaged"),
        ("mode", r"there is no folder \S+/mode \(did you mean \S+/model\?\)"),
    ],
)
def test_unusable_model_is_one_line_with_status_2_in_both_modes(folder, tmp_path, capsys, model, message):
    for argv in both_modes(folder, folder / model, tmp_path):
        code, out, err = run_cli(argv, capsys)
        assert code == 2, err
        assert err.count("\n") == 1 and err.startswith("error: Cannot load --model"), err
        assert re.search(message, err), err
        assert out == ""
    # Checking that --output can be written left no file behind.
    assert not (tmp_path / "o").exists()


def test_uncached_hub_id_offline_says_so(folder, tmp_path, capsys):
    code, _, err = run_cli(both_modes(folder, "nobody/not-a-cached-model", tmp_path)[0], capsys)
    assert code == 2
    assert "not in the Hugging Face cache and HF_HUB_OFFLINE=1" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "where",
    [
        "missing/scores.jsonl",
        "a-file/scores.jsonl",
        ".",
        "fifo",
        # Writable by its permissions (for root), yet no file can be created there.
        pytest.param(
            "/proc/scores.jsonl", marks=pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="no /proc")
        ),
    ],
)
def test_unusable_output_fails_before_the_model_loads(folder, tmp_path, capsys, where):
    (tmp_path / "a-file").write_text("x")
    os.mkfifo(tmp_path / "fifo")
    # A damaged model would fail to load: the --output error comes first, so the model was not loaded.
    argv = ["score", "--model", str(folder / "damaged-weights"), "--pairs", str(folder / "pairs.jsonl")]
    code, _, err = run_cli([*argv, "--output", str(tmp_path / where)], capsys)
    assert code == 2
    assert err.startswith("error: --output") and err.count("\n") == 1, err


def test_over_long_text_is_refused_before_the_model_loads(folder, tmp_path, capsys):
    processor_config = folder / "damaged-weights" / "tokenizer_config.json"
    config = json.loads(processor_config.read_text())
    long_folder = tmp_path / "limited"
    shutil.copytree(folder / "damaged-weights", long_folder)
    (long_folder / "tokenizer_config.json").write_text(json.dumps({**config, "model_max_length": 200}))
    single, many = both_modes(folder, long_folder, tmp_path, text="a red circle " * 100)
    for argv in (single, many):
        code, _, err = run_cli(argv, capsys)
        # Status 1 (the pair cannot be scored), found from the tokenizer alone: the damaged weights never load.
        assert code == 1, err
        assert "text tokens, more than the limit of 200" in err and "--truncate-texts" in err
        # The error shows the text's start, not the whole text (--image/--text mode repeated it in full).
        assert "a red circle " * 10 not in err, err
    code, _, err = run_cli(single, capsys)
    assert "(1,300 characters)" in err, err


def test_truncate_texts_scores_an_over_long_text(folder, tmp_path, capsys):
    model_folder = tmp_path / "limited"
    shutil.copytree(folder / "model", model_folder)
    config = json.loads((model_folder / "tokenizer_config.json").read_text())
    (model_folder / "tokenizer_config.json").write_text(json.dumps({**config, "model_max_length": 200}))
    single, many = both_modes(folder, model_folder, tmp_path, text="a red circle " * 100, extra=["--truncate-texts"])
    code, out, err = run_cli(single, capsys)
    assert code == 0, err
    assert 0 < float(out) < 1
    code, _, err = run_cli(many, capsys)
    assert code == 0, err
    record = json.loads((tmp_path / "o").read_text())
    # The record keeps the text as written in the pairs file.
    assert record["text"] == "a red circle " * 100 and record["score"] == pytest.approx(float(out), rel=1e-5)


def test_rows_without_image_or_text_are_named(folder, tmp_path, capsys):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"image": str(folder / "cat.png")}) + "\n" + json.dumps({"text": "a cat"}) + "\n")
    argv = ["score", "--no-progress", "--model", str(folder / "model"), "--pairs", str(pairs)]
    code, _, err = run_cli([*argv, "--output", str(tmp_path / "o")], capsys)
    assert code == 1
    assert "row 0 (line 1): no 'text' field" in err and "row 1 (line 2): no 'image' field" in err


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("--batch-size", "0", "batch_size must be a positive integer, got 0"),
        ("--batch-size", "-3", "batch_size must be a positive integer, got -3"),
        ("--dtype", "int8", "dtype must be 'auto', a floating-point torch dtype"),
        ("--device", "cuda:99", "cuda device"),  # no such GPU, with or without CUDA
        ("--device", "gpu", "is not a device"),
        ("--question-template", "<image> {}", "must not contain '<image>'"),
        ("--answer-template", "<image>", "must not contain '<image>'"),
    ],
)
def test_unusable_option_is_named_before_the_model_loads(folder, tmp_path, capsys, option, value, message):
    # Damaged weights would fail to load: the option's error comes first, so the model was not loaded.
    for argv in both_modes(folder, folder / "damaged-weights", tmp_path, extra=[option, value]):
        code, out, err = run_cli(argv, capsys)
        assert code == 2 and out == ""
        assert err.startswith(f"error: {option}") and err.count("\n") == 1 and message in err, err


@pytest.mark.parametrize("option", ["--output", "--image-root"])
def test_pairs_file_options_with_a_single_pair_are_refused(folder, tmp_path, capsys, option):
    # --output and --image-root belong to --pairs: with --image/--text they were silently ignored (the scores went to
    # stdout and no --output file was written although its help says the scores are appended to it).
    single = both_modes(folder, folder / "damaged-weights", tmp_path)[0]
    code, out, err = run_cli([*single, option, str(tmp_path / "scores.jsonl")], capsys)
    assert code == 2 and out == ""
    assert err.startswith(f"error: {option} goes with --pairs") and err.count("\n") == 1, err
    assert not (tmp_path / "scores.jsonl").exists()


def test_pairs_file_that_is_not_utf8_is_named(folder, tmp_path, capsys):
    pairs = tmp_path / "pairs.csv"
    pairs.write_bytes(b"image,text\ncat.png,a cat\ncat.png,caf\xe9\n")
    code, _, err = score_pairs(folder, pairs, tmp_path / "o.jsonl", capsys)
    assert code == 2 and err.count("\n") == 1, err
    assert f"{pairs} line 3 is not UTF-8 text" in err and "save the pairs file as UTF-8" in err


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_pairs_file_with_a_byte_order_mark_is_read(folder, tmp_path, capsys, suffix):
    pairs = tmp_path / f"pairs{suffix}"
    row = {"image": str(folder / "cat.png"), "text": "a cat"}
    text = "image,text\n{image},{text}\n".format(**row) if suffix == ".csv" else json.dumps(row) + "\n"
    # Excel's "CSV UTF-8" starts the file with a byte order mark.
    pairs.write_text(text, encoding="utf-8-sig")
    output = tmp_path / "o.jsonl"
    code, _, err = score_pairs(folder, pairs, output, capsys)
    assert code == 0, err
    assert [json.loads(line)["row"] for line in output.read_text().splitlines()] == [0]


def test_csv_row_with_more_fields_than_the_header_is_reported(folder, tmp_path, capsys):
    pairs = tmp_path / "pairs.csv"
    image = folder / "cat.png"
    pairs.write_text(f'image,text\n{image},a red circle, on the left\n{image},"a red circle, on the left"\n')
    output = tmp_path / "o.jsonl"
    code, _, err = score_pairs(folder, pairs, output, capsys)
    assert code == 1, err
    assert f"{pairs} row 0 (line 2): 3 fields, the header has 2: put double quotes around" in err, err
    assert "1 row(s) could not be scored" in err
    # The quoted row is scored whole; the other is not scored with its text cut at the comma.
    assert [json.loads(line)["text"] for line in output.read_text().splitlines()] == ["a red circle, on the left"]


@pytest.mark.parametrize("link", [None, "symlink", "hardlink"])
def test_output_that_is_the_pairs_file_is_refused(folder, tmp_path, capsys, link):
    pairs = tmp_path / "pairs.jsonl"
    # One row and no final newline: what follows the last newline is not a finished record, and was once cut away.
    content = json.dumps({"image": str(folder / "cat.png"), "text": "a cat"})
    pairs.write_text(content)
    output = tmp_path / "scores.jsonl"
    if link == "symlink":
        output.symlink_to(pairs)
    elif link == "hardlink":
        output.hardlink_to(pairs)
    code, out, err = score_pairs(folder, pairs, output if link else pairs, capsys)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "is the pairs file" in err and "Pass another --output" in err, err
    assert pairs.read_text() == content


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"my notes, no newline", "line 1 is not a score record (it reads 'my notes, no newline')"),
        (b"first line\nno final newline", "line 1 is not a score record"),
        (b"\xe9t\xe9\n", "line 1 is not a score record (not UTF-8 text)"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10", "is not a score record"),
        (b'{"row": 0, "id": null, "image": "cat.png", "text": "a cat", "score": 0.5}\n\xff', "line 2"),
    ],
)
def test_output_this_command_did_not_write_is_left_alone(folder, tmp_path, capsys, content, reason):
    output = tmp_path / "notes.txt"
    output.write_bytes(content)
    code, out, err = score_pairs(folder, folder / "pairs.jsonl", output, capsys)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and reason in err and "Pass another --output" in err, err
    assert output.read_bytes() == content


def test_a_record_cut_inside_a_character_is_rescored(folder, tmp_path, capsys):
    pairs = tmp_path / "pairs.jsonl"
    rows = [{"image": str(folder / "cat.png"), "text": text} for text in ("a café", "a 猫")]
    pairs.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    output = tmp_path / "scores.jsonl"
    code, _, err = score_pairs(folder, pairs, output, capsys)
    assert code == 0, err
    finished = output.read_bytes()
    # A crash while the second record was written, within the bytes of its "猫".
    cut = finished.index("猫".encode()) + 1
    output.write_bytes(finished[:cut])
    code, _, err = score_pairs(folder, pairs, output, capsys)
    assert code == 0 and "(1 in this run, 1 before)" in err, err
    assert output.read_bytes() == finished


def test_help_documents_the_exit_status(capsys):
    code, out, _ = run_cli(["score", "--help"], capsys)
    assert code == 0
    assert "Exit status" in out and "every pair was scored" in out and "cannot be loaded" in out


def test_convert_of_a_missing_folder_fails_at_once(tmp_path, capsys):
    code, _, err = run_cli(["convert", str(tmp_path / "nowhere" / "model"), str(tmp_path / "out")], capsys)
    assert code == 2
    assert "there is no folder" in err and not (tmp_path / "out").exists()


# --------------------------------------------------------------------------------------------------------------------
# Fuzzing the pairs reader: whatever the lines hold, every row is read, and a row it cannot score says why.

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
pair_objects = st.fixed_dictionaries(
    {}, optional={"image": json_values | st.just("cat.png"), "text": json_values, "id": json_values}
)
lines = st.one_of(
    pair_objects.map(json.dumps),
    json_values.map(json.dumps),
    st.text(alphabet=string.printable.replace("\n", "").replace("\r", ""), max_size=30),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(lines, max_size=6))
def test_fuzzed_jsonl_pairs_never_break_the_reader(tmp_path, content):
    path = tmp_path / "fuzz.jsonl"
    path.write_text("\n".join(content) + "\n", encoding="utf-8")
    rows = read_pairs(path)
    assert len(rows) == sum(1 for line in content if line.strip())
    for row in rows:
        if row.problem is None:
            assert isinstance(row.image, str) and row.image.strip()
            assert isinstance(row.text, str) and row.text.strip()
        else:
            assert isinstance(row.problem, str) and row.problem


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(st.text(max_size=6), min_size=1, max_size=4), min_size=1, max_size=5))
def test_fuzzed_csv_pairs_never_break_the_reader(tmp_path, records):
    import csv

    path = tmp_path / "fuzz.csv"
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "text", "id"])
        writer.writerows(records)
    rows = read_pairs(path)
    for row in rows:
        assert row.problem is not None or (row.image.strip() and row.text.strip())
