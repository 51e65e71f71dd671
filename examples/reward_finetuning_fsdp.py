# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""
Fine-tune an image generator with VQAScore as a frozen reward, the generator sharded by FSDP2 (`fully_shard`) or
DeepSpeed ZeRO-2, one process per device under torchrun. Each rank generates images for its own prompts, scores them
with its own full copy of the scorer (`scorer.score_pixels`) and back-propagates -log(reward) into the generator; the
sharding framework averages the generator's gradients over the ranks, as for any data-parallel loss.

```bash
python examples/run_stage2.py   # trains the demo model into outputs/clip-flant5-demo (a few minutes)
torchrun --nproc_per_node 2 examples/reward_finetuning_fsdp.py --backend fsdp2
torchrun --nproc_per_node 2 examples/reward_finetuning_fsdp.py --backend deepspeed
torchrun --nproc_per_node 8 examples/reward_finetuning_fsdp.py --model zhiqiulin/clip-flant5-xl \
    --image_size 336 --gradient_checkpointing --bf16 --steps 100
```

Why "VQAScore breaks FSDP" (t2v-metrics issue #31), and the rules that avoid it:

1. The scorer stays OUTSIDE the sharded module. Training code that stores the reward model as an attribute of the
   wrapped model (or of a reward `nn.Module` wrapped with it) has `fully_shard` / FSDP auto-wrapping / DeepSpeed
   shard, cast and save the reward model with the generator: tried here (`generator.reward_model = scorer.model`
   before `fully_shard`), the scorer's weights became shards of the generator, gathered at each of its forwards,
   handed to its optimizer and saved in its state dict. And a scorer object that is not an `nn.Module`
   (t2v-metrics' `VQAScore`, and ours) is not registered as a submodule at all: what the wrapper does to its module
   never reaches the model inside. Here the generator alone is given to `fully_shard` / `deepspeed.initialize`; the
   scorer is a separate object and its model a plain, unsharded `nn.Module` on each rank's device.
2. The scorer is FROZEN: `scorer.prepare_for_reward()` puts it in eval mode and sets `requires_grad=False` on every
   weight, so backward computes the gradient of the reward with respect to the pixels only. Without it, every rank
   builds and accumulates a gradient for every weight of the scorer at each step (as much memory again as the
   weights), and those gradients are never zeroed by the generator's optimizer.
3. Each rank scores ITS OWN samples with its own full copy: scoring involves no collective (no all-gather of the
   reward model, no all-reduce of scores), so ranks never wait on each other inside the reward. Only the generator's
   gradients are reduced, by FSDP2 / ZeRO-2 as usual.

`--report` writes, from rank 0, a JSON of what each rank saw: rewards before and after, gradient norms, checksums of
the (gathered) generator parameters and of the scorer's, and whether any scorer weight requires or holds a gradient.
The optimizer is plain SGD, so that a step is exactly `-lr` times the ranks' mean gradient (the test checks it).
"""

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.tensor import DTensor
from transformers import HfArgumentParser

from transformers_clipflant5 import VQAScore


DEMO_MODEL = "outputs/clip-flant5-demo"  # where examples/run_stage2.py saves the demo's model
PROMPTS = [
    "a red circle on the left",
    "a blue square on the right",
    "a green triangle on the top",
    "a yellow cross on the bottom",
]


@dataclass
class RewardFinetuningArguments:
    backend: str = field(
        default="fsdp2",
        metadata={"help": "fsdp2 (torch fully_shard) or deepspeed (ZeRO-2)", "choices": ["fsdp2", "deepspeed"]},
    )
    model: str = field(default=DEMO_MODEL, metadata={"help": "scorer: a Hub repo or a folder"})
    steps: int = field(default=3, metadata={"help": "optimizer steps"})
    batch_size: int = field(default=2, metadata={"help": "images per rank and step"})
    image_size: int = field(default=32, metadata={"help": "side of the generated images, in pixels"})
    latent_size: int = field(default=8, metadata={"help": "side of the generator's latent grid"})
    noise_dim: int = field(default=16, metadata={"help": "size of the noise and prompt embedding"})
    learning_rate: float = field(default=1.0, metadata={"help": "SGD learning rate"})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "checkpoint the scorer's layers"})
    bf16: bool = field(default=False, metadata={"help": "run the scorer under bf16 autocast"})
    seed: int = field(default=0)
    report: str | None = field(default=None, metadata={"help": "write a JSON report of every rank here (rank 0)"})
    save_generator: str | None = field(default=None, metadata={"help": "save the trained generator's full weights"})


class TinyGenerator(nn.Module):
    """noise + a learned embedding of the prompt -> a latent grid -> upsampled, a 3x3 convolution, sigmoid: a (3, H, W)
    image in [0, 1]. Stands for a real generator (a diffusion model's denoiser, a GAN) in this example."""

    def __init__(self, num_prompts: int, noise_dim: int, latent_size: int, image_size: int):
        super().__init__()
        self.prompt_embedding = nn.Embedding(num_prompts, noise_dim)
        self.to_latent = nn.Linear(noise_dim, 3 * latent_size * latent_size)
        self.refine = nn.Conv2d(3, 3, kernel_size=3, padding=1)
        self.latent_size, self.image_size = latent_size, image_size

    def forward(self, prompt_ids: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        latent = self.to_latent(self.prompt_embedding(prompt_ids) + noise)
        latent = latent.view(-1, 3, self.latent_size, self.latent_size)
        upsampled = nn.functional.interpolate(latent, size=self.image_size, mode="bilinear", align_corners=False)
        return torch.sigmoid(self.refine(upsampled))


def build_generator(args: RewardFinetuningArguments) -> TinyGenerator:
    """The same initial weights on every rank (FSDP2 shards each rank's copy, it does not broadcast)."""
    torch.manual_seed(args.seed)
    return TinyGenerator(len(PROMPTS), args.noise_dim, args.latent_size, args.image_size)


def batch(args: RewardFinetuningArguments, rank: int, step: int) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Rank `rank`'s prompts and noise at `step` (step -1: the fixed evaluation batch); ranks get different prompts."""
    prompt_ids = torch.tensor([(rank * args.batch_size + index) % len(PROMPTS) for index in range(args.batch_size)])
    noise = torch.randn(
        args.batch_size,
        args.noise_dim,
        generator=torch.Generator().manual_seed(args.seed * 1_000_003 + rank * 1_009 + step + 1),
    )
    return prompt_ids, noise, [PROMPTS[index] for index in prompt_ids.tolist()]


def full(tensor: torch.Tensor) -> torch.Tensor:
    """The whole tensor on every rank: FSDP2 keeps a shard (a DTensor) per rank; ZeRO-2 keeps whole parameters."""
    return tensor.full_tensor() if isinstance(tensor, DTensor) else tensor


def checksum(parameters) -> str:
    digest = hashlib.sha256()
    for param in parameters:
        digest.update(full(param).detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def shard(generator: TinyGenerator, args: RewardFinetuningArguments, device: torch.device):
    """Wrap the generator ALONE and build its optimizer: returns (module to call, a function doing one step)."""
    if args.backend == "fsdp2":
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        mesh = init_device_mesh(device.type, (dist.get_world_size(),))
        fully_shard(generator.to_latent, mesh=mesh)  # the largest layer its own unit, as one would each block
        fully_shard(generator, mesh=mesh)
        optimizer = torch.optim.SGD(generator.parameters(), lr=args.learning_rate)  # over the shards

        def step(loss: torch.Tensor) -> float:
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # FSDP2 reduce-scatters (averages) the generator's gradients over the ranks
            grads = [full(param.grad) for param in generator.parameters() if param.grad is not None]
            norm = torch.stack([grad.norm() for grad in grads]).norm().item()
            optimizer.step()
            return norm

        return generator, step
    if args.backend == "deepspeed":
        import deepspeed

        config = {
            "train_micro_batch_size_per_gpu": args.batch_size,
            "gradient_accumulation_steps": 1,
            "zero_optimization": {"stage": 2},
            "zero_allow_untested_optimizer": True,  # plain SGD: an exact step for the test
        }
        optimizer = torch.optim.SGD(generator.parameters(), lr=args.learning_rate)
        engine, _, _, _ = deepspeed.initialize(model=generator, optimizer=optimizer, config=config)

        def step(loss: torch.Tensor) -> float:
            engine.backward(loss)  # ZeRO-2 reduce-scatters (averages) the gradients into each rank's partition
            engine.step()
            return float(engine.get_global_grad_norm())

        return engine, step
    raise SystemExit(f"--backend must be fsdp2 or deepspeed, got {args.backend!r}.")


def main(args: RewardFinetuningArguments) -> dict | None:
    if args.model == DEMO_MODEL and not Path(DEMO_MODEL).is_dir():
        raise SystemExit(
            f"No model in {DEMO_MODEL}: train the demo first (python examples/run_stage2.py) or pass --model."
        )
    if "LOCAL_RANK" not in os.environ:
        raise SystemExit("Launch with torchrun, e.g. torchrun --nproc_per_node 2 examples/reward_finetuning_fsdp.py")
    if torch.cuda.is_available():
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    rank = dist.get_rank()

    # The reward: a full, frozen copy on every rank, never handed to the sharding framework.
    scorer = VQAScore.from_pretrained(args.model, device=device).prepare_for_reward(args.gradient_checkpointing)
    scorer_before = checksum(scorer.model.parameters())
    autocast_dtype = torch.bfloat16 if args.bf16 else None

    generator, take_step = shard(build_generator(args).to(device), args, device)
    generator_before = checksum(generator.parameters())

    def reward(step: int) -> torch.Tensor:
        prompt_ids, noise, prompts = batch(args, rank, step)
        images = generator(prompt_ids.to(device), noise.to(device))
        return scorer.score_pixels(images, prompts, autocast_dtype=autocast_dtype)

    with torch.no_grad():
        reward_before = reward(-1).tolist()
    train_rewards, grad_norms = [], []
    for step in range(args.steps):
        rewards = reward(step)
        grad_norms.append(take_step(-rewards.log().mean()))
        train_rewards.append(rewards.mean().item())
    with torch.no_grad():
        reward_after = reward(-1).tolist()
    mean_before, mean_after = sum(reward_before) / len(reward_before), sum(reward_after) / len(reward_after)
    print(
        f"rank {rank}: reward {mean_before:.4g} -> {mean_after:.4g} ({', '.join(batch(args, rank, -1)[2])})",
        flush=True,
    )

    generator_parameters = list(generator.parameters())
    scorer_parameters = list(scorer.model.parameters())
    sharded_ids = {id(param) for param in generator_parameters}
    record = {
        "rank": rank,
        "prompts": batch(args, rank, -1)[2],
        "reward_before": reward_before,
        "reward_after": reward_after,
        "train_rewards": train_rewards,
        "grad_norms": grad_norms,
        "generator_checksum_before": generator_before,
        "generator_checksum_after": checksum(generator_parameters),
        "generator_sharded": any(isinstance(param, DTensor) for param in generator_parameters),
        "scorer_checksum_before": scorer_before,
        "scorer_checksum_after": checksum(scorer_parameters),
        "scorer_requires_grad": any(param.requires_grad for param in scorer_parameters),
        "scorer_has_grad": any(param.grad is not None for param in scorer_parameters),
        "scorer_sharded": any(isinstance(param, DTensor) for param in scorer_parameters),
        "scorer_in_generator": any(id(param) in sharded_ids for param in scorer_parameters),
    }
    records = [None] * dist.get_world_size()
    dist.all_gather_object(records, record)
    full_weights = {name: full(param).detach().cpu() for name, param in generator.named_parameters()}
    if rank == 0:
        if args.report:
            Path(args.report).write_text(json.dumps({"backend": args.backend, "ranks": records}, indent=2))
        if args.save_generator:
            torch.save(
                {name.removeprefix("module."): tensor for name, tensor in full_weights.items()}, args.save_generator
            )
    dist.destroy_process_group()
    return record


if __name__ == "__main__":
    (arguments,) = HfArgumentParser(RewardFinetuningArguments).parse_args_into_dataclasses()
    main(arguments)
