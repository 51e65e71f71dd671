"""Peak memory of `clip-flant5 convert` against the weights' size: does the conversion hold one copy of them?

A random CLIP-FlanT5 (T5 with d_model 768, 12+12 layers, FlanT5's 32128-row vocabulary; about 250M parameters) is
written in the ORIGINAL layout (fp32, pickled .bin in 2 shards, the embedding stored four times) with
`tests/support/original_reference.py` (imported by putting the repo's root on `sys.path`). Then, each in a fresh
process so that the peak resident set size (`ru_maxrss`) belongs to that step alone:

- `load`: `CLIPFlanT5ForConditionalGeneration.from_pretrained(SRC)`, the least any conversion must hold;
- `convert`: the whole conversion (load, save sharded safetensors, processor, card, checks);
- `convert --dtype bfloat16`: the same, loading straight into bf16.

Each reports, above its level right after the imports and as a multiple of the fp32 weights' size, its peak private
memory (RssAnon, sampled every 5 ms: the copies of the weights it holds) and its peak resident set size (which also
counts the touched pages of the memory-mapped checkpoint files).

    python benchmarks/bench_convert_memory.py [--d-model 768] [--layers 12]
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


REPO_ROOT = Path(__file__).resolve().parents[1]


def status_bytes(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


class AnonymousPeak(threading.Thread):
    """Samples RssAnon (private memory: what copies of the weights cost) every 5 ms and keeps the maximum.

    `ru_maxrss` also counts the pages of memory-mapped checkpoint files, which are page cache, not copies."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peak = status_bytes("RssAnon")
        self.running = True

    def run(self):
        while self.running:
            self.peak = max(self.peak, status_bytes("RssAnon"))
            time.sleep(0.005)

    def stop(self) -> int:
        self.running = False
        self.join()
        return max(self.peak, status_bytes("RssAnon"))


def child(step: str, source: str, output: str) -> None:
    import torch  # noqa: F401  (imports count in the baseline, not in the step)

    from transformers_clipflant5 import CLIPFlanT5ForConditionalGeneration
    from transformers_clipflant5.hub.convert_original import convert

    baseline_rss, baseline_anonymous = status_bytes("VmRSS"), status_bytes("RssAnon")
    sampler = AnonymousPeak()
    sampler.start()
    start = time.perf_counter()
    if step == "load":
        CLIPFlanT5ForConditionalGeneration.from_pretrained(source)
    else:
        convert(source, output, dtype="bfloat16" if step == "convert-bf16" else None, max_shard_size="200MB")
    seconds = time.perf_counter() - start
    anonymous = sampler.stop() - baseline_anonymous
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - baseline_rss
    print(json.dumps({"anonymous": anonymous, "rss": rss, "seconds": seconds}))


def build_source(folder: Path, d_model: int, layers: int) -> int:
    import torch
    from transformers import CLIPVisionConfig, T5Config, T5Tokenizer

    sys.path.insert(0, str(REPO_ROOT))
    from tests.support.original_reference import save_original_checkpoint
    from transformers_clipflant5 import CLIPFlanT5Config, CLIPFlanT5ForConditionalGeneration
    from transformers_clipflant5.testing.tiny import build_tiny_tokenizer, train_tiny_sentencepiece

    tokenizer = build_tiny_tokenizer()
    config = CLIPFlanT5Config(
        vision_config=CLIPVisionConfig(
            hidden_size=256, intermediate_size=1024, num_hidden_layers=2, num_attention_heads=4, image_size=224,
            patch_size=32, projection_dim=256,
        ),
        text_config=T5Config(
            vocab_size=32128, d_model=d_model, d_kv=64, d_ff=d_model * 8 // 3, num_layers=layers,
            num_decoder_layers=layers, num_heads=d_model // 64, feed_forward_proj="gated-gelu",
            tie_word_embeddings=False, decoder_start_token_id=0,
        ),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
    )  # fmt: skip
    torch.manual_seed(0)
    model = CLIPFlanT5ForConditionalGeneration(config)
    save_original_checkpoint(model, train_tiny_sentencepiece(), folder, shards=2)
    T5Tokenizer.from_pretrained(folder, extra_ids=100).save_pretrained(folder)
    return sum(parameter.numel() for parameter in model.parameters())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--d-model", type=int, default=768)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--child", nargs=3, metavar=("STEP", "SRC", "DST"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "original"
        parameters = build_source(source, args.d_model, args.layers)
        weights = parameters * 4
        on_disk = sum(path.stat().st_size for path in source.glob("pytorch_model*.bin"))
        print(f"model: {parameters / 1e6:.1f}M unique parameters, fp32 weights {weights / 2**20:.0f} MiB")
        print(f"original layout on disk: {on_disk / 2**20:.0f} MiB in 2 pickled shards\n")
        print(
            f"{'step':<14} {'private memory':>16} {'x weights':>10} {'RSS incl. mmap':>16} {'x weights':>10} {'s':>6}"
        )
        for step in ("load", "convert", "convert-bf16"):
            output = Path(tmp) / step
            result = subprocess.run(
                [sys.executable, __file__, "--child", step, str(source), str(output)],
                capture_output=True,
                text=True,
                check=True,
            )
            numbers = json.loads(result.stdout.strip().splitlines()[-1])
            anonymous, rss = numbers["anonymous"], numbers["rss"]
            print(
                f"{step:<14} {anonymous / 2**20:>12.0f} MiB {anonymous / weights:>10.2f} {rss / 2**20:>12.0f} MiB "
                f"{rss / weights:>10.2f} {numbers['seconds']:>6.1f}"
            )


if __name__ == "__main__":
    main()
