"""CLIPFlanT5Config: what loading refuses rather than filling in with defaults."""

import pytest

from transformers_clipflant5 import CLIPFlanT5Config, CLIPFlanT5ForConditionalGeneration, VQAScore


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
