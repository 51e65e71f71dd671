"""Publishing to the Hub, intercepted at the `huggingface_hub` boundary (the Hub cannot be reached here)."""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from huggingface_hub import ModelCard
from transformers import AutoModelForImageTextToText, AutoProcessor

from tests.support.cli import run_convert
from tests.support.folders import EXPECTED_FILES, files_in
from tests.support.images import make_images
from tests.support.original_reference import NaiveOriginal, vqa_prompt, write_original_projector
from transformers_clipflant5 import CLIPFlanT5ForConditionalGeneration
from transformers_clipflant5.hub.publish import files_to_upload, push_folder
from transformers_clipflant5.testing.tiny import build_tiny_model


TEXTS = ["a red circle", "a blue square on the left", "two crosses at the top"]
JUNK = {
    "training_args.bin": b"pickle",
    "optimizer.pt": b"state",
    "scheduler.pt": b"state",
    "rng_state_0.pth": b"state",
    "checkpoint-10/model.safetensors": b"weights",
    "checkpoint-10/trainer_state.json": b"{}",
    "runs/events.out.tfevents": b"log",
    "notes.pkl": b"pickle",
}


def vqa_scores(model, processor, images, texts) -> torch.Tensor:
    """exp(-mean cross-entropy over each row's answer tokens), computed from the logits."""
    inputs = processor(images=images, text=[vqa_prompt(text) for text in texts], text_target=["Yes"] * len(texts))
    with torch.no_grad():
        logits = model(**inputs).logits
    labels = inputs["labels"]
    losses = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels, ignore_index=-100, reduction="none")
    mask = labels.ne(-100)
    return torch.exp(-(losses * mask).sum(1) / mask.sum(1))


def test_convert_and_push_uploads_exactly_the_folder(original_folder, fake_hub, tmp_path, capsys):
    output = tmp_path / "clip-flant5-tiny"
    status = run_convert(
        [
            str(original_folder),
            str(output),
            "--push-to-hub",
            "my-org/clip-flant5-tiny",
            "--revision",
            "v1",
            "--private",
        ]
    )
    assert status == 0, capsys.readouterr().err
    assert fake_hub.repos == [
        {"repo_id": "my-org/clip-flant5-tiny", "private": True, "repo_type": "model", "exist_ok": True}
    ]
    assert fake_hub.branches == [{"repo_id": "my-org/clip-flant5-tiny", "branch": "v1", "exist_ok": True}]
    (commit,) = fake_hub.commits  # one commit for the whole folder
    assert commit["revision"] == "v1"
    assert set(commit["files"]) == EXPECTED_FILES == files_in(output)
    assert (
        f"Pushed {len(EXPECTED_FILES)} files to https://huggingface.co/my-org/clip-flant5-tiny"
        in capsys.readouterr().out
    )

    # The uploaded folder loads with the Auto classes and scores exactly like the original checkpoint.
    remote = fake_hub.remote("my-org/clip-flant5-tiny", "v1")
    model = AutoModelForImageTextToText.from_pretrained(remote).eval()
    processor = AutoProcessor.from_pretrained(remote)
    images = make_images([(20, 40), (50, 30), (33, 33)], seed=7)
    scores = vqa_scores(model, processor, images, TEXTS)
    source_model = CLIPFlanT5ForConditionalGeneration.from_pretrained(original_folder).eval()
    assert torch.equal(scores, vqa_scores(source_model, processor, images, TEXTS))
    naive = NaiveOriginal(original_folder).score(images, [vqa_prompt(text) for text in TEXTS], ["Yes"] * 3)
    assert torch.allclose(scores, naive, atol=1e-5, rtol=0)
    assert len(set(scores.tolist())) == 3  # the scores depend on the input

    # The card names the repo it was pushed to.
    card = ModelCard.load(remote / "README.md")
    assert card.data.model_name == "clip-flant5-tiny"
    assert 'VQAScore.from_pretrained("my-org/clip-flant5-tiny")' in card.text


def test_push_folder_never_uploads_pickles_or_training_state(original_folder, fake_hub, tmp_path):
    folder = tmp_path / "training-output"
    assert run_convert([str(original_folder), str(folder)]) == 0
    published = files_in(folder)
    for name, content in JUNK.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(content)
    assert set(files_to_upload(folder)) == published

    commit_info = push_folder(folder, "me/run-1", commit_message="Training run 1")
    assert commit_info.commit_url.startswith("https://huggingface.co/me/run-1/commit/")
    (commit,) = fake_hub.commits
    assert set(commit["files"]) == published
    assert commit["message"] == "Training run 1" and commit["revision"] == "main"
    assert fake_hub.branches == []  # main exists already
    assert not [name for name in commit["files"] if name.endswith((".bin", ".pt", ".pth", ".pkl"))]

    empty = tmp_path / "only-junk"
    (empty / "checkpoint-1").mkdir(parents=True)
    (empty / "training_args.bin").write_bytes(b"pickle")
    with pytest.raises(ValueError, match="nothing to upload"):
        push_folder(empty, "me/run-2")
    assert len(fake_hub.commits) == 1 and [repo["repo_id"] for repo in fake_hub.repos] == ["me/run-1"]


