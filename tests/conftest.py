"""Shared fixtures: tiny random CLIP-FlanT5 models, in our format and in the original Hub layout, built in code.

The helpers the tests share live in `tests/support/` (`randomize`: `support.models`, `make_images`: `support.images`,
`hub_cache` and `FakeHub`: `support.hub`, the original layout and procedure: `support.original_reference`); they are
re-exported here for the modules that import them from the conftest.
"""

import os


# Set before transformers and huggingface_hub are imported (they read them once): the tests never reach the network.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Before torch loads OpenMP (it reads it once), for this process and the subprocesses the tests start: idle OpenMP
# threads sleep instead of spinning, which on a shared machine made tiny models' steps 5 to 12 times slower on 2 threads than on 1.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# First: the package's log filters and OpenMP settings act only on what is imported after it.
import transformers_clipflant5  # noqa: E402, F401, I001

# isort: split
import pytest  # noqa: E402
from transformers import T5Tokenizer  # noqa: E402

from tests.support.hub import FakeHub, hub_cache  # noqa: E402
from tests.support.images import make_images  # noqa: E402
from tests.support.models import randomize  # noqa: E402
from tests.support.original_reference import save_original_checkpoint  # noqa: E402
from transformers_clipflant5.testing.tiny import build_tiny_model, train_tiny_sentencepiece  # noqa: E402


LONGEST_TESTS = ("tests/examples/test_demo.py::",)


def pytest_collection_modifyitems(config, items):
    # The demo's training run takes minutes, a third of the suite's work: first, so that with two workers
    # (scripts/test.sh runs `-n 2`) the other one runs everything else beside it, instead of it starting last alone.
    items.sort(key=lambda item: not item.nodeid.startswith(LONGEST_TESTS))


@pytest.fixture(scope="session")
def tiny():
    """(model, processor): a random tiny CLIP-FlanT5 in fp32, eval mode, whose outputs depend on its inputs."""
    model, processor = build_tiny_model(seed=0)
    return randomize(model).eval(), processor


@pytest.fixture(scope="session")
def original_folder(tiny, tmp_path_factory):
    """The tiny model written in the original Hub layout (sharded pickled .bin, flat config, four embeddings)."""
    model, _ = tiny
    folder = tmp_path_factory.mktemp("original")
    save_original_checkpoint(model, train_tiny_sentencepiece(), folder, shards=2)
    # The original repos ship FlanT5's tokenizer, without an <image> token.
    T5Tokenizer.from_pretrained(folder, extra_ids=100).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def images():
    """Wide, tall, square, tiny and large random images."""
    return make_images([(20, 40), (50, 30), (33, 33), (3, 5), (80, 64)])


@pytest.fixture
def fake_hub(tmp_path, monkeypatch):
    """A fake Hub (see `FakeHub`) installed on `HfApi` for one test."""
    hub = FakeHub(tmp_path / "remote")
    hub.install(monkeypatch)
    return hub


__all__ = ["hub_cache", "make_images", "randomize"]
