"""CLIPFlanT5Config: what loading refuses rather than filling in with defaults, and the settings it checks."""

import json

import pytest
from transformers import T5Config

from tests.support.paths import REPO_ROOT
from transformers_clipflant5 import CLIPFlanT5Config, CLIPFlanT5ForConditionalGeneration, VQAScore
from transformers_clipflant5.original import config_from_original


LOADERS = [
    CLIPFlanT5Config.from_pretrained,
    CLIPFlanT5ForConditionalGeneration.from_pretrained,
    VQAScore.from_pretrained,
]


@pytest.fixture
def without_config(tiny, tmp_path):
    """The tiny model and processor saved as usual, then config.json removed."""
    model, processor = tiny
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    (folder / "config.json").unlink()
    return folder


@pytest.mark.parametrize("load", LOADERS)
def test_a_folder_without_config_json_is_refused(without_config, load):
    """transformers reads a missing config.json as an empty one; the defaults would build a random XXL-sized model
    (46 GB in fp32) and load the weights into it with mismatch warnings. (A Hub repo without it fails in
    transformers' download already.)"""
    with pytest.raises(OSError, match="has no config.json, so it is not a CLIP-FlanT5 checkpoint"):
        load(without_config)


@pytest.mark.parametrize("load", LOADERS)
def test_another_models_config_is_refused(tmp_path, load):
    """A FlanT5 folder (model_type 't5' without the original release's mm_* fields) would also have been read as a
    CLIP-FlanT5 config of defaults."""
    T5Config(d_model=32, d_ff=64, num_layers=1, num_heads=2, d_kv=16, vocab_size=100).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="is a 't5' config, not a CLIP-FlanT5 one"):
        load(tmp_path)


def test_the_vision_feature_layer_must_be_one_of_the_towers_hidden_states(tiny):
    model, _ = tiny
    config = model.config.to_dict()
    layers = model.config.vision_config.num_hidden_layers
    for layer in (-(layers + 1), -2, 0, layers):  # the embeddings, ..., the last layer
        assert CLIPFlanT5Config(**{**config, "vision_feature_layer": layer}).vision_feature_layer == layer
    for layer in (layers + 1, -(layers + 2), 40):
        with pytest.raises(ValueError, match=f"vision_feature_layer={layer} is outside the vision tower's"):
            CLIPFlanT5Config(**{**config, "vision_feature_layer": layer})


def test_an_original_config_selecting_a_layer_the_tower_lacks_is_refused():
    """ViT-L/14-336 has 24 layers: mm_vision_select_layer 40 converted fine and then failed in every forward pass."""
    original = json.loads((REPO_ROOT / "tests" / "fixtures" / "clip-flant5-xl-config.json").read_text())
    assert config_from_original(original).vision_feature_layer == original["mm_vision_select_layer"]
    with pytest.raises(ValueError, match="vision_feature_layer=40 is outside the vision tower's 25 hidden states"):
        config_from_original({**original, "mm_vision_select_layer": 40})


def test_an_original_release_read_as_a_config_points_to_the_readers(original_folder):
    """CLIPFlanT5Config alone does not translate the original layout (that lives outside the remote-code files): it
    says which loaders read it, instead of building a default config from a T5 one."""
    with pytest.raises(ValueError, match="read as it is by CLIPFlanT5ForConditionalGeneration.from_pretrained"):
        CLIPFlanT5Config.from_pretrained(original_folder)
    assert CLIPFlanT5ForConditionalGeneration.from_pretrained(original_folder).config.model_type == "clip_flant5"
