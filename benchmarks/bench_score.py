"""VQAScore throughput: our `VQAScore.score_matrix` against a naive re-implementation of the original per-pair
procedure, on the same random CLIP-FlanT5 weights, in one process.

    HF_HUB_OFFLINE=1 python benchmarks/bench_score.py                                        # ~130M params, CPU fp32
    HF_HUB_OFFLINE=1 python benchmarks/bench_score.py --vision-size large --text-size base   # ~500M params, slower

The model is random (no download): a CLIP ViT-B/14-336-shaped vision tower (576 patches, like the real
ViT-L/14-336; `--vision-size large` for the real tower's shape) and a FlanT5-small-shaped T5 (`--text-size base`,
`xl`, `xxl` for larger ones) with the tiny test tokenizer's vocabulary. It is saved in the original Hub layout; the
naive baseline (tests/support/original_reference.py: vision tower run for every pair, per-sample splicing loop,
full-vocabulary logits, batches in input order, as the original evaluation code did) and our scorer both load that
folder. Each method is timed on the same 4 images x 8 texts, after a warm-up, best of `--repeats`.

Peak memory is measured during the timed runs: on CPU, the process's peak resident set size (Linux VmHWM, reset
through /proc/self/clear_refs before each method, after glibc's `malloc_trim(0)` has returned freed memory to the OS;
elsewhere `resource.getrusage` max RSS, which cannot be reset) minus the resident size when the method started, i.e.
the memory the method needed on top of the loaded weights; on CUDA, `torch.cuda.max_memory_allocated`. The methods
run interleaved (`--repeats` rounds of ours then naive) and the best time of each is reported, with the load
average, because a shared machine's load shifts timings.

On a GPU, `--device cuda --dtype bfloat16 --no-baseline --preset xxl` times our scorer alone on a random
CLIP-FlanT5-XXL-shaped model and reports model-FLOP utilisation against `--peak-tflops` (the card's dense bf16 peak).
"""

import argparse
import ctypes
import ctypes.util
import gc
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import CLIPVisionConfig, T5Tokenizer


# The naive original procedure lives with the parity tests; the benchmark reuses it rather than copying it.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.support.original_reference import NaiveOriginal, save_original_checkpoint, stage2_prompt  # noqa: E402
from transformers_clipflant5 import CLIPFlanT5Config, CLIPFlanT5ForConditionalGeneration, VQAScore  # noqa: E402
from transformers_clipflant5.configuration_clip_flant5 import CLIP_VIT_L_14_336_VISION_CONFIG  # noqa: E402
from transformers_clipflant5.scoring.vqascore import DEFAULT_QUESTION_TEMPLATE  # noqa: E402
from transformers_clipflant5.testing.tiny import (  # noqa: E402
    COLORS,
    POSITIONS,
    SHAPES,
    build_tiny_tokenizer,
    flant5_config,
    tiny_processor,
    train_tiny_sentencepiece,
)


VISION_SIZES = {
    "large": CLIP_VIT_L_14_336_VISION_CONFIG,
    "base": dict(
        CLIP_VIT_L_14_336_VISION_CONFIG,
        hidden_size=768,
        intermediate_size=3072,
        num_hidden_layers=12,
        num_attention_heads=12,
        patch_size=14,
        image_size=336,
        projection_dim=512,
    ),
}
TEXT_SIZES = {
    "small": dict(d_model=512, d_ff=1024, d_kv=64, num_heads=6, num_layers=8, num_decoder_layers=8),
    "base": dict(d_model=768, d_ff=2048, d_kv=64, num_heads=12, num_layers=12, num_decoder_layers=12),
    "xl": dict(d_model=2048, d_ff=5120, d_kv=64, num_heads=32, num_layers=24, num_decoder_layers=24),
    "xxl": dict(d_model=4096, d_ff=10240, d_kv=64, num_heads=64, num_layers=24, num_decoder_layers=24),
}


def build_config(tokenizer, vision_size: str, text_size: str, vocab_size: int | None) -> CLIPFlanT5Config:
    vision = CLIPVisionConfig(**VISION_SIZES[vision_size])
    return flant5_config(tokenizer, vision, vocab_size, **TEXT_SIZES[text_size])


def make_inputs(folder: Path, num_images: int, num_texts: int, seed: int = 0) -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(seed)
    paths = []
    for index in range(num_images):
        height, width = int(rng.integers(200, 640)), int(rng.integers(200, 640))
        path = folder / f"image_{index}.png"
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    texts = []
    for index in range(num_texts):
        color, shape, position = COLORS[index % len(COLORS)], SHAPES[index % len(SHAPES)], POSITIONS[index % 4]
        # Texts of different lengths, so that padding and bucketing matter as in real captions.
        texts.append(f"a {color} {shape}" + f" on the {position} next to a {shape}" * (index % 3))
    return paths, texts


