"""`clip-flant5 flatten`: what it refuses (exit status 2, nothing written) and how it writes its output."""

import json

import pytest

from tests.support.cli import run_cli
from tests.support.llava import gpt, human
from transformers_clipflant5.training.data import read_llava_json


MULTI = {"id": "m", "image": "a.png", "conversations": [human("<image>\nQ1"), gpt("A1"), human("Q2"), gpt("A2")]}


@pytest.fixture
def source(tmp_path):
    path = tmp_path / "in.json"
    path.write_text(json.dumps([MULTI]))
    return path


def test_rows_training_would_refuse_stop_the_command_by_input_row(tmp_path, capsys):
    samples = [
        MULTI,
        # A leading gpt turn: valid, and flattened into valid pairs.
        {"id": "lead", "conversations": [gpt("System."), human("Q1"), gpt("A1"), human("Q2"), gpt("A2")]},
        {"id": "odd", "conversations": [human("Q1"), gpt("A1"), human("Q2")]},
        {"id": "blank", "conversations": [human("Q1"), gpt("A1"), human("Q2"), gpt(" ")]},
    ]
    source, output = tmp_path / "in.json", tmp_path / "out.json"
    source.write_text(json.dumps(samples))
    status, _, err = run_cli(["flatten", str(source), str(output)], capsys)
    assert status == 2 and not output.exists()
    assert "2 malformed" in err and "Nothing was written" in err
    assert "row 2 (id 'odd'): the last message must be a gpt reply" in err
    assert "row 3 (id 'blank'): message 3 (gpt) is empty" in err
    assert "'lead'" not in err and "'m'" not in err

    source.write_text(json.dumps(samples[:2]))
    status, out, _ = run_cli(["flatten", str(source), str(output)], capsys)
    assert status == 0 and "4 samples written" in out
    assert [row["conversations"] for row in read_llava_json(output)[2:]] == [
        [human("Q1"), gpt("A1")],
        [human("Q2"), gpt("A2")],
    ]


def test_an_upper_case_jsonl_output_is_written_as_json_lines(source, tmp_path, capsys):
    output = tmp_path / "out.JSONL"
    status, _, _ = run_cli(["flatten", str(source), str(output)], capsys)
    assert status == 0
    lines = output.read_text().splitlines()
    assert len(lines) == 2 and all(isinstance(json.loads(line), dict) for line in lines)
    assert read_llava_json(output) == [json.loads(line) for line in lines]


def test_an_output_that_cannot_be_written_is_refused_without_a_traceback(source, tmp_path, capsys):
    folder = tmp_path / "folder"
    folder.mkdir()
    status, _, err = run_cli(["flatten", str(source), str(folder), "--force"], capsys)
    assert status == 2 and "is a folder; OUTPUT must name a file" in err
    # A parent that cannot be created: a file stands where the folder would be.
    (tmp_path / "file").write_text("")
    output = tmp_path / "file" / "out.json"
    status, _, err = run_cli(["flatten", str(source), str(output)], capsys)
    assert status == 2 and f"cannot write {output}" in err and "Nothing was written" in err
    assert sorted(path.name for path in tmp_path.iterdir()) == ["file", "folder", "in.json"]


def test_an_input_that_is_not_utf8_is_refused_with_its_name(tmp_path, capsys):
    source = tmp_path / "latin1.json"
    source.write_bytes(json.dumps([MULTI], ensure_ascii=False).replace("Q2", "Qé").encode("latin-1"))
    status, _, err = run_cli(["flatten", str(source), str(tmp_path / "out.json")], capsys)
    assert status == 2 and "latin1.json is not UTF-8 text" in err
