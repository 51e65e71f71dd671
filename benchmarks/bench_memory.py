"""Memory and accuracy of CLIP-FlanT5 in lower precision: the README's table.

    HF_HUB_OFFLINE=1 python benchmarks/bench_memory.py --model outputs/clip-flant5-demo      # CPU: all three parts
    HF_HUB_OFFLINE=1 python benchmarks/bench_memory.py --device cuda                           # GPU: XXL-shaped scoring

1. Weight bytes of XL and XXL per dtype/quantization, computed from their parameter counts (the models built on the
   meta device from `tests/fixtures/clip-flant5-{xl,xxl}-config.json`): which linears are quantized and what stays
   in the compute dtype follow `transformers_clipflant5.scoring.precision`; int8 = 1 byte per weight + an fp32 scale per
   output row, int4 (NF4) = half a byte + an 8-bit scale per block of 64 + an fp32 scale per 256 blocks. The formula
   is checked against the bytes torchao and bitsandbytes actually store for a quantized model.
2. Peak CPU memory, each mode in a fresh process, at shapes a shared 24 GiB machine holds: the real ViT-L/14-336
   tower and projector, FlanT5-XL's width and vocabulary, `--peak-layers` encoder and decoder layers (random
   weights, fp32 safetensors). Reported, above the level after the imports: the peak private memory while loading
   (RssAnon sampled every 5 ms: the copies of the weights made; 1.0x = one copy), the peak resident set size
   while loading (VmHWM: also the pages of the memory-mapped checkpoint read, page cache the kernel can drop) and
   while scoring 2 images x 4 texts, and the private memory scoring allocates above the loaded model. The
   full-depth scoring peak is estimated as the full model's weight bytes plus that (activations do not grow with
   depth: layers run in turn).
3. Accuracy against fp32 on a TRAINED model (`--model`, default the demo's `outputs/clip-flant5-demo`, trained by
   `python examples/train_demo.py`), over the held-out images of its synthetic data (`<model>-data/eval.json`): each
   image with its caption, a mismatched caption and the caption of a partner image. Reported: Spearman rank
   correlation and mean/max |score difference| against fp32, ROC-AUC of matching vs mismatched captions, and
   Winoground-style text/image/group accuracy over (image pair x caption pair) groups.

With `--device cuda` (part 1 and then this): an XXL-shaped model (real shapes, random weights, bf16) built on the
GPU, quantized in place with the same backends, settings and skipped modules as `from_pretrained(quantization=...)`,
scores 4 images x 16 texts; reported per mode: weights allocated, peak allocated while scoring, pairs/s (best of 2,
after a warm-up with the same call). Needs torchao (int8) and bitsandbytes (int4): the package's `quant` extra; rows
whose backend is missing say so.
"""

import argparse
import gc
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_convert_memory import AnonymousPeak, status_bytes  # noqa: E402
from measuring import malloc_trim  # noqa: E402

from transformers_clipflant5 import CLIPFlanT5Config, CLIPFlanT5ForConditionalGeneration, VQAScore  # noqa: E402
from transformers_clipflant5.evaluation import winoground_metrics  # noqa: E402
from transformers_clipflant5.original import config_from_original  # noqa: E402
from transformers_clipflant5.scoring.precision import (  # noqa: E402
    build_quantization_config,
    linear_quantization,
    linear_weight_bytes,
    quantize_int4_wo,
)
from transformers_clipflant5.testing.synthetic import roc_auc  # noqa: E402
from transformers_clipflant5.testing.tiny import build_tiny_tokenizer, tiny_processor  # noqa: E402


GB = 1e9
FIXTURES = REPO_ROOT / "tests" / "fixtures"


def build_config(size: str, layers: int | None = None, image_token_id: int = 32100) -> CLIPFlanT5Config:
    original = json.loads((FIXTURES / f"clip-flant5-{size}-config.json").read_text())
    if layers is not None:
        original.update(num_layers=layers, num_decoder_layers=layers)
    return config_from_original(original, image_token_id=image_token_id)


