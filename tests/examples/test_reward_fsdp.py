"""VQAScore as a frozen reward in a generator's sharded training (t2v-metrics issue #31): examples/
reward_finetuning_fsdp.py under torchrun, 2 CPU processes (gloo), with the generator under FSDP2 and under DeepSpeed
ZeRO-2. Each rank scores its own prompts with its own unsharded, frozen scorer; the generator's parameters take the
step one process takes on both ranks' losses (so the gradients went through the reward and were averaged), and the
scorer's weights are untouched, hold no gradient and were never handed to the sharding framework."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.support.models import save_model_folder
from tests.support.paths import REPO_ROOT
from transformers_clipflant5 import VQAScore


EXAMPLE = REPO_ROOT / "examples" / "reward_finetuning_fsdp.py"
STEPS = 2
# Only turns a hung rank into a failure: far above a run on a loaded machine, including DeepSpeed compiling its CPU
# communication op on its first run (minutes on 2 cores).
HANG_LIMIT = 1500
ENV = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
# DeepSpeed caches that op under ~/.cache/torch_extensions, where every other environment's build replaces it: keep
# one per environment (as tests/examples/test_multinode.py does).
ENV.setdefault("TORCH_EXTENSIONS_DIR", str(Path(sys.prefix) / "torch_extensions"))
# Measured: FSDP2 and ZeRO-2 both match the single-process steps to the last bit on this model; float32 sums in
# another order could differ in the last digits.
TOLERANCE = {"rtol": 1e-5, "atol": 1e-7}


def load_example():
    spec = importlib.util.spec_from_file_location("reward_finetuning_fsdp", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def scorer_folder(tiny, tmp_path_factory):
    folder = tmp_path_factory.mktemp("scorer")
    save_model_folder(tiny, folder)
    return folder


def single_process_steps(example, args, ranks: list[int]) -> dict[str, torch.Tensor]:
    """The generator after `args.steps` SGD steps on the mean of `ranks`' losses, in this process."""
    scorer = VQAScore.from_pretrained(args.model, device="cpu").prepare_for_reward()
    generator = example.build_generator(args)
    optimizer = torch.optim.SGD(generator.parameters(), lr=args.learning_rate)
    for step in range(args.steps):
        losses = []
        for rank in ranks:
            prompt_ids, noise, prompts = example.batch(args, rank, step)
            losses.append(-scorer.score_pixels(generator(prompt_ids, noise), prompts).log().mean())
        optimizer.zero_grad()
        torch.stack(losses).mean().backward()
        optimizer.step()
    return {name: param.detach() for name, param in generator.named_parameters()}


@pytest.fixture(scope="module")
def expected(scorer_folder):
    """What both backends must reach (the mean over both ranks' losses), and what a missing average would give."""
    example = load_example()
    args = example.RewardFinetuningArguments(model=str(scorer_folder), steps=STEPS)
    return single_process_steps(example, args, [0, 1]), single_process_steps(example, args, [0])


@pytest.mark.timeout(HANG_LIMIT + 60)
@pytest.mark.parametrize("backend", ["fsdp2", "deepspeed"])
def test_frozen_reward_trains_the_sharded_generator(backend, scorer_folder, expected, tmp_path):
    report, weights = tmp_path / "report.json", tmp_path / "generator.pt"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(EXAMPLE),
               "--backend", backend, "--model", str(scorer_folder), "--steps", str(STEPS),
               "--report", str(report), "--save_generator", str(weights)]  # fmt: skip
    try:
        result = subprocess.run(
            command, cwd=REPO_ROOT, env=ENV, capture_output=True, text=True, timeout=HANG_LIMIT, start_new_session=True
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"the two ranks did not finish within {HANG_LIMIT} s: one hung?")
    assert result.returncode == 0, result.stderr[-4000:]
    ranks = json.loads(report.read_text())["ranks"]
    assert [record["rank"] for record in ranks] == [0, 1]

    # Each rank scored its own prompts, and its reward rose.
    assert not set(ranks[0]["prompts"]) & set(ranks[1]["prompts"])
    for record in ranks:
        before, after = (sum(record[key]) / len(record[key]) for key in ("reward_before", "reward_after"))
        assert after > before, record
        assert len(record["grad_norms"]) == STEPS and all(norm > 0 for norm in record["grad_norms"])
        assert record["generator_sharded"] == (backend == "fsdp2")  # ZeRO-2 shards gradients, not parameters

    # The generator moved, identically on both ranks, by the single-process steps over both ranks' losses.
    assert ranks[0]["generator_checksum_before"] == ranks[1]["generator_checksum_before"]
    assert ranks[0]["generator_checksum_after"] == ranks[1]["generator_checksum_after"]
    assert ranks[0]["generator_checksum_after"] != ranks[0]["generator_checksum_before"]
    assert ranks[0]["grad_norms"] == pytest.approx(ranks[1]["grad_norms"], rel=1e-6)
    trained = torch.load(weights)
    both_ranks, rank_0_only = expected
    assert trained.keys() == both_ranks.keys()
    for name, tensor in both_ranks.items():
        torch.testing.assert_close(trained[name], tensor, **TOLERANCE, msg=name)
    # Without the average over ranks the step would be far outside the tolerance.
    assert max((trained[name] - rank_0_only[name]).abs().max() for name in trained) > 1e-3

    # The scorer: the checkpoint's weights on both ranks, before and after, frozen, no gradient, never sharded.
    example = load_example()
    checkpoint = example.checksum(VQAScore.from_pretrained(scorer_folder, device="cpu").model.parameters())
    for record in ranks:
        assert record["scorer_checksum_before"] == record["scorer_checksum_after"] == checkpoint
        assert not record["scorer_requires_grad"] and not record["scorer_has_grad"]
        assert not record["scorer_sharded"] and not record["scorer_in_generator"]
