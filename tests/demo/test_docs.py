"""The Python blocks of docs/explain.md and docs/demo.md run: the explain example against the tiny model laid out
under the Hub id it names, the API example against the demo served here (the block's URL replaced by the test
server's)."""

import os
import re
import subprocess
import sys

import pytest

from tests.support.hub import hub_cache
from tests.support.images import make_images
from tests.support.paths import REPO_ROOT


pytest.importorskip("gradio", reason="gradio is not installed: pip install -e '.[demo]'")
BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def python_blocks(name: str) -> list[str]:
    return BLOCK.findall((REPO_ROOT / "docs" / name).read_text(encoding="utf-8"))


def write_pictures(folder) -> None:
    for image, name in zip(make_images([(40, 60), (50, 50), (30, 45)], seed=3), ["cat.png", "a.png", "b.png"]):
        image.save(folder / name)


def test_explain_doc_runs(original_folder, tmp_path):
    (block,) = python_blocks("explain.md")
    hub_cache(tmp_path / "hub", "zhiqiulin/clip-flant5-xxl", original_folder)
    write_pictures(tmp_path)
    env = dict(
        os.environ, HF_HUB_CACHE=str(tmp_path / "hub"), HF_HUB_OFFLINE="1", PYTHONPATH=os.pathsep.join(sys.path)
    )
    result = subprocess.run(
        [sys.executable, "-c", block], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "(40, 60)" in result.stdout  # the heatmap of cat.png, 40 x 60
    assert "Is there a cat?" in result.stdout


def test_demo_api_doc_runs(demo_url, tmp_path, monkeypatch):
    (block,) = python_blocks("demo.md")
    assert "http://127.0.0.1:7860/" in block
    write_pictures(tmp_path)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(block.replace("http://127.0.0.1:7860/", demo_url), namespace)
    assert isinstance(namespace["score"], float)
    assert sorted(row[1] for row in namespace["ranking"]["data"]) == ["a.png", "b.png"]
    assert len(namespace["table"]["data"]) == 2
