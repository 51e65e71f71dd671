"""The Hugging Face Space in examples/space: its card declares the Gradio SDK and the app file, and the app builds
the demo (with its three API endpoints) around the model its variable names, as the Space would run it."""

import runpy

import pytest
import torch

from tests.support.models import save_model_folder
from tests.support.paths import REPO_ROOT


gradio = pytest.importorskip("gradio", reason="gradio is not installed: pip install -e '.[demo]'")


SPACE = REPO_ROOT / "examples" / "space"


def card_metadata() -> dict[str, str]:
    text = (SPACE / "README.md").read_text(encoding="utf-8")
    assert text.startswith("---\n")
    front_matter = text.split("---\n")[1]
    return dict(line.split(": ", 1) for line in front_matter.splitlines() if ": " in line and not line.startswith(" "))


def test_card_declares_a_gradio_space_whose_app_exists():
    metadata = card_metadata()
    assert metadata["sdk"] == "gradio"
    assert (SPACE / metadata["app_file"]).is_file()
    # The SDK the Space installs is the major version the demo is written for.
    assert metadata["sdk_version"].split(".")[0] == gradio.__version__.split(".")[0]
    assert "transformers-clipflant5[demo]" in (SPACE / "requirements.txt").read_text(encoding="utf-8")


def test_app_builds_the_demo_around_the_configured_model(tiny, tmp_path, monkeypatch):
    save_model_folder(tiny, tmp_path / "model")
    monkeypatch.setenv("CLIP_FLANT5_MODEL", str(tmp_path / "model"))
    namespace = runpy.run_path(str(SPACE / "app.py"), run_name="space_app")  # built, not launched
    demo = namespace["demo"]
    assert isinstance(demo, gradio.Blocks)
    assert {"score", "rank", "compare"} <= {function.api_name for function in demo.fns.values()}
    assert torch.equal(namespace["scorer"].model.lm_head.weight, tiny[0].lm_head.weight)  # the model named


@pytest.mark.parametrize("name", ["app.py", "README.md", "requirements.txt"])
def test_space_files_exist(name):
    assert (SPACE / name).is_file()
