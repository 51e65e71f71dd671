"""Training saves that are cut short: a checkpoint folder half written is never resumed from, the final save appears
whole or not at all, and one run per output_dir."""

import errno
import json

import pytest
import torch
from transformers import Trainer

import transformers_clipflant5.training.trainer as trainer_module
from tests.support.faults import held_by_another_process
from tests.training.test_trainer import fresh, make_trainer
from transformers_clipflant5.output_lock import OutputInUseError
from transformers_clipflant5.processing_clip_flant5 import CLIPFlanT5Processor
from transformers_clipflant5.testing.synthetic import write_synthetic_dataset
from transformers_clipflant5.testing.tiny import build_tiny_model
from transformers_clipflant5.training.checkpoints import COMPLETE_MARKER, completeness_problem, mark_complete
from transformers_clipflant5.training.data import load_llava_dataset


@pytest.fixture(scope="module")
def base():
    return build_tiny_model(seed=1)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Synthetic LLaVA data: 4 images with multi-turn conversations and 8 text-only rows (as the trainer tests)."""
    folder = tmp_path_factory.mktemp("data")
    paths = write_synthetic_dataset(folder, num_train_images=4, num_eval_images=0, num_text_only=8, image_size=40)
    stage2, _ = load_llava_dataset(paths["train"], "t5_v1", paths["image_folder"], flatten=True)
    return {"stage2": stage2, "image_folder": paths["image_folder"]}


class Killed(BaseException):
    """What stops the run mid-save here (a kill, seen from the files)."""


def train(base, data, output, max_steps, resume=None, **args):
    model, processor = fresh(base)
    settings = dict(max_steps=max_steps, save_strategy="steps", save_steps=1)
    trainer = make_trainer(model, processor, data["stage2"], data["image_folder"], output, **{**settings, **args})
    trainer.train(resume_from_checkpoint=resume)
    return model, trainer


def test_a_checkpoint_cut_short_is_skipped_and_the_last_complete_one_resumed(
    base, data, tmp_path, monkeypatch, capsys
):
    output = tmp_path / "run"
    # The run is killed while it saves checkpoint-3: the weights are written, the RNG and trainer states are not.
    saves = []

    def rng_state_then_killed(self, output_dir):
        saves.append(output_dir)
        if output_dir.endswith("checkpoint-3"):
            raise Killed()
        return original(self, output_dir)

    original = Trainer._save_rng_state
    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "_save_rng_state", rng_state_then_killed)
        with pytest.raises(Killed):
            train(base, data, output, max_steps=4)
    cut = output / "checkpoint-3"
    assert (cut / "model.safetensors").is_file() and not (cut / "trainer_state.json").exists()
    assert "no save_complete.json" in completeness_problem(cut)
    assert completeness_problem(output / "checkpoint-2") is None
    # A checkpoint that was complete, then damaged (a file cut by a copy or a full disk), is not complete either.
    weights = output / "checkpoint-2" / "model.safetensors"
    intact = weights.read_bytes()
    weights.write_bytes(intact[: len(intact) // 2])
    assert "model.safetensors has" in completeness_problem(output / "checkpoint-2")
    weights.write_bytes(intact)
    capsys.readouterr()

    # A path to the cut folder is refused, naming the one to use.
    with pytest.raises(ValueError, match="checkpoint-3 is not a complete checkpoint: it has no save_complete.json"):
        train(base, data, output, max_steps=4, resume=str(cut))
    # True (or "true", as a command line passes it) takes the last complete one, and says which and what it skipped.
    resumed, trainer = train(base, data, output, max_steps=4, resume="true")
    printed = capsys.readouterr().out
    assert f"Skipping {cut}: it has no save_complete.json" in printed
    assert f"Resuming from {output / 'checkpoint-2'}, the last complete checkpoint." in printed
    assert trainer.state.global_step == 4
    # The step-3 checkpoint was written again, whole, over the cut one.
    assert completeness_problem(cut) is None and (cut / "trainer_state.json").is_file()
    # ... and the run is the one that was never interrupted.
    straight, _ = train(base, data, tmp_path / "straight", max_steps=4)
    for (name, a), b in zip(straight.named_parameters(), resumed.parameters()):
        assert torch.allclose(a, b, atol=1e-6), name


def test_save_total_limit_never_leaves_fewer_complete_checkpoints(base, data, tmp_path, monkeypatch):
    output = tmp_path / "run"

    # Killed at the last moment of checkpoint-2's save: every file written, the marker not yet.
    def killed_before_the_marker(folder, names=None):
        if str(folder).endswith("checkpoint-2"):
            raise Killed()
        return mark_complete(folder, names)

    with monkeypatch.context() as patch:
        patch.setattr(trainer_module, "mark_complete", killed_before_the_marker)
        with pytest.raises(Killed):
            train(base, data, output, max_steps=3, save_total_limit=1)
    assert (output / "checkpoint-2" / "trainer_state.json").is_file()
    assert completeness_problem(output / "checkpoint-2") is not None
    # Rotating checkpoint-1 out before checkpoint-2 was complete would have left no complete checkpoint.
    assert completeness_problem(output / "checkpoint-1") is None


def test_the_final_save_appears_whole_or_not_at_all(base, data, tmp_path, monkeypatch):
    output = tmp_path / "run"
    _, trainer = train(base, data, output, max_steps=1, save_strategy="no")
    trainer.save_model(str(output))
    listed = json.loads((output / COMPLETE_MARKER).read_text())["files"]
    assert {"config.json", "model.safetensors", "README.md", "processor_config.json"} <= set(listed)
    assert completeness_problem(output) is None
    before = {name: (output / name).read_bytes() for name in listed}

    # A second save dies after the weights, before the processor (a full disk): the first save is untouched.
    def disk_full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(CLIPFlanT5Processor, "save_pretrained", disk_full)
        with pytest.raises(OSError, match="No space left"):
            trainer.save_model(str(output))
    assert {name: (output / name).read_bytes() for name in listed} == before
    assert not (output / ".saving").exists() and completeness_problem(output) is None


def test_one_run_per_output_dir(base, data, tmp_path):
    output = tmp_path / "run"
    output.mkdir()
    with held_by_another_process(output, tmp_path) as holder:
        with pytest.raises(OutputInUseError, match=f"output_dir {output} is being written by process {holder.pid}"):
            train(base, data, output, max_steps=1)
    assert not list(output.glob("checkpoint-*"))
