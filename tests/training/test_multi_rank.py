"""Two ranks (torchrun, CPU, gloo) take the same optimizer step as one process given both ranks' rows: the loss
scaling by world size with the step's label-token count (num_items_in_batch), and the modality sampler dealing one
modality to every rank of a step."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.support.paths import REPO_ROOT
from tests.training.multi_rank_step import build_model
from transformers_clipflant5.testing.synthetic import render
from transformers_clipflant5.training.collator import CLIPFlanT5DataCollator
from transformers_clipflant5.training.data import load_llava_dataset


HANG_LIMIT = 1500  # seconds; only turns a hung rank into a failure, far above a run on a loaded machine


def write_rows(folder: Path) -> Path:
    """8 image rows and 8 text-only rows whose answers have different lengths, so that the two ranks of a step hold
    different numbers of label tokens (averaging per-rank means would then differ from the step's token mean)."""
    (folder / "images").mkdir(parents=True)
    answers = ["Yes", "A red circle on the left of a white image.", "No", "Red, green and blue are colours."] * 2
    rows = []
    for index, answer in enumerate(answers):
        render("red", "circle", "left", size=40).save(folder / "images" / f"{index}.png")
        rows.append({"id": f"image-{index}", "image": f"images/{index}.png", "conversations": [
            {"from": "human", "value": "<image>\nWhat is shown?"}, {"from": "gpt", "value": answer}]})  # fmt: skip
        rows.append({"id": f"text-{index}", "conversations": [
            {"from": "human", "value": "Name a colour."}, {"from": "gpt", "value": answer}]})  # fmt: skip
    path = folder / "train.json"
    path.write_text(json.dumps(rows))
    return path


def gradient(model, collator, rows) -> dict[str, torch.Tensor]:
    """The gradient of the model's own mean token loss over `rows`, in one process and one batch."""
    model.zero_grad(set_to_none=True)
    model(**collator(rows)).loss.backward()
    return {name: param.grad.clone() for name, param in model.named_parameters() if param.requires_grad}


def test_two_ranks_take_the_single_process_step(tmp_path):
    data = write_rows(tmp_path / "data")
    output = tmp_path / "out"
    output.mkdir()
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")])
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "tests/training/multi_rank_step.py", str(data), str(data.parent), str(output)]  # fmt: skip
    try:
        result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=HANG_LIMIT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the two ranks did not finish within {HANG_LIMIT} s: one hung?")
    assert result.returncode == 0, result.stderr[-4000:]

    # The sampler: each rank got its own two rows, and the four rows of a step are all of one modality (the data
    # loader prepared the second step's batches too: they are checked as well).
    batches = [json.loads((output / f"rows-{rank}.json").read_text()) for rank in (0, 1)]
    assert len(batches[0]) == len(batches[1]) >= 2
    for step in range(2):
        step_rows = [batches[0][step], batches[1][step]]
        assert [len(rows) for rows in step_rows] == [2, 2] and not set(step_rows[0]) & set(step_rows[1])
        assert len({row_id.split("-")[0] for rows in step_rows for row_id in rows}) == 1, (step, step_rows)
    seen = [batches[0][0], batches[1][0]]

    # The gradient: what one process computes over the same four rows with the model's own loss.
    model, processor = build_model()
    initial = torch.load(output / "initial.pt")
    model.load_state_dict(initial, strict=False)
    dataset, _ = load_llava_dataset(data, "t5_v1", data.parent)
    by_id = {row["id"]: row for row in dataset}
    collator = CLIPFlanT5DataCollator(processor, "t5_v1", data.parent, max_length=1024)
    expected = gradient(model, collator, [by_id[row_id] for rows in seen for row_id in rows])
    final = torch.load(output / "final.pt")
    assert final.keys() == expected.keys()
    for name, grad in expected.items():
        # SGD with lr 1: final = initial - gradient.
        torch.testing.assert_close(initial[name] - final[name], grad, rtol=1e-3, atol=1e-6, msg=name)

    # The comparison can tell the scalings apart: the mean of per-rank means, or a step missing the world-size factor,
    # would be far outside the tolerance.
    per_rank = [gradient(model, collator, [by_id[row_id] for row_id in rows]) for rows in seen]
    tokens = [(collator([by_id[row_id] for row_id in rows])["labels"] != -100).sum().item() for rows in seen]
    assert tokens[0] != tokens[1]
    step = {name: initial[name] - final[name] for name in expected}
    mean_of_means = {name: (per_rank[0][name] + per_rank[1][name]) / 2 for name in expected}
    assert max((step[name] - mean_of_means[name]).abs().max() for name in expected) > 1e-3
    assert max((step[name] - expected[name] / 2).abs().max() for name in expected) > 1e-3
