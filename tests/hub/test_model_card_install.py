"""Model cards tell how to install what exists: the package is not on the package index yet."""

from importlib import resources

import pytest


@pytest.mark.parametrize("template", ["clip_flant5.md", "projector.md", "training.md"])
def test_cards_install_from_the_repository_not_an_unpublished_index(template):
    text = resources.files("transformers_clipflant5").joinpath("hub/model_cards", template).read_text()
    assert "pypi.org" not in text
    assert "not on the Python package index yet" in text and "pip install -e ." in text
