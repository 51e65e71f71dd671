# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""
Reward guidance with VQAScore: optimise an image so that the model answers "Yes" to 'Does this figure show
"{prompt}"?', by back-propagating the score into the parameters of a small generator defined here.

Maximising a classifier's score over free pixels finds an adversarial image: the score rises to ~1 while the picture
turns into coloured noise. This example applies the standard remedies (docs/reward_guidance.md shows what each does):
- an image prior: the change to the start image is a low-resolution grid (`--latent_size`, 4x4 by default) upsampled to
  `--image_size`, so it cannot hold pixel-level patterns; a real generator (a diffusion sampler, a GAN, optimised
  through its latent) plays that role at scale;
- expectation over transformations (EOT): each step averages the log-score over `--augmentations` random shifts
  with pixel noise, so only changes that survive them pay;
- a distance penalty to the start image (`--distance_weight` x mean squared pixel change);
- few steps (`--steps`).
`--latent_size 64 --augmentations 1 --noise 0 --distance_weight 0` turns them off: the adversarial case.

```bash
python examples/train_demo.py             # trains the demo model into outputs/clip-flant5-demo (a few minutes)
python examples/reward_guidance.py        # then: a red circle on the left, from a blue square on the right
python examples/reward_guidance.py --model zhiqiulin/clip-flant5-xl --image_size 336 --latent_size 21 \
    --prompt "a watercolor painting of a lighthouse" --gradient_checkpointing --bf16
```

