"""Real DeepSpeed on CPU (gloo), 2 processes: stage 1 under ZeRO-2 (accelerate launch), then stage 2 under ZeRO-3 (the
deepspeed launcher) from the base checkpoints plus the stage-1 projector, on data whose ranks see image and text-only
rows in the same and in separate batches. A rank that skipped the vision tower or projector would hang the gathers;
the timeout turns that into a failure."""

import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForImageTextToText, AutoProcessor

from tests.support.paths import REPO_ROOT
from tests.support.scores import forward_vqascores
from transformers_clipflant5 import VQAScore
from transformers_clipflant5.projector import load_projector
from transformers_clipflant5.testing.demo import write_demo_base_checkpoints
from transformers_clipflant5.testing.synthetic import render, write_synthetic_dataset
from transformers_clipflant5.training.model import build_model_from_base_checkpoints


BIN = Path(sys.executable).parent
# Turns a hung rank (a skipped gather waits forever) into a failure; far above a run on a loaded machine that first
# compiles DeepSpeed's CPU op (minutes), so it never judges speed.
TIMEOUT = 1500


PORT_ATTEMPTS = 3


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(command_with_port: Callable[[int], list[str]], log: Path) -> None:
    """Run the launcher command built for a free port. The port is free when picked but may be taken before the
    launcher binds it (another test, another program): a launch that fails with EADDRINUSE is retried on a new one."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    for attempt in range(1, PORT_ATTEMPTS + 1):
        command = command_with_port(free_port())
        try:
            result = subprocess.run(
                command,
                cwd=REPO_ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=TIMEOUT,
                start_new_session=True,
            )
        except subprocess.TimeoutExpired as error:
            log.write_text(f"{error.stdout}\n{error.stderr}")
            pytest.fail(f"{command[0]} timed out after {TIMEOUT} s (a rank hung?); log in {log}")
        log.write_text(result.stdout + "\n" + result.stderr)
        port_taken = re.search(r"EADDRINUSE|address already in use", result.stderr, re.IGNORECASE)
        if result.returncode == 0 or not port_taken or attempt == PORT_ATTEMPTS:
            break
    assert result.returncode == 0, f"exit {result.returncode}:\n{result.stderr[-4000:]}"


def stage2_rows(folder: Path) -> Path:
    """16 single-turn rows in an order that, with 2 ranks x 2 rows and sequential sampling, gives: step 1 rank 0
    images / rank 1 text-only; step 2 both mixed; step 3 both text-only; step 4 both images."""
    (folder / "images").mkdir(parents=True)
    pattern = "II TT IT TI TT TT II II".replace(" ", "")
    rows = []
    for index, kind in enumerate(pattern):
        if kind == "I":
            render("red", "circle", "left", size=40).save(folder / "images" / f"{index}.png")
            question = '<image>\nDoes this figure show "a red circle on the left"? Please answer yes or no.'
            rows.append({"id": str(index), "image": f"images/{index}.png", "conversations": [
                {"from": "human", "value": question}, {"from": "gpt", "value": "Yes"}]})  # fmt: skip
        else:
            rows.append({"id": str(index), "conversations": [
                {"from": "human", "value": "Is red a color?"}, {"from": "gpt", "value": "Yes"}]})  # fmt: skip
    path = folder / "train.json"
    path.write_text(json.dumps(rows))
    return path


COMMON = ["--per_device_train_batch_size", "2", "--report_to", "none", "--logging_steps", "1",
          "--dataloader_num_workers", "0", "--dataloader_pin_memory", "false", "--activation_checkpointing", "false"]  # fmt: skip


@pytest.mark.timeout(2 * TIMEOUT + 60)
def test_stage1_zero2_then_stage2_zero3(tmp_path):
    text_model, vision_model = write_demo_base_checkpoints(tmp_path / "bases")
    captions = write_synthetic_dataset(
        tmp_path / "captions", num_train_images=8, num_eval_images=0, captions_only=True
    )

    stage1 = tmp_path / "stage1"
    launch(
        lambda port: [str(BIN / "accelerate"), "launch", "--config_file", "examples/accelerate/deepspeed_zero2.yaml",
         "--num_processes", "2", "--cpu", "--main_process_port", str(port),
         "examples/run_stage1.py", "--text_model", str(text_model), "--vision_model", str(vision_model),
         "--data_path", str(captions["train"]), "--image_folder", str(captions["image_folder"]),
         "--output_dir", str(stage1), "--max_steps", "2", "--learning_rate", "1e-2", *COMMON],
        tmp_path / "stage1.log",
    )  # fmt: skip
    trained_projector = load_file(stage1 / "projector.safetensors")
    fresh, _ = build_model_from_base_checkpoints(text_model, vision_model)
    assert not torch.equal(trained_projector["linear_1.weight"], fresh.model.multi_modal_projector.linear_1.weight)
    load_projector(fresh, stage1)  # the stage-1 projector fits a model built from the same bases
    assert torch.equal(fresh.model.multi_modal_projector.linear_1.weight, trained_projector["linear_1.weight"])

    stage2 = tmp_path / "stage2"
    data = stage2_rows(tmp_path / "mixed")
    launch(
        lambda port: [str(BIN / "deepspeed"), "--num_gpus", "2", "--master_port", str(port),
         "examples/run_stage2.py", "--deepspeed", "examples/deepspeed/zero3.json",
         "--text_model", str(text_model), "--vision_model", str(vision_model),
         "--pretrained_projector", str(stage1),
         "--data_path", str(data), "--image_folder", str(data.parent),
         "--output_dir", str(stage2), "--num_train_epochs", "1", "--learning_rate", "1e-3",
         "--train_sampling_strategy", "sequential", *COMMON],
        tmp_path / "stage2.log",
    )  # fmt: skip
    state = json.loads(next(stage2.glob("checkpoint-*/trainer_state.json")).read_text())
    assert state["global_step"] == 4
    assert len([entry for entry in state["log_history"] if "loss" in entry]) == 4

    # A consolidated model: every tensor is whole, the vision tower unchanged, the projector and FlanT5 trained.
    saved = load_file(stage2 / "model.safetensors")
    base, _ = build_model_from_base_checkpoints(text_model, vision_model)
    load_projector(base, stage1)
    reference = base.state_dict()
    for key, tensor in saved.items():
        assert tensor.shape == reference[key].shape, key
    vision_keys = [key for key in saved if key.startswith("model.vision_tower.")]
    assert vision_keys and all(torch.equal(saved[key], reference[key]) for key in vision_keys)
    for key in ("model.multi_modal_projector.linear_1.weight", "model.language_model.shared.weight", "lm_head.weight"):
        assert not torch.equal(saved[key], reference[key]), key

    scorer = VQAScore.from_pretrained(stage2, dtype="float32", device="cpu")
    images, texts = [data.parent / "images" / "0.png"] * 2, ["a red circle on the left", "a blue square"]
    # The consolidated folder scores as its weights do through the Auto classes, one pair per plain forward.
    model = AutoModelForImageTextToText.from_pretrained(stage2).eval()
    expected = forward_vqascores(model, AutoProcessor.from_pretrained(stage2), images, texts)
    torch.testing.assert_close(scorer(images, texts), expected, rtol=0, atol=1e-5)
    assert "stage-2" in (stage2 / "README.md").read_text()


def test_launch_retries_on_a_port_taken_meanwhile(tmp_path):
    ports = []

    def command(port: int) -> list[str]:
        ports.append(port)
        if len(ports) == 1:  # the first launcher finds its port taken, as if another program bound it meanwhile
            return [sys.executable, "-c", "import sys; sys.exit('RuntimeError: [Errno 98] Address already in use')"]
        return [sys.executable, "-c", "pass"]

    launch(command, tmp_path / "log")
    assert len(ports) == 2
    # Any other failure is not retried.
    ports.clear()
    with pytest.raises(AssertionError, match="exit 1"):
        launch(lambda port: ports.append(port) or [sys.executable, "-c", "raise SystemExit('boom')"], tmp_path / "log")
    assert len(ports) == 1