def weight_bytes(model: torch.nn.Module, quantization: str | None, dtype: torch.dtype) -> dict[str, float]:
    """Bytes of the whole model and of its T5 part, as stored under `quantization` with the rest in `dtype`."""
    kept_fp32 = set()
    if dtype == torch.float16:  # transformers keeps T5's `wo` in fp32 under fp16
        kept_fp32 = {name for name, _ in model.named_modules() if name.endswith(".wo")}
    totals = {"all": 0, "t5": 0}
    seen = set()  # tied parameters (T5's embedding is shared by the encoder and the decoder) count once
    for name, module in model.named_modules():
        own = [(key, param) for key, param in module.named_parameters(recurse=False) if id(param) not in seen]
        seen.update(id(param) for _, param in own)
        if not own:
            continue
        size = 4 if name in kept_fp32 else dtype.itemsize
        stored_as = linear_quantization(name, dtype, quantization) if isinstance(module, torch.nn.Linear) else None
        if stored_as is not None:
            stored = linear_weight_bytes(module.in_features, module.out_features, stored_as, size)
            stored += sum(param.numel() * size for key, param in own if key != "weight")
        else:
            stored = sum(param.numel() * size for _, param in own)
        totals["all"] += stored
        if name.startswith("model.language_model") or name == "lm_head":
            totals["t5"] += stored
    return totals


MODES = [
    ("fp32", None, torch.float32),
    ("bf16", None, torch.bfloat16),
    ("fp16 (wo in fp32)", None, torch.float16),
    ("int8, rest fp32 (CPU default)", "int8", torch.float32),
    ("int8, rest bf16", "int8", torch.bfloat16),
    ("int4 (NF4), rest fp32 (CPU)", "int4", torch.float32),
    ("int4 (NF4), rest bf16", "int4", torch.bfloat16),
]


def weights_table() -> None:
    print("\n## Weight bytes (from parameter counts)\n")
    print("| mode | XL total | XL T5 part (x fp32) | XXL total | XXL T5 part (x fp32) |")
    print("|---|---|---|---|---|")
    models = {}
    for size in ("xl", "xxl"):
        with torch.device("meta"):
            models[size] = CLIPFlanT5ForConditionalGeneration(build_config(size))
    reference = {size: weight_bytes(model, None, torch.float32) for size, model in models.items()}
    for label, quantization, dtype in MODES:
        cells = []
        for size, model in models.items():
            bytes_ = weight_bytes(model, quantization, dtype)
            cells += [
                f"{bytes_['all'] / GB:.2f} GB",
                f"{bytes_['t5'] / GB:.2f} GB ({bytes_['t5'] / reference[size]['t5']:.3f}x)",
            ]
        print(f"| {label} | " + " | ".join(cells) + " |")
    counts = {size: sum(p.numel() for p in model.parameters()) / 1e9 for size, model in models.items()}
    print(f"\nParameters: XL {counts['xl']:.2f} B, XXL {counts['xxl']:.2f} B (vision tower and projector included).")


def stored_bytes(model: torch.nn.Module) -> int:
    """Bytes a loaded model's parameters take as stored: torchao's tensor subclasses by their inner tensors,
    bitsandbytes' 4-bit weights with their block scales (`quant_state`)."""
    stored = 0
    for param in model.parameters():
        names = getattr(param, "tensor_data_names", None)
        tensors = [getattr(param, name) for name in names] if names else [param]
        state = getattr(param, "quant_state", None)
        if state is not None:
            tensors += [state.absmax, *([state.state2.absmax] if state.nested else [])]
        stored += sum(tensor.numel() * tensor.element_size() for tensor in tensors)
    return stored


def check_formula(folder: Path) -> None:
    """The bytes torchao (int8) and bitsandbytes (int4) store for a quantized model against `weight_bytes`' formula."""
    for quantization in ("int8", "int4"):
        scorer = VQAScore.from_pretrained(folder, quantization=quantization, dtype="float32", device="cpu")
        with torch.device("meta"):
            model = CLIPFlanT5ForConditionalGeneration(scorer.model.config)
        computed = weight_bytes(model, quantization, torch.float32)["all"]
        print(
            f"\nFormula check ({quantization}, {folder.name}): stored {stored_bytes(scorer.model):,} bytes, "
            f"the formula says {computed:,}."
        )


# --------------------------------------------------------------------------------------------------------------------
# Peak memory on CPU


PEAK_MODES = {
    "fp32": (None, "float32"),
    "bf16": (None, "bfloat16"),
    "int8": ("int8", "float32"),
    "int8+bf16": ("int8", "bfloat16"),
    "int4": ("int4", "float32"),
    "int4+bf16": ("int4", "bfloat16"),
}


def _reset_peak_rss() -> int:
    """Reset the kernel's peak resident set size (VmHWM) to the current one, and return that."""
    Path("/proc/self/clear_refs").write_text("5")
    return status_bytes("VmRSS")


