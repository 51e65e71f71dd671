"""Shared fixtures: tiny random CLIP-FlanT5 models, in our format and in the original Hub layout, built in code."""

import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image


os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).parent))

from original_reference import save_original_checkpoint  # noqa: E402
from transformers import T5Tokenizer  # noqa: E402

from transformers_clipflant5.tiny import build_tiny_model, train_tiny_sentencepiece  # noqa: E402


def randomize(model: torch.nn.Module, std: float = 0.4, seed: int = 0) -> torch.nn.Module:
    """Give every weight a large random value: a freshly initialised tiny T5 answers the same whatever the input,
    which would let generation tests pass vacuously."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * std)
    return model


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


def hub_cache(
    cache: Path, repo_id: str, source: Path, commit: str = "0123456789abcdef0123456789abcdef01234567"
) -> Path:
    """Lay `source` out as the Hugging Face Hub cache entry of `repo_id` (blobs, a snapshot of symlinks, refs/main),
    what a download leaves behind; returns `cache`."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    snapshot.mkdir(parents=True)
    for index, path in enumerate(sorted(p for p in source.rglob("*") if p.is_file())):
        relative = path.relative_to(source)
        blob = repo / "blobs" / f"{commit[:8]}-{index:04d}"
        shutil.copy(path, blob)
        (snapshot / relative).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(blob, (snapshot / relative).parent), snapshot / relative)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return cache


def make_images(sizes, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray((rng.random((h, w, 3)) * 255).astype("uint8")) for h, w in sizes]


@pytest.fixture(scope="session")
def images():
    """Wide, tall, square, tiny and large random images."""
    return make_images([(20, 40), (50, 30), (33, 33), (3, 5), (80, 64)])
