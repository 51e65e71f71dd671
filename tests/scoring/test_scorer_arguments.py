"""`VQAScore.from_pretrained` names a missing folder as one (not as an unreachable Hub), and a call given what belongs
to loading (`dtype`, `device`) says where it goes."""

import pytest

from transformers_clipflant5 import VQAScore


def test_a_missing_folder_is_named_as_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "outputs" / "model-v1").mkdir(parents=True)
    with pytest.raises(OSError, match=r"there is no folder outputs/model-v2 \(did you mean outputs/model-v1\?\)"):
        VQAScore.from_pretrained("outputs/model-v2")
    with pytest.raises(OSError, match="there is no folder ./nope"):
        VQAScore.from_pretrained("./nope")


def test_dtype_in_a_call_says_it_belongs_to_from_pretrained(tiny, images):
    model, processor = tiny
    scorer = VQAScore(model, processor)
    with pytest.raises(
        TypeError, match=r"dtype is chosen when the model loads.*from_pretrained\(model, dtype=\.\.\.\)"
    ):
        scorer([images[0]], ["a cat"], dtype="float64")
    with pytest.raises(TypeError, match="device is chosen when the model loads"):
        scorer.score_matrix([images[0]], ["a cat"], device="cpu")
    with pytest.raises(TypeError, match="unexpected keyword argument.*: colour"):
        scorer([images[0]], ["a cat"], colour="red")