def peak_child(folder: str, mode: str) -> None:
    """Load and score in this (fresh) process; print peak resident memory (VmHWM: private memory plus the touched
    pages of the memory-mapped checkpoint) and peak private memory (RssAnon: copies), above the post-import level."""
    from PIL import Image

    quantization, dtype = PEAK_MODES[mode]
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (336, 336, 3), dtype=np.uint8)) for _ in range(2)]
    texts = ["a red circle on the left", "a blue square", "two dogs playing in the snow next to a tree", "a cat"]
    baseline, baseline_anonymous = _reset_peak_rss(), status_bytes("RssAnon")
    sampler = AnonymousPeak()
    sampler.start()
    scorer = VQAScore.from_pretrained(folder, dtype=dtype, quantization=quantization, device="cpu", batch_size=8)
    load_anonymous = sampler.stop() - baseline_anonymous
    load_rss = status_bytes("VmHWM") - baseline
    # Memory freed while loading (e.g. the fp32 tensors a quantization read) goes back to the OS before the reset,
    # so that the scoring peak is scoring's own.
    malloc_trim()
    _reset_peak_rss()
    loaded_anonymous = status_bytes("RssAnon")
    sampler = AnonymousPeak()
    sampler.start()
    scorer.score_matrix(images, texts)
    score_anonymous = sampler.stop() - loaded_anonymous
    score_rss = status_bytes("VmHWM") - baseline
    print(
        json.dumps(
            {
                "load_rss": load_rss,
                "load_anonymous": load_anonymous,
                "score_rss": score_rss,
                "score_anonymous": score_anonymous,
            }
        )
    )


def peak_table(layers: int, modes: list[str]) -> None:
    print(f"\n## Peak CPU memory: ViT-L/14-336 + projector + FlanT5-XL width, {layers}+{layers} layers (random)\n")
    with tempfile.TemporaryDirectory() as folder:
        tokenizer = build_tiny_tokenizer()
        config = build_config("xl", layers=layers, image_token_id=tokenizer.convert_tokens_to_ids("<image>"))
        model = CLIPFlanT5ForConditionalGeneration(config)
        model.save_pretrained(folder)
        tiny_processor(tokenizer, config).save_pretrained(folder)
        with torch.device("meta"):
            full = CLIPFlanT5ForConditionalGeneration(build_config("xl"))
        del model
        print(
            "| mode | weights at this depth | load: private peak (x weights) | load: peak RSS | scoring: peak RSS "
            "| scoring: private peak above the loaded model | est. full-XL scoring peak (weights + that) |"
        )
        print("|---|---|---|---|---|---|---|")
        for mode in modes:
            quantization, dtype = PEAK_MODES[mode]
            output = subprocess.run(
                [sys.executable, __file__, "--peak-child", folder, mode], capture_output=True, text=True, check=False
            )
            if output.returncode != 0:
                print(f"| {mode} | failed: {output.stderr.strip().splitlines()[-1]} |")
                continue
            result = json.loads(output.stdout.strip().splitlines()[-1])
            with torch.device("meta"):
                shaped = CLIPFlanT5ForConditionalGeneration(config)
            weights = weight_bytes(shaped, quantization, getattr(torch, dtype))["all"]
            # What scoring allocates above the loaded model (activations, image features: private memory) does not
            # grow with depth. (Its RSS also counts the checkpoint pages a quantization read, which stay mapped while
            # the unquantized fp32 weights still live in that mapping: page cache, not a requirement.)
            overhead = result["score_anonymous"]
            estimate = weight_bytes(full, quantization, getattr(torch, dtype))["all"] + max(overhead, 0)
            print(
                f"| {mode} | {weights / GB:.2f} GB | {result['load_anonymous'] / GB:.2f} GB "
                f"({result['load_anonymous'] / weights:.2f}x) | {result['load_rss'] / GB:.2f} GB | "
                f"{result['score_rss'] / GB:.2f} GB | {overhead / GB:+.2f} GB | {estimate / GB:.1f} GB |"
            )


# --------------------------------------------------------------------------------------------------------------------
# Accuracy on a trained model


def accuracy_pairs(data: Path) -> tuple[list[str], list[str], list[tuple[int, int, int, int]], list[int]]:
    """Images, texts, Winoground groups (row indices of i0c0, i0c1, i1c0, i1c1) and each row's match flag."""
    rows = json.loads((data / "eval.json").read_text())
    matching = [row for row in rows if row["match"]]
    mismatched = {row["image"]: row["text"] for row in rows if not row["match"]}
    images, texts, match = [], [], []
    for row in matching:
        for text, flag in ((row["text"], 1), (mismatched[row["image"]], 0)):
            images.append(str(data / row["image"]))
            texts.append(text)
            match.append(flag)
    groups = []
    for first in range(0, len(matching) - 1, 2):
        a, b = matching[first], matching[first + 1]
        if a["text"] == b["text"]:
            continue
        start = len(images)
        for image in (a, b):
            for caption in (a, b):
                images.append(str(data / image["image"]))
                texts.append(caption["text"])
                match.append(int(image is caption))
        groups.append((start, start + 1, start + 2, start + 3))
    return images, texts, groups, match


