"""VQAScore throughput: our `VQAScore.score_matrix` against two baselines on the same random CLIP-FlanT5 weights, in
one process: the original procedure batched (`--batch-sizes` pairs per forward, every pair with its own image
pass, as the original evaluation code batched them) and the original package's user path (t2v-metrics' `clip_t5`
`batch_forward` calls `forward` once per pair: per image, per pair, batch 1).

    HF_HUB_OFFLINE=1 python benchmarks/bench_score.py                      # vision-heavy shape, CPU fp32
    HF_HUB_OFFLINE=1 python benchmarks/bench_score.py --shape t5-heavy     # T5-dominated shape
    HF_HUB_OFFLINE=1 python benchmarks/bench_score.py --shape t5-heavy --compile --bf16

Shapes (random weights, the tiny test tokenizer's vocabulary; prompts are the VQAScore chat prompt):
- `vision-heavy` (default): CLIP ViT-B/14-336-shaped tower (576 patches) + FlanT5-small-shaped T5 (8+8 layers);
- `t5-heavy`: 384-wide 6-layer ViT/14 at 224 px (256 patches, ~405-token prompts) + T5 d_model 512, 6+6 layers,
  gated-GELU d_ff 1024;
- `--preset xl|xxl`: the real CLIP-FlanT5 shapes (ViT-L/14-336 + FlanT5-XL/XXL, 32128-token vocabulary), for GPUs.

Methods (rows of the report): `ours` (score_matrix; on SDPA the fused T5 path of `t5_inference`),
`ours, transformers T5` (`fused=False`: transformers' T5 forward), `ours, compiled` (`--compile`: `compile=True`,
its compilation time reported separately), `ours, bf16` (`--bf16`, CPU: its score deviation from ours in fp32),
`original, batched` and `original, per pair` (tests/support/original_reference.py, the naive re-implementation). On CUDA
(`--device cuda --dtype bfloat16`) every method also runs per `--attn` implementation (sdpa, eager,
flex_attention) and per `--batch-sizes`.

Each method first runs once under `torch.utils.flop_counter.FlopCounterMode` on all the pairs (the warm-up; a
compiled method is counted on its uncompiled twin), then `--repeats` timed runs, interleaved across methods so that a
load change on a shared machine hits all alike; the best time is reported. A square GEMM in `--dtype` is timed in
the same run (best of several, before, between the rounds and after) as the hardware's achievable peak: each
method's counted FLOPs per second are reported against it, and against `--peak-tflops` (the card's datasheet peak)
when given. Where the machine's speed drifts, best times can come from different moments: the report also gives the
median over rounds of each round's ratio to the baseline and share of that round's GEMM rate.

Peak memory is measured during the timed runs: on CPU, the process's peak resident set size (Linux VmHWM, reset
through /proc/self/clear_refs before each method, after glibc's `malloc_trim(0)` has returned freed memory to the OS;
elsewhere `resource.getrusage` max RSS, which cannot be reset) minus the resident size when the method started, i.e.
the memory the method needed on top of the loaded weights; on CUDA, `torch.cuda.max_memory_allocated`.

On a shared CPU, `--threads 1` avoids OpenMP threads waiting on each other while the scheduler runs other processes
(the "x orig. CPU" column, from process CPU time, is the least load-sensitive ratio). GPU (H100/H200 SXM, bf16 dense
peak 989 TFLOP/s; the variant that fails its warm-up, e.g. flex attention, is reported and left out; MFU counts the
FLOPs each method executes, not the formula's):
    HF_HUB_OFFLINE=1 python benchmarks/bench_score.py --device cuda --dtype bfloat16 --preset xxl \
        --batch-sizes 1,16 --attn sdpa,eager,flex_attention --peak-tflops 989 --profile prof

`--profile DIR` then runs ours once more (largest batch) under torch.profiler: the operators by own device (or CPU)
time, the share of the call the GPU was busy, and a Chrome trace (DIR/trace.json).
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import CLIPVisionConfig


# The naive original procedure lives with the parity tests; the benchmark reuses it rather than copying it.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # measuring.py, also when imported from elsewhere
from measuring import PeakMemory, count_flops, gemm_tflops, malloc_trim, measure, profile  # noqa: E402

from tests.support.original_reference import (  # noqa: E402
    NaiveOriginal,
    original_state_dict,
    save_original_checkpoint,
    stage2_prompt,
)
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


def _vit(width: int, layers: int, image_size: int, projection_dim: int) -> dict:
    """A CLIP ViT/14 vision config of `width` (64-wide heads, 4x MLP), otherwise as CLIP ViT-L/14-336."""
    return dict(
        CLIP_VIT_L_14_336_VISION_CONFIG,
        hidden_size=width,
        intermediate_size=4 * width,
        num_hidden_layers=layers,
        num_attention_heads=width // 64,
        patch_size=14,
        image_size=image_size,
        projection_dim=projection_dim,
    )


VISION_SIZES = {
    "small": _vit(384, 6, 224, 384),
    "large": CLIP_VIT_L_14_336_VISION_CONFIG,
    "base": _vit(768, 12, 336, 512),
}
TEXT_SIZES = {
    "small": dict(d_model=512, d_ff=1024, d_kv=64, num_heads=6, num_layers=8, num_decoder_layers=8),
    "small-6": dict(d_model=512, d_ff=1024, d_kv=64, num_heads=6, num_layers=6, num_decoder_layers=6),
    "base": dict(d_model=768, d_ff=2048, d_kv=64, num_heads=12, num_layers=12, num_decoder_layers=12),
    "xl": dict(d_model=2048, d_ff=5120, d_kv=64, num_heads=32, num_layers=24, num_decoder_layers=24),
    "xxl": dict(d_model=4096, d_ff=10240, d_kv=64, num_heads=64, num_layers=24, num_decoder_layers=24),
}

MODEL_SHAPES = {"vision-heavy": ("base", "small"), "t5-heavy": ("small", "small-6")}


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


def original_methods(naive, images, texts, batch_size: int) -> dict:
    """The original procedure, batched (pairs in input order, each with its own image pass) and per pair."""
    pair_images = [image for image in images for _ in texts]
    prompts = [stage2_prompt(DEFAULT_QUESTION_TEMPLATE.format(text)) for _ in images for text in texts]

    def batched():
        chunks = []
        for start in range(0, len(prompts), batch_size):
            stop = min(start + batch_size, len(prompts))
            chunks.append(naive.score(pair_images[start:stop], prompts[start:stop], ["Yes"] * (stop - start)))
        return torch.cat(chunks).view(len(images), len(texts))

    def per_pair():
        scores = [naive.score([image], [prompt], ["Yes"]) for image, prompt in zip(pair_images, prompts)]
        return torch.cat(scores).view(len(images), len(texts))

    return {f"original, batched ({batch_size})": batched, "original, per pair (1)": per_pair}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=sorted(MODEL_SHAPES), default="vision-heavy")
    parser.add_argument("--vision-size", choices=sorted(VISION_SIZES), help="overrides --shape's vision tower")
    parser.add_argument("--text-size", choices=sorted(TEXT_SIZES), help="overrides --shape's T5")
    parser.add_argument("--preset", choices=("xxl", "xl"), help="full-size CLIP-FlanT5 shape (FlanT5 vocabulary)")
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--texts", type=int, default=8)
    parser.add_argument("--batch-sizes", default="16", help="pairs per forward, comma-separated (t2v-metrics: 16)")
    parser.add_argument("--attn", default="sdpa", help="T5 attention implementations, comma-separated")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--compile", action="store_true", help="also time ours with compile=True")
    parser.add_argument("--bf16", action="store_true", help="also time ours in bf16 (CPU fp32 runs)")
    parser.add_argument("--no-baseline", action="store_true", help="time our scorer only (no original procedure)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--peak-tflops", type=float, help="the device's datasheet peak TFLOP/s in --dtype")
    parser.add_argument("--profile", type=Path, help="profile one run of `ours` (largest batch) into this folder")
    args = parser.parse_args()

    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    if args.threads:
        torch.set_num_threads(args.threads)
    batch_sizes = [int(size) for size in args.batch_sizes.split(",")]
    implementations = args.attn.split(",")
    torch.manual_seed(0)
    tokenizer = build_tiny_tokenizer()
    vision_size, text_size = MODEL_SHAPES[args.shape]
    if args.preset:
        vision_size, text_size = "large", args.preset
    config = build_config(
        tokenizer, args.vision_size or vision_size, args.text_size or text_size, 32128 if args.preset else None
    )

    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        images, texts = make_inputs(folder, args.images, args.texts)
        processor = tiny_processor(tokenizer, config)
        with torch.device(device):
            model = CLIPFlanT5ForConditionalGeneration._from_config(config, dtype=dtype).eval()
        scorers = {}
        for batch_size in batch_sizes:
            for implementation in implementations:
                suffix = (
                    f" [{implementation}, batch {batch_size}]" if len(batch_sizes) + len(implementations) > 2 else ""
                )
                for name, fused in (("ours", None), ("ours, transformers T5", False)):
                    if fused is None and implementation != "sdpa":
                        continue  # the fused path is SDPA only; other implementations run transformers' T5
                    scorers[name + suffix] = (
                        VQAScore(model, processor, batch_size=batch_size, fused=fused),
                        implementation,
                    )
                if args.compile and implementation == "sdpa":
                    scorers[f"ours, compiled{suffix}"] = (
                        VQAScore(model, processor, batch_size=batch_size, compile=True),
                        implementation,
                    )
        if args.bf16 and dtype == torch.float32:
            bf16_model = CLIPFlanT5ForConditionalGeneration._from_config(config, dtype=torch.bfloat16).eval()
            bf16_model.load_state_dict(model.state_dict())
            scorers["ours, bf16"] = (VQAScore(bf16_model.to(device), processor, batch_size=batch_sizes[-1]), "sdpa")
        methods = {}
        for name, (scorer, implementation) in scorers.items():

            def run(scorer=scorer, implementation=implementation):
                scorer.model.model.language_model.set_attn_implementation(implementation)
                return scorer.score_matrix(images, texts)

            methods[name] = run
        if not args.no_baseline:
            checkpoint = save_original_checkpoint(
                model, train_tiny_sentencepiece(), folder / "original", weights=False
            )
            naive = NaiveOriginal(checkpoint, state=original_state_dict(model), device=device, dtype=dtype)
            for batch_size in sorted(batch_sizes, reverse=True):
                methods.update(original_methods(naive, images, texts, batch_size))
            methods["original, per pair (1)"] = methods.pop("original, per pair (1)")  # once, last

        total_params = sum(p.numel() for p in model.parameters())
        vision_params = sum(p.numel() for p in model.model.vision_tower.parameters())
        pairs = args.images * args.texts
        prompt_length = np.mean(
            [len(processor.encode_prompt(processor.chat_prompt(DEFAULT_QUESTION_TEMPLATE.format(t)))) for t in texts]
        )
        print(f"model: {total_params / 1e6:.0f}M parameters (vision tower {vision_params / 1e6:.0f}M), {args.dtype}")
        print(
            f"device: {device}"
            + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
            + f", torch {torch.__version__}, {torch.get_num_threads()} CPU threads; {args.images} images x {args.texts} "
            f"texts = {pairs} pairs, "
            f"prompts of {prompt_length:.0f} tokens on average"
        )

        peak = gemm_tflops(device, dtype)
        flops, scores, warmup = {}, {}, {}
        for name, method in list(methods.items()):
            try:
                if "compiled" in name:
                    # FlopCounterMode does not see inside compiled graphs; the compiled twin does the same matmuls.
                    start = time.perf_counter()
                    scores[name] = method()
                    warmup[name] = time.perf_counter() - start
                    flops[name] = flops[name.replace("ours, compiled", "ours")]
                else:
                    flops[name], scores[name] = count_flops(method)
            except Exception as error:  # one failing variant (e.g. flex attention) must not lose the others' figures
                print(f"{name}: FAILED, left out: {type(error).__name__}: {str(error)[:300]}")
                del methods[name]
        load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        results = {name: [] for name in methods}
        round_peaks = []
        for _ in range(args.repeats):
            for name, method in methods.items():
                results[name].append(measure(method, device))
            round_peaks.append(gemm_tflops(device, dtype))
            peak = max(peak, round_peaks[-1])  # each round: the best moment of a shared machine
        load_after = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        peak = max(peak, gemm_tflops(device, dtype))

        reference_name = next(name for name in methods if name.startswith("ours"))
        reference = scores[reference_name]
        # Ratios: against the original procedure batched at the largest batch size, and per pair (its user path).
        baseline = next((name for name in methods if name.startswith("original, batched")), None)
        per_pair = "original, per pair (1)" if baseline else None
        print(f"GEMM peak measured in this run ({args.dtype} square matmul): {peak * 1e3:.0f} GFLOP/s")
        print(
            f"{'method':<44} {'pairs/s':>8} {'x orig.':>7} {'x pair':>6} {'GFLOP/pair':>10} {'GFLOP/s':>8} {'% GEMM':>6}"
            + (f" {'MFU %':>6}" if args.peak_tflops else "")
            + f" {'max rel. diff':>13} {'mem MiB':>8} {'x orig. CPU':>11}  times (s)"
        )
        rates = {name: pairs / min(run[0] for run in runs) for name, runs in results.items()}
        # Process CPU time, less sensitive than wall time to other processes on a shared machine.
        cpu_rates = {name: pairs / min(run[2] for run in runs) for name, runs in results.items()}

        def ratio(value: float, against: float | None, width: int) -> str:
            return f"{value / against:{width}.2f}" if against else f"{'-':>{width}}"  # '-': no baseline timed

        for name, runs in results.items():
            achieved = rates[name] * flops[name] / pairs / 1e9
            relative = ((scores[name] - reference).abs() / reference).max().item()
            print(
                f"{name:<44} {rates[name]:8.3f} {ratio(rates[name], rates.get(baseline), 7)}"
                f" {ratio(rates[name], rates.get(per_pair), 6)} {flops[name] / pairs / 1e9:10.2f} {achieved:8.1f} "
                f"{100 * achieved / (peak * 1e3):6.1f}"
                + (f" {100 * achieved / (args.peak_tflops * 1e3):6.1f}" if args.peak_tflops else "")
                + f" {relative:13.2e} {max(run[1] for run in runs):8.0f}"
                + f" {ratio(cpu_rates[name], cpu_rates.get(baseline), 11)}"
                + f"  {', '.join(f'{run[0]:.2f}' for run in runs)}"
            )
        print(
            f"max rel. diff: max over pairs of |score - {reference_name}| / {reference_name}; mean score {reference.mean():.4e}"
        )
        # On a shared machine whose speed drifts, best times can come from different moments; within a round the
        # methods run back to back, so per-round ratios and efficiencies (against that round's GEMM) drift less.
        print(f"median over the {args.repeats} rounds, each against the same round's baseline and GEMM:")
        for name, runs in results.items():
            shares = [flops[name] / run[0] / (round_peak * 1e12) for run, round_peak in zip(runs, round_peaks)]
            speedup = "    -"
            if baseline:
                speedup = f"{np.median([base[0] / run[0] for run, base in zip(runs, results[baseline])]):5.2f}"
            print(f"  {name:<44} x orig. {speedup}   % GEMM {100 * np.median(shares):5.1f}")
        for name, seconds in warmup.items():
            print(
                f"{name}: first call (compilation + one run) {seconds:.1f} s, then {min(r[0] for r in results[name]):.1f} s per run"
            )
        model_flops = model_flops_per_pair(config, prompt_length, len(processor.encode_target("Yes")), args.texts)
        print(f"model FLOPs per pair (formula, image shared by {args.texts} texts): {model_flops / 1e9:.2f} GFLOP")
        if args.peak_tflops:
            # MFU as PaLM defines it (the model's FLOPs, whatever a method skips or recomputes); the table's counts
            # what each method executes, which is lower for ours (folded cross-attention, logits on labels only).
            by_formula = ", ".join(
                f"{name} {100 * rates[name] * model_flops / (args.peak_tflops * 1e12):.1f}%" for name in results
            )
            print(f"MFU from the formula's FLOPs: {by_formula}")
        print(f"memory measured as: {PeakMemory(device).method}{malloc_trim() if device.type == 'cpu' else ''}")
        print(f"load average (1 min) before / after the timed runs: {load_before:.2f} / {load_after:.2f}")
        if args.profile:
            # Our fused scorer at the largest batch size (the methods are in batch-size order).
            profiled = [name for name in methods if name == "ours" or name.startswith("ours [")][-1]
            print(f"profile of {profiled} ({args.profile}):")
            profile(methods[profiled], device, args.profile)


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
