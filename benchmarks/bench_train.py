"""Stage-2 training-step throughput and memory: our collator + model against the original trainer's way of doing the
same step, on the same random CLIP-FlanT5 weights and the same batches, in one process.

    HF_HUB_OFFLINE=1 python benchmarks/bench_train.py              # small model on CPU (fp32), ~1-2 minutes
    HF_HUB_OFFLINE=1 python benchmarks/bench_train.py --preset base --steps 6

A step is forward + backward of the stage-2 loss with the vision tower frozen (projector + T5 train); the optimizer
update is the same for both and left out. Batches come from the synthetic coloured-shapes data in the LLaVA layout,
flattened like the LLaVA-1.5 mix (several rows per image), with text-only rows, ordered by our modality-grouped
sampler; both methods get exactly the same rows.

The baseline does what the original LLaVA-fork trainer did per step:
- every row of a batch runs through the vision tower, text-only rows with a zero image, and an image shared by
  several rows is encoded once per row;
- a Python loop over the samples tokenizes each prompt chunk, concatenates embeddings and image features, and pads;
- the loss is computed one sample at a time.
Ours: the collator pads to the longest row of each batch, encodes each distinct image of a batch once (`image_index`),
gives text-only batches one blank image (so every DeepSpeed rank still runs the tower) and the model splices with one
`masked_scatter`; the loss is one cross-entropy over the batch.

A third line shows what grouping by modality and length saves: our step on batches of the same rows in random order
(more padding). Throughput is best-of-`--repeats` over the same batches, methods interleaved; tokens/s counts the
real (unpadded) encoder and decoder tokens. Memory is measured afterwards, one untimed pass over the batches per method,
largest batch reported: on CPU the activations autograd keeps for backward (distinct storages, parameters excluded;
the process's resident size is too coarse to compare steps of this size), on CUDA `torch.cuda.max_memory_allocated`
above what was allocated before the step.

On a GPU (`--device cuda --dtype bfloat16 --preset xl --no-baseline`) it times our step alone on a FlanT5-XL-shaped
model with a ViT-L/14-336-shaped tower, activation checkpointing on, flash-attention 2 on the vision tower when
installed, and reports model-FLOP utilisation against `--peak-tflops` (the card's dense bf16 peak).
"""

import argparse
import os
import random
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import CLIPVisionConfig

from transformers_clipflant5 import CLIPFlanT5ForConditionalGeneration
from transformers_clipflant5.configuration_clip_flant5 import CLIP_VIT_L_14_336_VISION_CONFIG
from transformers_clipflant5.testing.synthetic import write_synthetic_dataset
from transformers_clipflant5.testing.tiny import build_tiny_tokenizer, flant5_config, tiny_processor
from transformers_clipflant5.training.collator import CLIPFlanT5DataCollator
from transformers_clipflant5.training.data import load_llava_dataset
from transformers_clipflant5.training.model import set_trainable_parameters
from transformers_clipflant5.training.sampler import ModalityGroupedSampler
from transformers_clipflant5.training.templates import build_prompt_and_target


PRESETS = {
    # vision: hidden, layers, heads, image, patch; text: d_model, d_ff, layers, heads
    "small": {"vision": (256, 4, 4, 112, 14), "text": (256, 683, 4, 4)},
    "base": {"vision": (768, 12, 12, 224, 16), "text": (768, 2048, 12, 12)},
    "xl": {"vision": "vit-l-14-336", "text": (2048, 5120, 24, 32)},
}


def build_model(preset: str, tokenizer, dtype: torch.dtype, device: str, attn: str | None):
    spec = PRESETS[preset]
    if spec["vision"] == "vit-l-14-336":
        vision = CLIPVisionConfig(**CLIP_VIT_L_14_336_VISION_CONFIG)
    else:
        hidden, layers, heads, image, patch = spec["vision"]
        vision = CLIPVisionConfig(
            hidden_size=hidden,
            intermediate_size=4 * hidden,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            image_size=image,
            patch_size=patch,
            hidden_act="quick_gelu",
        )
    d_model, d_ff, layers, heads = spec["text"]
    vocab_size = (len(tokenizer) + 63) // 64 * 64
    config = flant5_config(
        tokenizer, vision, vocab_size, d_model=d_model, d_ff=d_ff, d_kv=64, num_layers=layers, num_heads=heads
    )
    if attn is not None:
        config.vision_config._attn_implementation = attn
    torch.manual_seed(0)
    model = CLIPFlanT5ForConditionalGeneration(config).to(device=device, dtype=dtype)
    set_trainable_parameters(model, 2)
    return model.train(), tiny_processor(tokenizer, config)


# ----------------------------------------------------------------------------------------------------------------------
# The original trainer's step


