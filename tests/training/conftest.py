"""Fixtures of the training tests."""

import pytest

from tests.support.llava import write_images


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    """Three random images of different shapes (see `write_images`)."""
    return write_images(tmp_path_factory.mktemp("images"))
