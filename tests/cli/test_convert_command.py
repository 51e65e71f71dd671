"""`clip-flant5 convert`'s command line: push targets checked before converting, and --all-original carrying on
past a checkpoint whose files cannot be read."""

import shutil

import pytest
from huggingface_hub import constants

from tests.support.cli import run_convert
from tests.support.faults import held_by_another_process
from tests.support.models import save_model_folder
from tests.support.original_reference import write_original_projector
from transformers_clipflant5.testing.tiny import build_tiny_model


@pytest.mark.parametrize(
    "arguments,message",
    [
        (["--push-to-hub", "bad id!!"], "--push-to-hub 'bad id!!' is not a Hub repo id"),
        (["--push-to-hub", "a/b/c"], "--push-to-hub 'a/b/c' is not a Hub repo id"),
        (["--repo-id", "not a repo id"], "--repo-id 'not a repo id' is not a Hub repo id"),
        (["--push-to-hub", "my-org/clip-flant5-tiny"], "HF_HUB_OFFLINE=1 forbids uploading"),
    ],
)
def test_an_unusable_push_target_stops_before_converting(original_folder, tmp_path, capsys, arguments, message):
    """A conversion of many GB is not done for a push that cannot happen, nor a card written naming a bad repo id."""
    assert constants.HF_HUB_OFFLINE  # the tests run offline, as the last case needs
    output = tmp_path / "out"
    assert run_convert([str(original_folder), str(output), *arguments]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("error: ")
    assert message in captured.err and len(captured.err.strip().splitlines()) == 1
    assert "Converted" not in captured.out and not output.exists()


def test_all_original_checks_the_org_before_converting(original_folder, tmp_path, capsys):
    release = tmp_path / "release"
    shutil.copytree(original_folder, release / "clip-flant5-xl")
    arguments = ["--all-original", "--output-dir", str(tmp_path / "zoo"), "--source-root", str(release)]
    assert run_convert([*arguments, "--only", "clip-flant5-xl", "--org", "my org"]) == 2
    assert "--org 'my org/clip-flant5-xl' is not a Hub repo id" in capsys.readouterr().err
    assert not (tmp_path / "zoo").exists()


def test_all_original_goes_on_past_a_checkpoint_that_cannot_be_read(tiny, tmp_path, capsys):
    """A damaged weight file raises what the loader raises (here SafetensorError, neither OSError nor ValueError):
    that checkpoint is reported by name, the others are converted, and the exit status is 1."""
    release = tmp_path / "release"
    save_model_folder(tiny, release / "clip-flant5-xl")
    weights = release / "clip-flant5-xl" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    trained, _ = build_tiny_model(seed=5)
    write_original_projector(trained, release / "clip-flant5-xl-stage-1")
    arguments = ["--all-original", "--output-dir", str(tmp_path / "zoo"), "--source-root", str(release)]
    assert run_convert([*arguments, "--only", "clip-flant5-xl", "clip-flant5-xl-stage-1"]) == 1
    captured = capsys.readouterr()
    (error,) = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert error.startswith("error: clip-flant5-xl: ") and str(weights) in error
    assert "Done: 1 converted, 1 failed: clip-flant5-xl" in captured.out
    converted = [path.name for path in (tmp_path / "zoo").iterdir() if not path.name.endswith(".lock")]
    assert converted == ["clip-flant5-xl-stage-1"]


def test_a_second_conversion_into_the_same_folder_is_refused(original_folder, tmp_path, capsys):
    output = tmp_path / "out"
    with held_by_another_process(output, tmp_path) as holder:
        assert run_convert([str(original_folder), str(output)]) == 2
    (error,) = capsys.readouterr().err.strip().splitlines()
    assert error.startswith(f"error: the output folder {output} is being written by process {holder.pid} on host ")
    assert not output.exists() and not list(tmp_path.glob(".out.converting-*")), "nothing written"
    # Once the other run is over, the conversion goes through.
    assert run_convert([str(original_folder), str(output)]) == 0