def original_step(model, processor, rows, image_folder: Path, device, dtype) -> int:
    """Forward + backward the way the original trainer did it; returns the number of real tokens."""
    inner = model.model
    embed = inner.get_input_embeddings()
    size = processor.image_processor.crop_size
    pixels = []
    for row in rows:
        if row["image_file"] is None:
            pixels.append(torch.zeros(3, size["height"], size["width"]))  # the original's zero image
        else:
            pixels.append(
                processor.image_processor([image_folder / row["image_file"]], return_tensors="pt")["pixel_values"][0]
            )
    features = inner.get_image_features(torch.stack(pixels).to(device, dtype), return_dict=True).pooler_output
    sequences, targets = [], []
    for index, row in enumerate(rows):
        has_image = row["image_file"] is not None
        prompt, target = build_prompt_and_target(row["conversations"], "t5_v1", has_image, processor=processor)
        chunks = prompt.split("<image>")
        pieces = [embed(torch.tensor(processor.tokenizer(chunks[0])["input_ids"], device=device))]
        if has_image:
            pieces.append(features[index])
            pieces.append(embed(torch.tensor(processor.tokenizer(chunks[1])["input_ids"], device=device)))
        sequences.append(torch.cat(pieces))
        targets.append(processor.tokenizer(target)["input_ids"])
    width = max(sequence.shape[0] for sequence in sequences)
    embeds = torch.zeros(len(rows), width, sequences[0].shape[1], device=device, dtype=sequences[0].dtype)
    mask = torch.zeros(len(rows), width, dtype=torch.long, device=device)
    for index, sequence in enumerate(sequences):
        embeds[index, : sequence.shape[0]] = sequence
        mask[index, : sequence.shape[0]] = 1
    target_width = max(len(target) for target in targets)
    labels = torch.full((len(rows), target_width), -100, dtype=torch.long, device=device)
    for index, target in enumerate(targets):
        labels[index, : len(target)] = torch.tensor(target)
    logits = model(
        inputs_embeds=embeds, attention_mask=mask, labels=labels, decoder_attention_mask=labels.ne(-100)
    ).logits
    losses = [F.cross_entropy(logits[index].float(), labels[index], ignore_index=-100) for index in range(len(rows))]
    torch.stack(losses).mean().backward()
    return int(mask.sum()) + int((labels != -100).sum())


def our_step(model, collator, rows, device) -> int:
    batch = {key: value.to(device) for key, value in collator(rows).items()}
    model(**batch).loss.backward()
    return int(batch["attention_mask"].sum()) + int(batch["decoder_attention_mask"].sum())


# ----------------------------------------------------------------------------------------------------------------------
# Measurement


def timed(step, batches, model, device) -> tuple[float, int]:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    tokens = 0
    for rows in batches:
        model.zero_grad(set_to_none=True)
        tokens += step(rows)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start, tokens


def step_memory(step, rows, model, device) -> int:
    """
    On CUDA, the peak memory allocated during one step above what was allocated before it. On CPU, where there is no
    allocator peak to read, the bytes of the tensors autograd keeps for backward during the step (distinct storages,
    parameters excluded): the activation memory, which is what batching and padding change.
    """
    model.zero_grad(set_to_none=True)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        step(rows)
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before
    parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameters:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        step(rows)
    return sum(saved.values())