REMOTE_CODE_CHECK = textwrap.dedent(
    """
    import sys
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    folder, inputs_file = sys.argv[1], sys.argv[2]
    model = AutoModelForImageTextToText.from_pretrained(folder, trust_remote_code=True).eval()
    processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
    saved = torch.load(inputs_file, weights_only=True)
    prompt = processor.apply_chat_template(saved["messages"], add_generation_prompt=True)
    inputs = processor(images=[saved["image"].numpy()], text=[prompt], text_target=["Yes"])
    assert torch.equal(inputs["input_ids"], saved["input_ids"]), "the remote processor tokenizes differently"
    with torch.no_grad():
        logits = model(**inputs).logits
    assert "transformers_clipflant5" not in sys.modules, "the package was imported: not a remote-code load"
    print(type(model).__module__, type(processor).__module__)
    print("max_abs_diff", float((logits - saved["logits"]).abs().max()))
    """
)


def test_pushed_folder_loads_with_transformers_alone(original_folder, fake_hub, tmp_path):
    """In a fresh interpreter that never imports transformers_clipflant5, `trust_remote_code=True` loads the repo."""
    assert run_convert([str(original_folder), str(tmp_path / "out"), "--push-to-hub", "my-org/remote-code"]) == 0
    remote = fake_hub.remote("my-org/remote-code")
    model = AutoModelForImageTextToText.from_pretrained(remote).eval()
    processor = AutoProcessor.from_pretrained(remote)
    image = make_images([(24, 40)], seed=11)[0]
    question = 'Does this figure show "a red circle"? Please answer yes or no.'
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
    assert prompt == vqa_prompt("a red circle")
    inputs = processor(images=[image], text=[prompt], text_target=["Yes"])
    with torch.no_grad():
        logits = model(**inputs).logits
    inputs_file = tmp_path / "inputs.pt"
    torch.save(
        {
            "image": torch.from_numpy(np.array(image)),
            "messages": messages,
            "input_ids": inputs["input_ids"],
            "logits": logits,
        },
        inputs_file,
    )
    # The same thread count as this process (which earlier tests may have changed): float sums then add up in the
    # same order, and the logits must be equal, not close.
    env = dict(
        os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "home"), OMP_NUM_THREADS=str(torch.get_num_threads())
    )
    result = subprocess.run(
        [sys.executable, "-c", REMOTE_CODE_CHECK, str(remote), str(inputs_file)],
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    modules, diff = result.stdout.strip().splitlines()[-2:]
    assert modules.startswith("transformers_modules.") and "transformers_modules." in modules.split()[1]
    assert float(diff.split()[1]) == 0.0


def test_all_original_dry_run_touches_nothing(fake_hub, tmp_path, capsys):
    assert run_convert(["--all-original", "--output-dir", str(tmp_path / "zoo"), "--org", "my-org", "--dry-run"]) == 0
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert "Dry run" in lines[0] and len(lines) == 2 + 8  # header, table header, one row per checkpoint
    for name in (
        "clip-flant5-xxl",
        "clip-flant5-xl",
        "clip-flant5-xxl-stage-1",
        "clip-flant5-xl-stage-1",
        "clip-flant5-xxl-no-split-text",
        "clip-flant5-xxl-stage-1-no-split-text",
        "clip-t5-xxl",
        "clip-t5-xxl-stage-1",
    ):
        assert f"zhiqiulin/{name} " in out and f"my-org/{name} " in out
    assert not (tmp_path / "zoo").exists()
    assert fake_hub.repos == fake_hub.commits == []


def test_all_original_converts_and_pushes_a_local_release(original_folder, fake_hub, tmp_path, capsys):
    release = tmp_path / "release"
    shutil.copytree(original_folder, release / "clip-flant5-xl")
    trained, _ = build_tiny_model(seed=5)
    write_original_projector(trained, release / "clip-flant5-xl-stage-1", prefix="")
    arguments = ["--all-original", "--output-dir", str(tmp_path / "zoo"), "--org", "my-org"]
    arguments += ["--source-root", str(release), "--only", "clip-flant5-xl", "clip-flant5-xl-stage-1"]
    assert run_convert(arguments) == 0, capsys.readouterr().err
    assert [commit["repo_id"] for commit in fake_hub.commits] == [
        "my-org/clip-flant5-xl",
        "my-org/clip-flant5-xl-stage-1",
    ]
    model_commit, projector_commit = fake_hub.commits
    assert set(model_commit["files"]) == EXPECTED_FILES
    assert set(projector_commit["files"]) == {"README.md", "projector.safetensors", "projector_config.json"}
    projector_card = ModelCard.load(fake_hub.remote("my-org/clip-flant5-xl-stage-1") / "README.md")
    assert projector_card.data.base_model == ["google/flan-t5-xl", "openai/clip-vit-large-patch14-336"]
    model_card = ModelCard.load(fake_hub.remote("my-org/clip-flant5-xl") / "README.md")
    assert len(model_card.data.eval_results) == 9
    assert str(tmp_path) not in (fake_hub.remote("my-org/clip-flant5-xl") / "README.md").read_text()
    projector_config = json.loads(
        (fake_hub.remote("my-org/clip-flant5-xl-stage-1") / "projector_config.json").read_text()
    )
    assert projector_config["source"] == "clip-flant5-xl-stage-1"  # a local path is never published

    # One missing checkpoint fails alone; the others still convert, and the exit status says so.
    assert run_convert([*arguments[:-2], "clip-flant5-xxl", "clip-flant5-xl-stage-1", "--overwrite"]) == 1
    captured = capsys.readouterr()
    assert "error: clip-flant5-xxl:" in captured.err and "1 converted, 1 failed: clip-flant5-xxl" in captured.out