def _malloc_trim() -> str:
    """Give memory that glibc's malloc keeps after frees back to the OS, so that a later peak is the block's own."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        libc.malloc_trim(0)
        return "; glibc malloc_trim(0) before each method"
    except (OSError, AttributeError, TypeError):
        return ""


class PeakMemory:
    """Extra peak memory of a block in MiB, on top of what was allocated when it started (see the module docstring)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.resettable = Path("/proc/self/clear_refs").exists() and Path("/proc/self/status").exists()
        if device.type == "cuda":
            self.method = "torch.cuda.max_memory_allocated"
        elif self.resettable:
            self.method = "peak RSS (VmHWM) reset before each method"
        else:
            self.method = "getrusage max RSS (cannot be reset: a later method may show 0)"

    @staticmethod
    def _status_kib(field: str) -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise KeyError(field)

    def __enter__(self):
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self.start = torch.cuda.memory_allocated(self.device)
        elif self.resettable:
            self.method = self.method.split(";")[0] + _malloc_trim()
            Path("/proc/self/clear_refs").write_text("5")
            self.start = self._status_kib("VmRSS") * 1024
        else:
            self.start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            peak = torch.cuda.max_memory_allocated(self.device)
        elif self.resettable:
            peak = self._status_kib("VmHWM") * 1024
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        self.extra_mib = (peak - self.start) / 2**20


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(function, device: torch.device) -> tuple[float, float, torch.Tensor]:
    """(seconds, peak extra MiB, result) of one call."""
    with PeakMemory(device) as memory:
        synchronize(device)
        start = time.perf_counter()
        result = function()
        synchronize(device)
        seconds = time.perf_counter() - start
    return seconds, memory.extra_mib, result


