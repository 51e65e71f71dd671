"""Stage-1 projector files: what `load_projector` refuses (a projector only fits the features it was trained on)."""

import copy
import json

import pytest
import torch

from transformers_clipflant5 import CLIPFlanT5Config, CLIPFlanT5ForConditionalGeneration
from transformers_clipflant5.projector import PROJECTOR_CONFIG_NAME, load_projector, save_projector


@pytest.fixture
def model(tiny):
    return copy.deepcopy(tiny[0])


def test_a_saved_projector_loads_back(model, tmp_path):
    folder = save_projector(model, tmp_path)
    saved = {name: tensor.clone() for name, tensor in model.model.multi_modal_projector.state_dict().items()}
    with torch.no_grad():
        for parameter in model.model.multi_modal_projector.parameters():
            parameter.zero_()
    load_projector(model, folder)
    for name, tensor in model.model.multi_modal_projector.state_dict().items():
        assert torch.equal(tensor, saved[name]), name


def test_a_projector_records_the_feature_settings_of_its_model(tiny, tmp_path):
    """Saved from a model of other feature settings, a projector says so: it loads back into that model and is refused
    by a model of the default settings."""
    model = tiny[0]
    config = CLIPFlanT5Config(
        vision_config=model.config.vision_config,
        text_config=model.config.text_config,
        image_token_id=model.config.image_token_id,
        vision_feature_layer=-1,
        vision_feature_select_strategy="full",
    )
    variant = CLIPFlanT5ForConditionalGeneration(config)
    folder = save_projector(variant, tmp_path)
    recorded = json.loads((folder / PROJECTOR_CONFIG_NAME).read_text())
    assert (recorded["vision_feature_layer"], recorded["vision_feature_select_strategy"]) == (-1, "full")
    load_projector(variant, folder)
    with pytest.raises(ValueError, match="was trained with vision_feature_layer=-1"):
        load_projector(copy.deepcopy(model), folder)


@pytest.mark.parametrize(
    ("key", "value"),
    [("vision_feature_layer", -1), ("vision_feature_select_strategy", "full"), ("projector_hidden_act", "relu")],
)
def test_a_projector_trained_on_other_features_is_refused(model, tmp_path, key, value):
    """The weights have the right shapes, but the features they were trained on are not the ones this model makes."""
    folder = save_projector(model, tmp_path)
    config_file = folder / PROJECTOR_CONFIG_NAME
    config = json.loads(config_file.read_text())
    assert config[key] != value
    config_file.write_text(json.dumps({**config, key: value}))
    with pytest.raises(ValueError, match=f"was trained with {key}={value!r} but the model uses"):
        load_projector(model, folder)


def test_a_foreign_config_is_refused(model, tmp_path):
    folder = save_projector(model, tmp_path)
    (folder / PROJECTOR_CONFIG_NAME).write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ValueError, match="is not a CLIP-FlanT5 projector config"):
        load_projector(model, folder)


def test_a_projector_of_another_width_is_refused(model, tmp_path):
    other = copy.deepcopy(model)
    projector = other.model.multi_modal_projector
    projector.linear_2 = torch.nn.Linear(projector.linear_2.in_features, projector.linear_2.out_features + 1)
    folder = save_projector(other, tmp_path)
    with pytest.raises(ValueError, match="the projector was trained for another vision tower or text model"):
        load_projector(model, folder)