def accuracy_table(model: Path, data: Path) -> None:
    from scipy.stats import spearmanr
    from torchao.quantization import Int8WeightOnlyConfig
    from transformers import TorchAoConfig

    images, texts, groups, match = accuracy_pairs(data)
    modes = [
        ("fp32", {"dtype": "float32"}),
        ("bf16", {"dtype": "bfloat16"}),
        ("fp16 (wo in fp32)", {"dtype": "float16"}),
        ("int8 (rest fp32)", {"quantization": "int8", "dtype": "float32"}),
        ("int8 (rest bf16)", {"quantization": "int8", "dtype": "bfloat16"}),
        (
            "int8, vision tower + projector too",
            {"quantization_config": TorchAoConfig(Int8WeightOnlyConfig(), modules_to_not_convert=["lm_head"])},
        ),
        ("int4 NF4 (rest fp32)", {"quantization": "int4", "dtype": "float32"}),
        ("int4 NF4 (rest bf16)", {"quantization": "int4", "dtype": "bfloat16"}),
    ]
    print(f"\n## Accuracy against fp32: {model} ({len(images)} pairs, {len(groups)} Winoground-style groups)\n")
    print("| mode | Spearman | mean abs diff | max abs diff | ROC-AUC | Winoground text / image / group |")
    print("|---|---|---|---|---|---|")
    match = np.asarray(match)
    reference = None
    for label, kwargs in modes:
        scorer = VQAScore.from_pretrained(model, device="cpu", **kwargs)
        scores = scorer(images, texts, batch_size=32).double().numpy()
        if reference is None:
            reference = scores
        difference = np.abs(scores - reference)
        matching_rows = [row for row in range(len(scores) - 4 * len(groups)) if match[row]]
        mismatched_rows = [row for row in range(len(scores) - 4 * len(groups)) if not match[row]]
        wino = winoground_metrics(scores[np.asarray(groups)].reshape(-1, 2, 2))
        print(
            f"| {label} | {spearmanr(scores, reference).statistic:.5f} | {difference.mean():.5f} | "
            f"{difference.max():.5f} | {roc_auc(scores[matching_rows], scores[mismatched_rows]):.4f} | "
            f"{wino['text_score']:.1f} / {wino['image_score']:.1f} / {wino['group_score']:.1f} |"
        )


# --------------------------------------------------------------------------------------------------------------------
# GPU


def quantize_in_place(model: torch.nn.Module, mode: str) -> None:
    """Quantize the linears `from_pretrained(quantization=mode)` quantizes (bf16 compute), with the same backend and
    settings: a random model built on the GPU is never written to disk and loaded."""
    config = build_quantization_config(mode, torch.bfloat16)
    if mode == "int8":
        from torchao.quantization import quantize_

        quantize_(
            model,
            config.quant_type,
            filter_fn=lambda module, fqn: (
                type(module) is torch.nn.Linear and linear_quantization(fqn, torch.bfloat16, mode) == "int8"
            ),
        )
        return
    import bitsandbytes

    for name, module in list(model.named_modules()):
        if not isinstance(module, torch.nn.Linear) or linear_quantization(name, torch.bfloat16, mode) != "int4":
            continue
        quantized = bitsandbytes.nn.Linear4bit(
            module.in_features,
            module.out_features,
            bias=module.bias is not None,
            compute_dtype=config.bnb_4bit_compute_dtype,
            quant_type=config.bnb_4bit_quant_type,
            compress_statistics=config.bnb_4bit_use_double_quant,
            device="meta",
        )
        quantized.weight = bitsandbytes.nn.Params4bit(
            module.weight.data,
            requires_grad=False,
            quant_type=config.bnb_4bit_quant_type,
            compress_statistics=config.bnb_4bit_use_double_quant,
        ).to(module.weight.device)  # quantizes
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent), child, quantized)
    quantize_int4_wo(model, torch.bfloat16)