def model_flops_per_step(model, batches, collator) -> float:
    """6 x params x tokens for the trained T5 (encoder on encoder tokens, decoder + head on decoder tokens), plus
    2 x params x patches for the frozen vision tower (forward only); attention scores are left out (conventional)."""
    inner = model.model
    count = lambda module: sum(p.numel() for p in module.parameters())  # noqa: E731
    encoder, decoder = count(inner.language_model.encoder), count(inner.language_model.decoder) + count(model.lm_head)
    vision, projector = count(inner.vision_tower), count(inner.multi_modal_projector)
    patches = (model.config.vision_config.image_size // model.config.vision_config.patch_size) ** 2 + 1
    total = 0.0
    for rows in batches:
        batch = collator(rows)
        n_images = batch["pixel_values"].shape[0] or 1
        total += (
            6 * encoder * batch["attention_mask"].sum().item()
            + 6 * decoder * batch["decoder_attention_mask"].sum().item()
        )
        total += 2 * vision * patches * n_images + 6 * projector * model.config.image_seq_length * n_images
    return total / len(batches)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="small")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=8, help="batches per timed repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--images", type=int, default=48, help="synthetic images (8 flattened rows each)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--no-baseline", action="store_true", help="time our step only (large models on a GPU)")
    parser.add_argument("--activation-checkpointing", action="store_true")
    parser.add_argument("--peak-tflops", type=float, default=None, help="dense peak of the card, for MFU")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    device, dtype = args.device, getattr(torch, args.dtype)

    tokenizer = build_tiny_tokenizer()
    attn = None
    if device.startswith("cuda"):
        from transformers.utils import is_flash_attn_2_available

        attn = "flash_attention_2" if is_flash_attn_2_available() else "sdpa"
    model, processor = build_model(args.preset, tokenizer, dtype, device, attn)
    if args.activation_checkpointing or device.startswith("cuda"):
        model.activation_checkpointing_enable({"use_reentrant": False})
    with tempfile.TemporaryDirectory() as folder:
        size = model.config.vision_config.image_size
        paths = write_synthetic_dataset(folder, num_train_images=args.images, num_eval_images=0, image_size=size)
        dataset, _ = load_llava_dataset(paths["train"], "t5_v1", paths["image_folder"], flatten=True)
        rows = [dataset[i] for i in range(len(dataset))]
        order = list(ModalityGroupedSampler(dataset["length"], batch_size=args.batch_size, seed=args.seed))
        grouped = [[rows[i] for i in order[k : k + args.batch_size]] for k in range(0, len(order), args.batch_size)]
        text_batches = [b for b in grouped if all(r["image_file"] is None for r in b)]
        image_batches = [b for b in grouped if all(r["image_file"] is not None for r in b)]
        # The timed set keeps the modality mix of the data (1 text-only batch per 8 image batches or so).
        n_text = max(1, round(args.steps * len(text_batches) / max(len(grouped), 1))) if text_batches else 0
        batches = image_batches[: args.steps - n_text] + text_batches[:n_text]
        shuffled = list(rows)
        random.Random(args.seed).shuffle(shuffled)
        random_batches = [
            shuffled[k : k + args.batch_size] for k in range(0, len(batches) * args.batch_size, args.batch_size)
        ]
        collator = CLIPFlanT5DataCollator(processor, "t5_v1", paths["image_folder"])
        image_folder = paths["image_folder"]

        methods = {"ours (grouped)": (lambda r: our_step(model, collator, r, device), batches)}
        if not args.no_baseline:
            methods["original trainer"] = (
                lambda r: original_step(model, processor, r, image_folder, device, dtype),
                batches,
            )
            methods["ours, random order"] = (lambda r: our_step(model, collator, r, device), random_batches)
        for step, method_batches in methods.values():  # warm-up
            timed(step, method_batches[:1], model, device)
        best = {name: (float("inf"), 0) for name in methods}
        for _ in range(args.repeats):
            for name, (step, method_batches) in methods.items():
                seconds, tokens = timed(step, method_batches, model, device)
                if seconds < best[name][0]:
                    best[name] = (seconds, tokens)
        memory = {
            name: max(step_memory(step, b, model, device) for b in method_batches)
            for name, (step, method_batches) in methods.items()
        }

        n_params = sum(p.numel() for p in model.parameters())
        duplicates = sum(
            len(b) - len({r["image_file"] for r in b if r["image_file"]}) - sum(r["image_file"] is None for r in b)
            for b in batches
        )
        print(
            f"preset {args.preset}: {n_params / 1e6:.1f}M parameters, {device} {args.dtype}, batch {args.batch_size}, "
            f"{len(batches)} batches ({n_text} text-only), {duplicates} repeated images in them, "
            f"best of {args.repeats}; torch threads {torch.get_num_threads()}"
        )
        memory_kind = "peak mem (MiB)" if device.startswith("cuda") else "activations (MiB)"
        print(f"{'method':<22} {'samples/s':>10} {'tokens/s':>10} {memory_kind:>18}")
        for name, (seconds, tokens) in best.items():
            samples = sum(len(b) for b in methods[name][1])
            print(f"{name:<22} {samples / seconds:>10.1f} {tokens / seconds:>10.0f} {memory[name] / 2**20:>18.1f}")
        if not args.no_baseline:
            ours, original = best["ours (grouped)"], best["original trainer"]
            print(f"speed-up over the original trainer: {original[0] / ours[0]:.2f}x (same rows, same weights)")
            padded = lambda bs: sum(len(b) * 0 + collator(b)["input_ids"].numel() for b in bs)  # noqa: E731
            print(
                f"encoder positions computed (incl. padding): grouped {padded(batches)}, random order "
                f"{padded(random_batches)} ({padded(random_batches) / padded(batches):.2f}x)"
            )
        if args.peak_tflops:
            flops = model_flops_per_step(model, batches, collator)
            seconds = best["ours (grouped)"][0] / len(batches)
            achieved = flops / seconds / 1e12
            name = torch.cuda.get_device_name() if device.startswith("cuda") else "cpu"
            print(
                f"model FLOPs/step {flops:.3e}; {achieved:.1f} TFLOP/s = MFU {achieved / args.peak_tflops:.1%} on {name}"
            )


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
