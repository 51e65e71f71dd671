"""`score --pairs` reads a JSON list (what `eval --write-pairs` and the demo's eval.json are) as it reads JSONL."""

import json

import pytest

from clip_flant5_cli.score.checks import ScoreFileError
from clip_flant5_cli.score.pairs_file import read_pairs


def test_a_json_list_is_a_pairs_file(tmp_path):
    rows = [{"image": "a.png", "text": "a cat", "id": 7, "label": 1}, {"image": "b.png"}, ["not", "an object"]]
    path = tmp_path / "eval.json"
    path.write_text(json.dumps(rows))
    first, second, third = read_pairs(path)
    assert (first.index, first.id, first.image, first.text, first.problem) == (0, 7, "a.png", "a cat", None)
    assert second.problem == "no 'text' field" or "text" in second.problem
    assert "expected a JSON object" in third.problem
    path.write_text('{"image": "a.png", "text": "a cat"}')
    with pytest.raises(ScoreFileError, match="eval.json"):
        read_pairs(path)