def gpu_table(
    device: torch.device, modes=("bf16", "int8", "int4"), layers: int | None = None, batch_size: int = 32
) -> None:
    """XXL-shaped (or `layers`-deep) scoring of 4 images x 16 texts per mode, `batch_size` pairs per forward."""
    from PIL import Image

    on_cuda = device.type == "cuda"
    tokenizer = build_tiny_tokenizer()
    config = build_config("xxl", layers, image_token_id=tokenizer.convert_tokens_to_ids("<image>"))
    processor = tiny_processor(tokenizer, config)
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)) for _ in range(4)]
    texts = [f"a photo of {index} red circles next to a blue square on the left" for index in range(16)]
    name = torch.cuda.get_device_name(device) if on_cuda else "CPU"
    print(
        f"\n## XXL-shaped scoring on {name} ({len(images)} images x {len(texts)} texts, batch {batch_size}, "
        f"random weights, torch {torch.__version__})\n"
    )
    print("| mode | weights allocated | peak allocated while scoring | pairs/s |")
    print("|---|---|---|---|")
    for mode in modes:
        model = scorer = None
        gc.collect()
        if on_cuda:
            torch.cuda.empty_cache()
        # What earlier rows left allocated (a backend's cache, say) is not this mode's: weights are counted above it.
        left = torch.cuda.memory_allocated(device) if on_cuda else 0
        try:
            with torch.device(device):
                model = CLIPFlanT5ForConditionalGeneration._from_config(config, dtype=torch.bfloat16).eval()
            if mode != "bf16":
                quantize_in_place(model, mode)
            if on_cuda:
                torch.cuda.empty_cache()
            weights = torch.cuda.memory_allocated(device) - left if on_cuda else 0
            scorer = VQAScore(model, processor, batch_size=batch_size)
            # Warmed up with the timed call itself: the library's first calls at each new shape (kernel choice,
            # workspaces) are otherwise paid by whichever row meets that shape first, and later rows look faster.
            scorer.score_matrix(images, texts)
            if on_cuda:
                torch.cuda.synchronize(device)
                torch.cuda.reset_peak_memory_stats(device)
            seconds = float("inf")
            for _ in range(2):
                start = time.perf_counter()
                scores = scorer.score_matrix(images, texts)
                if on_cuda:
                    torch.cuda.synchronize(device)
                seconds = min(seconds, time.perf_counter() - start)
            peak = torch.cuda.max_memory_allocated(device) - left if on_cuda else 0
            if not bool(torch.isfinite(scores).all()):
                raise FloatingPointError(f"non-finite scores in {mode}")
            note = f" ({left / GB:.2f} GB left allocated by earlier rows, not counted)" if left > GB / 100 else ""
            print(f"| {mode} | {weights / GB:.2f} GB | {peak / GB:.2f} GB{note} | {scores.numel() / seconds:.1f} |")
        except Exception as error:  # a missing backend or an unsupported kernel: the row says so, the others run
            print(f"| {mode} | not run: {type(error).__name__}: {str(error)[:200]} | | |")
        finally:
            del model, scorer
            if on_cuda:
                torch.cuda.empty_cache()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--model", type=Path, default=REPO_ROOT / "outputs" / "clip-flant5-demo", help="trained model")
    parser.add_argument("--data", type=Path, help="its synthetic data folder (default: <model>-data)")
    parser.add_argument("--peak-layers", type=int, default=2, help="encoder/decoder layers of the peak-memory model")
    parser.add_argument("--peak-modes", nargs="+", default=list(PEAK_MODES), choices=list(PEAK_MODES))
    parser.add_argument("--gpu-batch-sizes", type=int, nargs="+", default=[32], help="pairs per forward on the GPU")
    parser.add_argument("--gpu-modes", nargs="+", default=["bf16", "int8", "int4"], choices=("bf16", "int8", "int4"))
    parser.add_argument("--skip", nargs="*", default=[], choices=("weights", "peak", "accuracy"))
    parser.add_argument("--peak-child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peak_child:
        peak_child(*args.peak_child)
        return
    torch.manual_seed(0)
    if "weights" not in args.skip:
        weights_table()
    if args.device == "cuda":
        for batch_size in args.gpu_batch_sizes:
            gpu_table(torch.device("cuda"), modes=args.gpu_modes, batch_size=batch_size)
        return
    if "weights" not in args.skip and args.model.is_dir():
        check_formula(args.model)
    if "peak" not in args.skip:
        peak_table(args.peak_layers, args.peak_modes)
    if "accuracy" not in args.skip:
        if not (args.model / "config.json").is_file():
            sys.exit(f"--model {args.model} is not a trained model folder: run `python examples/train_demo.py` first.")
        accuracy_table(args.model, args.data or args.model.with_name(args.model.name + "-data"))


if __name__ == "__main__":
    main()
