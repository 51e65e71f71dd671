# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""
Reward guidance with VQAScore: optimise an image so that the model answers "Yes" to 'Does this figure show
"{prompt}"?', by back-propagating the score into the latents of a tiny generator defined here.

The generator is the simplest differentiable one: a grid of latents (`--latent_size` squared, 3 channels) upsampled
bilinearly to `--image_size` and squashed into [0, 1] by a sigmoid. It starts from a picture of another scene (a
synthetic shape, as in the demo's data), so the "before" image does not show the prompt. The same loop drives a real
generator: replace `TinyGenerator` by a diffusion sampler or a GAN and keep `scorer.score_pixels(...)`.

```bash
python examples/run_stage2.py             # trains the demo model into outputs/clip-flant5-demo (a few minutes)
python examples/reward_guidance.py        # then: a red circle on the left, from a blue square on the right
python examples/reward_guidance.py --model zhiqiulin/clip-flant5-xl --image_size 336 --latent_size 64 \
    --prompt "a watercolor painting of a lighthouse" --gradient_checkpointing --bf16
```

It prints the score as it rises, then the exact VQAScore (`scorer(...)`, the 8-bit PIL path) of the saved before and
after images, and writes them side by side to `--output`.
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


DEMO_MODEL = "outputs/clip-flant5-demo"  # where examples/run_stage2.py saves the demo's model


@dataclass
class RewardGuidanceArguments:
    model: str = field(default=DEMO_MODEL, metadata={"help": "scorer: a Hub repo or a folder"})
    prompt: str = field(default="a red circle on the left", metadata={"help": "the text to make the image show"})
    start_scene: str = field(
        default="blue square right", metadata={"help": "colour, shape and position of the starting picture"}
    )
    image_size: int = field(default=64, metadata={"help": "side of the generated image, in pixels"})
    latent_size: int = field(default=16, metadata={"help": "side of the latent grid (= image_size: free pixels)"})
    steps: int = field(default=40, metadata={"help": "optimisation steps"})
    learning_rate: float = field(default=0.1, metadata={"help": "Adam learning rate on the latents"})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "checkpoint vision tower and T5"})
    bf16: bool = field(default=False, metadata={"help": "run the scorer under bf16 autocast"})
    device: str | None = field(default=None, metadata={"help": "default: CUDA when available, else CPU"})
    seed: int = field(default=0)
    output: str = field(default="outputs/reward_guidance.png", metadata={"help": "before | after picture"})


class TinyGenerator(torch.nn.Module):
    """Image = sigmoid(bilinear upsampling of a latent grid); initialised to reproduce `start` (a PIL image)."""

    def __init__(self, start: Image.Image, latent_size: int, image_size: int):
        super().__init__()
        pixels = torch.from_numpy(np.array(start.resize((latent_size, latent_size)), dtype=np.float32)) / 255
        pixels = pixels.permute(2, 0, 1).unsqueeze(0).clamp(0.02, 0.98)
        self.latents = torch.nn.Parameter(torch.logit(pixels))
        self.image_size = image_size

    def forward(self) -> torch.Tensor:
        upsampled = torch.nn.functional.interpolate(
            self.latents, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False
        )
        return torch.sigmoid(upsampled)


def to_pil(pixels: torch.Tensor) -> Image.Image:
    array = (pixels[0].detach().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(array)


def main(args: RewardGuidanceArguments) -> tuple[float, float]:
    if args.model == DEMO_MODEL and not Path(DEMO_MODEL).is_dir():
        raise SystemExit(
            f"No model in {DEMO_MODEL}: train the demo first (python examples/run_stage2.py) or pass --model."
        )
    torch.manual_seed(args.seed)
    scorer = VQAScore.from_pretrained(args.model, device=args.device).prepare_for_reward(args.gradient_checkpointing)
    start = render(*args.start_scene.split(), size=args.image_size, rng=random.Random(args.seed))
    generator = TinyGenerator(start, args.latent_size, args.image_size).to(scorer.device)
    optimizer = torch.optim.Adam(generator.parameters(), lr=args.learning_rate)
    autocast_dtype = torch.bfloat16 if args.bf16 else None
    before = to_pil(generator())

    for step in range(args.steps + 1):
        score = scorer.score_pixels(generator(), [args.prompt], autocast_dtype=autocast_dtype)
        if step % max(1, args.steps // 10) == 0 or step == args.steps:
            print(f"step {step:4d}  VQAScore {score.item():.4g}")
        if step == args.steps:
            break
        optimizer.zero_grad()
        (-score.log()).sum().backward()  # maximise the log-likelihood of "Yes"
        optimizer.step()

    after = to_pil(generator())
    # The exact (8-bit, PIL) VQAScore of the saved pictures: the rise is not an artefact of the float path.
    exact_before, exact_after = scorer([before, after], [args.prompt] * 2).tolist()
    print(f"VQAScore of {args.prompt!r}: before {exact_before:.4g} -> after {exact_after:.4g} (8-bit images)")
    canvas = Image.new("RGB", (2 * args.image_size + 4, args.image_size), "white")
    canvas.paste(before, (0, 0))
    canvas.paste(after, (args.image_size + 4, 0))
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    canvas.save(args.output)
    print(f"before | after saved to {args.output}")
    return exact_before, exact_after


if __name__ == "__main__":
    (arguments,) = HfArgumentParser(RewardGuidanceArguments).parse_args_into_dataclasses()
    main(arguments)