def model_flops_per_pair(
    config: CLIPFlanT5Config, prompt_length: int, answer_length: int, texts_per_image: int
) -> float:
    """Forward FLOPs of one scored pair (2 per multiply-add): matmuls of the T5 encoder, decoder and LM head on
    the answer positions, attention scores, and the vision tower + projector shared by `texts_per_image` pairs."""
    vision, text = config.vision_config, config.text_config
    inner = text.num_heads * text.d_kv
    encoder_layer = 4 * text.d_model * inner + 3 * text.d_model * text.d_ff
    decoder_layer = 6 * text.d_model * inner + 3 * text.d_model * text.d_ff  # self-attention + cross q, o
    encoder = text.num_layers * (encoder_layer * prompt_length + 2 * prompt_length**2 * inner)
    decoder = text.num_decoder_layers * (
        decoder_layer * answer_length + 2 * answer_length * (prompt_length + answer_length) * inner
    )
    decoder += answer_length * text.d_model * text.vocab_size
    # The cross-attention keys/values of the encoder output are projected once per pair.
    decoder += text.num_decoder_layers * 2 * text.d_model * inner * prompt_length
    tokens = (vision.image_size // vision.patch_size) ** 2 + 1
    vision_layer = 4 * vision.hidden_size**2 + 2 * vision.hidden_size * vision.intermediate_size
    image = vision.num_hidden_layers * (vision_layer * tokens + 2 * tokens**2 * vision.hidden_size)
    image += tokens * (vision.hidden_size * text.d_model + text.d_model**2)
    return 2 * (encoder + decoder + image / texts_per_image)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vision-size", choices=sorted(VISION_SIZES), default="base")
    parser.add_argument("--text-size", choices=sorted(TEXT_SIZES), default="small")
    parser.add_argument("--preset", choices=("xxl", "xl"), help="full-size CLIP-FlanT5 shape (FlanT5 vocabulary)")
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--texts", type=int, default=8)
    parser.add_argument(
        "--batch-size", type=int, default=16, help="pairs per forward, for both methods (t2v-metrics' default)"
    )
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--compile", action="store_true", help="torch.compile the vision tower and the T5 stacks")
    parser.add_argument("--no-baseline", action="store_true", help="time our scorer only (no naive original)")
    parser.add_argument(
        "--peak-tflops", type=float, help="the device's peak TFLOP/s in --dtype, for model-FLOP utilisation"
    )
    args = parser.parse_args()

    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    if not args.no_baseline and (device.type != "cpu" or dtype != torch.float32):
        parser.error("The naive baseline runs in fp32 on CPU; pass --no-baseline for other devices or dtypes.")
    torch.manual_seed(0)
    tokenizer = build_tiny_tokenizer()
    text_size = args.preset or args.text_size
    config = build_config(
        tokenizer, "large" if args.preset else args.vision_size, text_size, 32128 if args.preset else None
    )

    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        images, texts = make_inputs(folder, args.images, args.texts)
        processor = tiny_processor(tokenizer, config)
        with torch.device(device):
            model = CLIPFlanT5ForConditionalGeneration._from_config(config, dtype=dtype).eval()
        if args.no_baseline:
            scorer = VQAScore(model=model, processor=processor, batch_size=args.batch_size)
        else:
            checkpoint = folder / "original"
            save_original_checkpoint(model, train_tiny_sentencepiece(), checkpoint)
            T5Tokenizer.from_pretrained(checkpoint, extra_ids=100).save_pretrained(checkpoint)
            del model
            scorer = VQAScore.from_pretrained(checkpoint, dtype=dtype, device=device, batch_size=args.batch_size)
            naive = NaiveOriginal(checkpoint)
        if args.compile:
            inner = scorer.model.model
            inner.vision_tower = torch.compile(inner.vision_tower, dynamic=True)
            inner.language_model.encoder = torch.compile(inner.language_model.encoder, dynamic=True)
            inner.language_model.decoder = torch.compile(inner.language_model.decoder, dynamic=True)

        vision_params = sum(p.numel() for p in scorer.model.model.vision_tower.parameters())
        total_params = sum(p.numel() for p in scorer.model.parameters())
        pairs = args.images * args.texts
        print(f"model: {total_params / 1e6:.0f}M parameters (vision tower {vision_params / 1e6:.0f}M), {args.dtype}")
        print(
            f"device: {device}"
            + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
            + f", {torch.get_num_threads()} CPU threads; {args.images} images x {args.texts} texts = {pairs} pairs"
        )

        def run_ours(images_used):
            return scorer.score_matrix(images_used, texts)

        def run_naive(images_used):
            # The original evaluation: pairs in input order, `batch_size` at a time, each with its own image pass.
            pair_images = [image for image in images_used for _ in texts]
            prompts = [stage2_prompt(DEFAULT_QUESTION_TEMPLATE.format(text)) for _ in images_used for text in texts]
            chunks = []
            for start in range(0, len(prompts), args.batch_size):
                stop = min(start + args.batch_size, len(prompts))
                chunks.append(naive.score(pair_images[start:stop], prompts[start:stop], ["Yes"] * (stop - start)))
            return torch.cat(chunks).view(len(images_used), len(texts))

        # Warm-up (allocator, kernels; with --compile, every shape the timed run will see).
        run_ours(images if args.compile else images[:1])
        methods = {"ours (score_matrix)": run_ours}
        if not args.no_baseline:
            run_naive(images[:1])
            methods["naive original"] = run_naive
        # Interleaved repeats, best time of each: a load change on a shared machine then hits both methods alike.
        load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        results = {name: [] for name in methods}
        for _ in range(args.repeats):
            for name, method in methods.items():
                results[name].append(measure(lambda method=method: method(images), device))
        load_after = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        rates, scores = {}, {}
        for name, runs in results.items():
            seconds = min(run[0] for run in runs)
            rates[name], scores[name] = pairs / seconds, runs[0][2]
            print(
                f"{name:<21} {rates[name]:8.3f} pairs/s  (best of {len(runs)}: {seconds:.1f} s; all: "
                f"{', '.join(f'{run[0]:.1f}' for run in runs)} s)  peak extra memory {max(run[1] for run in runs):6.0f} MiB"
            )
        ours_rate = rates["ours (score_matrix)"]
        if not args.no_baseline:
            print(f"speed-up: {ours_rate / rates['naive original']:.2f}x pairs/s")
            ours_scores, naive_scores = scores["ours (score_matrix)"], scores["naive original"]
            difference = (ours_scores - naive_scores).abs().max().item()
            relative = ((ours_scores - naive_scores).abs() / naive_scores).max().item()
            print(
                f"scores: max |ours - naive| = {difference:.2e} (max relative {relative:.2e}), "
                f"mean score {naive_scores.mean():.4e}"
            )
        print(f"memory measured as: {PeakMemory(device).method}{_malloc_trim() if device.type == 'cpu' else ''}")
        print(f"load average (1 min) before / after the timed runs: {load_before:.2f} / {load_after:.2f}")

        prompt_length = np.mean(
            [len(processor.encode_prompt(processor.chat_prompt(DEFAULT_QUESTION_TEMPLATE.format(t)))) for t in texts]
        )
        flops = model_flops_per_pair(config, prompt_length, len(processor.encode_target("Yes")), args.texts)
        print(
            f"model FLOPs per pair (forward): {flops / 1e9:.1f} GFLOP -> ours {ours_rate * flops / 1e12:.3f} TFLOP/s"
        )
        if args.peak_tflops:
            print(
                f"model-FLOP utilisation: {100 * ours_rate * flops / (args.peak_tflops * 1e12):.1f}% of {args.peak_tflops} TFLOP/s"
            )


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
