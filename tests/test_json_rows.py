"""The one reader of JSON list and JSON lines files."""

import json

import pytest

from transformers_clipflant5.json_rows import is_json_lines, json_lines, read_json_rows


class FileProblem(ValueError):
    pass


def test_json_list_and_json_lines_read_the_same_rows(tmp_path):
    rows = [{"id": 0, "text": "a cat"}, {"id": 1, "text": "two\nlines"}, [1, 2]]
    (tmp_path / "rows.json").write_text(json.dumps(rows))
    (tmp_path / "rows.jsonl").write_text("\n".join(json.dumps(row) for row in rows[:2]) + "\n\n  \n" + "[1, 2]\n")
    assert read_json_rows(tmp_path / "rows.json") == rows
    assert read_json_rows(tmp_path / "rows.jsonl") == rows
    with pytest.raises(FileProblem, match=r"rows.json row 2 is a list, not an object"):
        read_json_rows(tmp_path / "rows.json", FileProblem, objects_only=True)


def test_errors_name_the_file_and_line_in_the_callers_exception(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.json"):
        read_json_rows(tmp_path / "missing.json")
    (tmp_path / "bad.jsonl").write_text('{"a": 1}\n\n{"a": \n')
    with pytest.raises(FileProblem, match=r"bad.jsonl, line 3: not valid JSON"):
        read_json_rows(tmp_path / "bad.jsonl", FileProblem)
    (tmp_path / "object.json").write_text('{"rows": []}')
    with pytest.raises(FileProblem, match="holds a JSON dict, not a list"):
        read_json_rows(tmp_path / "object.json", FileProblem)
    (tmp_path / "broken.json").write_text("[1,")
    with pytest.raises(FileProblem, match="broken.json is not valid JSON"):
        read_json_rows(tmp_path / "broken.json", FileProblem)


def test_json_lines_numbers_lines_and_hands_back_decode_errors():
    parsed = list(json_lines(['{"a": 1}', "", "not json", "[2]"]))
    assert [number for number, _ in parsed] == [1, 3, 4]
    assert parsed[0][1] == {"a": 1} and parsed[2][1] == [2]
    assert isinstance(parsed[1][1], json.JSONDecodeError)


def test_text_that_is_not_utf8_is_refused_with_the_file_named(tmp_path):
    path = tmp_path / "latin1.json"
    path.write_bytes('[{"text": "café"}]'.encode("latin-1"))
    with pytest.raises(FileProblem, match=r"latin1.json is not UTF-8 text .*re-save it as UTF-8"):
        read_json_rows(path, FileProblem)
    (tmp_path / "latin1.jsonl").write_bytes(path.read_bytes())
    with pytest.raises(FileProblem, match=r"latin1.jsonl is not UTF-8 text"):
        read_json_rows(tmp_path / "latin1.jsonl", FileProblem)
    # A byte-order mark (Windows editors) is no error.
    (tmp_path / "bom.json").write_bytes(b"\xef\xbb\xbf" + json.dumps([{"text": "café"}]).encode())
    assert read_json_rows(tmp_path / "bom.json") == [{"text": "café"}]


def test_the_jsonl_suffix_is_recognised_in_any_case_and_suggested_for_json_lines_named_json(tmp_path):
    rows = [{"id": 0}, {"id": 1}]
    text = "\n".join(json.dumps(row) for row in rows)
    (tmp_path / "rows.JSONL").write_text(text)
    assert is_json_lines(tmp_path / "rows.JSONL") and not is_json_lines(tmp_path / "rows.json")
    assert read_json_rows(tmp_path / "rows.JSONL") == rows
    (tmp_path / "rows.json").write_text(text)
    with pytest.raises(FileProblem, match=r"rows.json is not valid JSON \(Extra data.*name it .jsonl"):
        read_json_rows(tmp_path / "rows.json", FileProblem)


def test_a_folder_is_named_as_a_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="is a folder, not a file"):
        read_json_rows(tmp_path)
