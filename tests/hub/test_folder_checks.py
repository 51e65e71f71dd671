"""The checks of a folder before it is published: pickles by any suffix and case, configs of the wrong shape, and
model folders missing a part (remote code, chat template, weights) or storing a weight twice."""

import json
import shutil

import pytest
from safetensors.torch import load_file, save_file

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


def _edit_weights(folder, edit) -> None:
    path = folder / "model.safetensors"
    state = load_file(path)
    edit(state)
    save_file(state, path, metadata={"format": "pt"})


def _remove_remote_code(folder):
    (folder / "modeling_clip_flant5.py").unlink()


def _remove_chat_template(folder):
    (folder / "chat_template.jinja").unlink()


def _store_tied_alias(folder):
    def add_alias(state):
        state["model.language_model.encoder.embed_tokens.weight"] = state["model.language_model.shared.weight"].clone()

    _edit_weights(folder, add_alias)


def _remove_untied_head(folder):
    _edit_weights(folder, lambda state: state.pop("lm_head.weight"))


def _declare_the_stored_head_tied(folder):
    config = json.loads((folder / "config.json").read_text())
    assert config["tie_word_embeddings"] is False  # the converted folder stores its own head
    config["tie_word_embeddings"] = True
    (folder / "config.json").write_text(json.dumps(config))


def _remove_vision_tower(folder):
    def drop_tower(state):
        for key in [key for key in state if key.startswith("model.vision_tower.")]:
            del state[key]

    _edit_weights(folder, drop_tower)


# A folder that would not load with transformers alone or not chat, or whose weights are stored twice or not at all.
DEFECTS = {
    "remote code missing": (_remove_remote_code, "modeling_clip_flant5.py is missing"),
    "chat template missing": (_remove_chat_template, "no chat template"),
    "tied alias stored": (
        _store_tied_alias,
        r"tied copies of the shared embedding stored again: \['model.language_model.encoder.embed_tokens.weight'\]",
    ),
    "untied head missing": (_remove_untied_head, "lm_head.weight is missing although tie_word_embeddings is false"),
    "tied head stored": (
        _declare_the_stored_head_tied,
        "lm_head.weight is stored although tie_word_embeddings is true",
    ),
    "vision tower missing": (_remove_vision_tower, "the vision tower weights are missing"),
}


@pytest.mark.parametrize("defect", list(DEFECTS))
def test_an_incomplete_model_folder_is_refused_with_the_problem_named(converted_folder, tmp_path, defect):
    folder = tmp_path / "model"
    shutil.copytree(converted_folder, folder)
    make_defect, message = DEFECTS[defect]
    make_defect(folder)
    with pytest.raises(ValueError, match=message):
        check_model_folder(folder)


def test_every_pickle_format_and_training_state_stay_unpublished(tmp_path):
    """Pickles by every usual suffix (torch, Lightning, plain pickle) and Trainer's training state are never
    uploaded, and a folder holding them is refused."""
    pickles = ["training_args.bin", "model.pth", "state.pkl", "data.pickle", "last.ckpt", "extra.pt"]
    state = ["scheduler.json", "rng_state_0.json", "global_step10/mp_rank_00_states.json", "runs/events.out"]
    for name in ["model.safetensors", *pickles, *state]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    assert files_to_upload(tmp_path) == ["model.safetensors"]
    with pytest.raises(ValueError, match="pickle files present") as refused:
        check_projector_folder(tmp_path)
    assert all(repr(name) in str(refused.value) for name in pickles), refused.value
