"""The running demo the tests of this folder share: the tiny random model (`tiny`), whose scores differ between
images, served once per module."""

import pytest

from tests.support.demo_server import running_demo


@pytest.fixture(scope="module")
def scorer(tiny):
    from transformers_clipflant5 import VQAScore

    model, processor = tiny
    return VQAScore(model=model, processor=processor)


@pytest.fixture(scope="module")
def demo_url(scorer):
    with running_demo(scorer) as url:
        yield url