It prints the score as it rises, then, on the saved 8-bit images (the exact `scorer(...)` path): the VQAScore before
and after, the mean score over fresh random shifts of each (an adversarial gain does not survive them), and the
root-mean-square pixel change; it writes before | after side by side to `--output`.
"""

import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import HfArgumentParser

from transformers_clipflant5 import VQAScore
from transformers_clipflant5.testing.synthetic import render


DEMO_MODEL = "outputs/clip-flant5-demo"  # where examples/train_demo.py saves the demo's model


@dataclass
class RewardGuidanceArguments:
    model: str = field(default=DEMO_MODEL, metadata={"help": "scorer: a Hub repo or a folder"})
    prompt: str = field(default="a red circle on the left", metadata={"help": "the text to make the image show"})
    start_scene: str = field(
        default="blue square right", metadata={"help": "colour, shape and position of the starting picture"}
    )
    image_size: int = field(default=64, metadata={"help": "side of the generated image, in pixels"})
    latent_size: int = field(default=4, metadata={"help": "side of the grid of edits (= image_size: free pixels)"})
    steps: int = field(default=40, metadata={"help": "optimisation steps"})
    learning_rate: float = field(default=0.1, metadata={"help": "Adam learning rate on the edits"})
    augmentations: int = field(default=8, metadata={"help": "random shifts averaged over per step (EOT); 1: none"})
    shift: float = field(default=0.1, metadata={"help": "largest random shift, as a fraction of the image side"})
    noise: float = field(default=0.05, metadata={"help": "standard deviation of the pixel noise of each copy"})
    distance_weight: float = field(
        default=100.0, metadata={"help": "weight of the mean squared change from the start"}
    )
    gradient_checkpointing: bool = field(default=False, metadata={"help": "checkpoint vision tower and T5"})
    bf16: bool = field(default=False, metadata={"help": "run the scorer under bf16 autocast"})
    device: str | None = field(default=None, metadata={"help": "default: CUDA when available, else CPU"})
    seed: int = field(default=0)
    output: str = field(default="outputs/reward_guidance.png", metadata={"help": "before | after picture"})


class EditGenerator(torch.nn.Module):
    """Image = sigmoid(logit(start) + bilinear upsampling of a latent grid of edits): at zero edits it is `start` (a
    PIL image); a coarse grid can only make smooth changes."""

    def __init__(self, start: Image.Image, latent_size: int):
        super().__init__()
        pixels = torch.from_numpy(np.array(start, dtype=np.float32) / 255).permute(2, 0, 1).unsqueeze(0)
        self.register_buffer("start_logits", torch.logit(pixels.clamp(0.02, 0.98)))
        self.edits = torch.nn.Parameter(torch.zeros(1, 3, latent_size, latent_size))

    def forward(self) -> torch.Tensor:
        size = self.start_logits.shape[-2:]
        edits = torch.nn.functional.interpolate(self.edits, size=size, mode="bilinear", align_corners=False)
        return torch.sigmoid(self.start_logits + edits)


def augment(
    pixels: torch.Tensor, copies: int, shift: float, noise: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """`copies` randomly shifted (edge pixels repeated) and noised views of one `(1, 3, H, W)` image."""
    if copies == 1 and noise == 0:
        return pixels
    size, pad = pixels.shape[-1], max(1, round(shift * pixels.shape[-1]))
    padded = torch.nn.functional.pad(pixels, (pad,) * 4, mode="replicate")
    corners = torch.randint(0, 2 * pad + 1, (copies, 2), generator=generator).tolist()
    views = torch.cat([padded[..., y : y + size, x : x + size] for y, x in corners])
    return (views + noise * torch.randn(views.shape, generator=generator).to(views)).clamp(0, 1)


def to_pil(pixels: torch.Tensor) -> Image.Image:
    array = (pixels[0].detach().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(array)


def shifted_score(scorer: VQAScore, image: Image.Image, prompt: str, copies: int = 16) -> float:
    """Mean exact VQAScore of `copies` random shifts of the 8-bit image (the same shifts for every image)."""
    pixels = torch.from_numpy(np.array(image, dtype=np.float32) / 255).permute(2, 0, 1).unsqueeze(0)
    views = augment(pixels, copies, shift=0.1, noise=0.0, generator=torch.Generator().manual_seed(1234))
    return scorer([to_pil(view[None]) for view in views], [prompt] * copies).mean().item()


def main(args: RewardGuidanceArguments) -> dict[str, float]:
    if args.model == DEMO_MODEL and not Path(DEMO_MODEL).is_dir():
        raise SystemExit(
            f"No model in {DEMO_MODEL}: train the demo first (python examples/train_demo.py) or pass --model."
        )
    torch.manual_seed(args.seed)
    scorer = VQAScore.from_pretrained(args.model, device=args.device).prepare_for_reward(args.gradient_checkpointing)
    start = render(*args.start_scene.split(), size=args.image_size, rng=random.Random(args.seed))
    generator = EditGenerator(start, args.latent_size).to(scorer.device)
    optimizer = torch.optim.Adam(generator.parameters(), lr=args.learning_rate)
    autocast_dtype = torch.bfloat16 if args.bf16 else None
    initial = generator().detach()  # the start image, as the generator draws it (up to the logit clamp)

    for step in range(args.steps + 1):
        pixels = generator()
        views = augment(pixels, args.augmentations, args.shift, args.noise)
        scores = scorer.score_pixels(views, [args.prompt] * len(views), autocast_dtype=autocast_dtype)
        distance = (pixels - initial).pow(2).mean()
        if step % max(1, args.steps // 10) == 0 or step == args.steps:
            print(f"step {step:4d}  VQAScore {scores.mean().item():.4g}  mean squared change {distance.item():.4f}")
        if step == args.steps:
            break
        optimizer.zero_grad()
        # Maximise the mean log-likelihood of "Yes" over the views, minus the distance penalty.
        (-scores.log().mean() + args.distance_weight * distance).backward()
        optimizer.step()

    before, after = start, to_pil(generator())
    # Measured on the saved 8-bit pictures through the exact PIL path, then on fresh shifts of them.
    exact_before, exact_after = scorer([before, after], [args.prompt] * 2).tolist()
    shifted_before, shifted_after = (shifted_score(scorer, image, args.prompt) for image in (before, after))
    change = np.sqrt(np.mean((np.asarray(after, np.float64) - np.asarray(before, np.float64)) ** 2)) / 255
    print(f"VQAScore of {args.prompt!r}: before {exact_before:.4g} -> after {exact_after:.4g} (8-bit images)")
    print(f"Mean VQAScore over 16 random shifts: before {shifted_before:.4g} -> after {shifted_after:.4g}")
    print(f"RMS pixel change from the start image: {change:.4f} (of 1)")
    canvas = Image.new("RGB", (2 * args.image_size + 4, args.image_size), "white")
    canvas.paste(before, (0, 0))
    canvas.paste(after, (args.image_size + 4, 0))
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    canvas.save(args.output)
    print(f"before | after saved to {args.output}")
    return {"before": exact_before, "after": exact_after, "shifted_before": shifted_before,
            "shifted_after": shifted_after, "rms_change": float(change)}  # fmt: skip


if __name__ == "__main__":
    (arguments,) = HfArgumentParser(RewardGuidanceArguments).parse_args_into_dataclasses()
    main(arguments)
