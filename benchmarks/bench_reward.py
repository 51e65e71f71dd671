"""Peak memory and time of one reward step, `VQAScore.score_pixels` forward + backward to the pixels, with frozen or
trainable weights, with and without activation checkpointing, with and without bf16 autocast, in one process.

    HF_HUB_OFFLINE=1 python benchmarks/bench_reward.py                       # ~130M params, CPU fp32, minutes
    HF_HUB_OFFLINE=1 python benchmarks/bench_reward.py --device cuda --dtype bfloat16 --preset xxl   # XXL shape, GPU

The model is random (no download), shaped as in bench_score.py: by default a CLIP ViT-B/14-336-shaped tower (576
patches, like the real ViT-L/14-336) and a FlanT5-small-shaped T5; `--preset xxl` / `xl` give the real CLIP-FlanT5
shapes. Each row scores the same `--images` non-square float images (padded, then resized to 336) against one
prompt each and back-propagates the summed log-scores into the pixels. Peak memory is bench_score.py's `PeakMemory`:
the extra peak over what was allocated when the step started (CPU: peak RSS, reset before each row; CUDA:
`torch.cuda.max_memory_allocated`), so it excludes the weights but includes weight gradients where weights train.
Every row's pixel gradient is compared with the frozen, un-checkpointed row's (the same numbers are expected, up to
bf16 rounding under autocast).
"""

import argparse
import os
import time
import warnings

import torch
from bench_score import TEXT_SIZES, VISION_SIZES, build_config
from measuring import PeakMemory, synchronize

from transformers_clipflant5 import CLIPFlanT5ForConditionalGeneration, VQAScore
from transformers_clipflant5.testing.tiny import COLORS, POSITIONS, SHAPES, build_tiny_tokenizer, tiny_processor


def reward_step(scorer: VQAScore, pixels: torch.Tensor, texts: list[str], autocast_dtype, grad: bool = True):
    """One forward (+ backward) of the summed log-scores; returns the pixel gradient (None without backward)."""
    leaf = pixels.clone().requires_grad_(grad)
    with torch.set_grad_enabled(grad), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the trainable-weights row is meant to compute weight gradients
        scores = scorer.score_pixels(leaf, texts, autocast_dtype=autocast_dtype)
        if grad:
            scores.log().sum().backward()
    return leaf.grad


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vision-size", choices=sorted(VISION_SIZES), default="base")
    parser.add_argument("--text-size", choices=sorted(TEXT_SIZES), default="small")
    parser.add_argument("--preset", choices=("xxl", "xl"), help="full-size CLIP-FlanT5 shape (FlanT5 vocabulary)")
    parser.add_argument("--images", type=int, default=2, help="images per reward step")
    parser.add_argument("--height", type=int, default=384)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", help="weights' dtype (bf16 autocast rows need float32)")
    args = parser.parse_args()

    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    torch.manual_seed(0)
    tokenizer = build_tiny_tokenizer()
    config = build_config(
        tokenizer,
        "large" if args.preset else args.vision_size,
        args.preset or args.text_size,
        32128 if args.preset else None,
    )
    with torch.device(device):
        model = CLIPFlanT5ForConditionalGeneration._from_config(config, dtype=dtype).eval()
    scorer = VQAScore(model, tiny_processor(tokenizer, config))
    pixels = torch.rand(args.images, 3, args.height, args.width, device=device)
    texts = [f"a {COLORS[i % 8]} {SHAPES[i % 4]} on the {POSITIONS[i % 4]}" for i in range(args.images)]
    vision_params = sum(p.numel() for p in model.model.vision_tower.parameters())
    total_params = sum(p.numel() for p in model.parameters())
    print(
        f"model: {total_params / 1e6:.0f}M parameters (vision tower {vision_params / 1e6:.0f}M), {args.dtype}; "
        f"device: {device}"
        + (
            f" ({torch.cuda.get_device_name(device)})"
            if device.type == "cuda"
            else f", {torch.get_num_threads()} threads"
        )
        + f"; {args.images} images of {args.height}x{args.width} (padded, resized to {config.vision_config.image_size})"
    )

    rows = [
        ("forward only (no_grad), frozen", False, False, None, False),
        ("frozen", False, False, None, True),
        ("trainable weights (requires_grad)", True, False, None, True),
        ("frozen + checkpoint vision", False, "vision", None, True),
        ("frozen + checkpoint T5", False, "text", None, True),
        ("frozen + checkpoint both", False, True, None, True),
    ]
    if dtype == torch.float32:
        rows += [
            ("frozen + bf16 autocast", False, False, torch.bfloat16, True),
            ("frozen + checkpoint both + bf16 autocast", False, True, torch.bfloat16, True),
        ]
    reward_step(scorer.prepare_for_reward(), pixels[:1], texts[:1], None)  # warm-up
    reference = None
    print(
        "\n| setting | peak extra memory (MiB) | seconds | max rel. diff. of the pixel gradient |\n|---|---|---|---|"
    )
    for name, trainable, checkpointing, autocast_dtype, grad in rows:
        scorer.prepare_for_reward(checkpointing)
        model.requires_grad_(trainable)
        model.zero_grad(set_to_none=True)
        with PeakMemory(device) as memory:
            synchronize(device)
            start = time.perf_counter()
            gradient = reward_step(scorer, pixels, texts, autocast_dtype, grad)
            synchronize(device)
            seconds = time.perf_counter() - start
        model.zero_grad(set_to_none=True)  # trainable rows leave weight gradients behind
        if gradient is not None and reference is None and not trainable:
            reference = gradient
        difference = (
            ""
            if gradient is None or reference is None
            else f"{((gradient - reference).abs().max() / reference.abs().max()).item():.1e}"
        )
        print(f"| {name} | {memory.extra_mib:.0f} | {seconds:.2f} | {difference} |")
    print(f"\nmemory measured as: {PeakMemory(device).method}")

    # Distance to the exact (8-bit PIL) path, on the same 8-bit images: noise (the worst case for a resize) and
    # smooth images (upsampled 8 x 8 noise), both padded and resized as above.
    smooth = torch.nn.functional.interpolate(
        torch.rand(args.images, 3, 8, 8, device=device), size=(args.height, args.width), mode="bilinear"
    )
    scorer.prepare_for_reward(False)
    for kind, images in (("noise", pixels), ("smooth", smooth)):
        images = (images * 255).round() / 255
        with torch.no_grad():
            exact = scorer(list(images.cpu()), texts).log()
            for quantize in (False, True):
                ours = scorer.score_pixels(images, texts, quantize=quantize).float().cpu().log()
                print(
                    f"{kind} images, quantize={quantize}: max |log score - log exact score| = "
                    f"{(ours - exact).abs().max().item():.2e} (exact log scores {exact.tolist()})"
                )
    if hasattr(os, "getloadavg"):
        print(f"load average (1 min) at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
