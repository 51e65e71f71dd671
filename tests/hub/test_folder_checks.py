"""The checks of a folder before it is published: pickles by any case of suffix, configs of the wrong shape."""

import json
import shutil

import pytest

from tests.support.cli import run_convert
from tests.support.original_reference import write_original_projector
from transformers_clipflant5.hub.folder_checks import check_model_folder, check_projector_folder
from transformers_clipflant5.hub.publish import files_to_upload
from transformers_clipflant5.testing.tiny import build_tiny_model


def test_pickles_and_training_state_are_recognised_in_any_case(tmp_path):
    """`model.BIN` unpickles like `model.bin` (and a case-insensitive file system serves one for the other)."""
    for name in ("model.safetensors", "model.BIN", "sub/x.PT", "Optimizer.pt", "Checkpoint-5/model.safetensors"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    assert files_to_upload(tmp_path) == ["model.safetensors"]
    with pytest.raises(ValueError, match=r"pickle files present: .*'model.BIN'.*'sub/x.PT'"):
        check_projector_folder(tmp_path)


@pytest.fixture(scope="module")
def projector_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("projector")
    trained, _ = build_tiny_model(seed=5)
    source = write_original_projector(trained, root / "stage-1")
    assert run_convert([str(source), str(root / "converted")]) == 0
    return root / "converted"


@pytest.mark.parametrize(
    "content,message",
    [
        ({}, r"projector_config.json has format None, expected 'clip-flant5-projector'.*lacks the integer"),
        ([1], "projector_config.json holds a JSON list, not an object"),
    ],
)
def test_a_projector_config_without_its_settings_is_refused(projector_folder, tmp_path, content, message):
    folder = tmp_path / "projector"
    shutil.copytree(projector_folder, folder)
    check_projector_folder(folder)
    (folder / "projector_config.json").write_text(json.dumps(content))
    with pytest.raises(ValueError, match=f"(?s){message}"):
        check_projector_folder(folder)


@pytest.fixture(scope="module")
def converted_folder(original_folder, tmp_path_factory):
    output = tmp_path_factory.mktemp("model") / "converted"
    assert run_convert([str(original_folder), str(output)]) == 0
    check_model_folder(output)
    return output


@pytest.mark.parametrize("key", ["text_config", "vision_config"])
def test_a_model_config_with_a_null_sub_config_is_a_problem_not_a_crash(converted_folder, tmp_path, key):
    folder = tmp_path / "model"
    shutil.copytree(converted_folder, folder)
    config = json.loads((folder / "config.json").read_text())
    config[key] = None
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=f"config.json {key} is null, not an object"):
        check_model_folder(folder)
