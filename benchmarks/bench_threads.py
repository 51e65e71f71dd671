"""CPU threads on a shared machine: scoring and training steps of the demo model with 1 thread, with 2 threads whose
idle OpenMP threads spin (torch's default: `OMP_WAIT_POLICY` unset), and with 2 threads that sleep when idle
(`OMP_WAIT_POLICY=PASSIVE`, what importing transformers_clipflant5 first, the CLI, scripts/demo.sh and
scripts/test.sh set), each on a quiet machine and beside a busy neighbour (`python -c 'while True: pass'`).

    HF_HUB_OFFLINE=1 python benchmarks/bench_threads.py                  # 3 rounds of 8 s per variant
    HF_HUB_OFFLINE=1 taskset -c 0,1 python benchmarks/bench_threads.py   # a 2-core machine on a bigger one

OpenMP reads its wait policy once, when torch loads it, so every variant runs in a process of its own (the
neighbour too); rounds interleave the variants, so that a change of the machine's load hits them all alike. Reported:
the median over rounds of each variant's rate, and its ratio to 1 thread in the same round and condition. The
workloads: `VQAScore.score_matrix` on 4 images x 8 texts (the demo model, 32 px, d_model 128), and a training step
(forward, backward, AdamW) on a batch of 16 prompts with one image each.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time


VARIANTS = {
    "1 thread": {"threads": 1, "policy": None},
    "2 threads, idle threads spin": {"threads": 2, "policy": None},
    "2 threads, OMP_WAIT_POLICY=PASSIVE": {"threads": 2, "policy": "PASSIVE"},
}


def child(threads: int, seconds: float) -> None:
    # torch before the package: the package would otherwise set the wait policy itself.
    import torch

    torch.set_num_threads(threads)
    import numpy as np
    from PIL import Image

    from transformers_clipflant5 import VQAScore
    from transformers_clipflant5.scoring.prompts import DEFAULT_QUESTION_TEMPLATE
    from transformers_clipflant5.testing.demo import build_demo_model

    torch.manual_seed(0)
    model, processor = build_demo_model()
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)) for _ in range(16)]
    texts = [
        f"a {color} {shape} on the left"
        for color in ("red", "blue")
        for shape in ("circle", "square", "cross", "star")
    ]
    scorer = VQAScore(model.eval(), processor)

    def rate(step, units: int) -> float:
        step()  # warm-up
        done, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            step()
            done += units
        return done / (time.perf_counter() - start)

    scoring = rate(lambda: scorer.score_matrix(images[:4], texts), 32)
    prompts = [processor.image_token + " " + DEFAULT_QUESTION_TEMPLATE.format(text) for text in texts * 2]
    inputs = processor(images=images, text=prompts, return_tensors="pt")
    labels = processor.tokenizer(["Yes"] * 16, return_tensors="pt").input_ids
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def train_step():
        loss = model(**inputs, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    training = rate(train_step, 1)
    print(json.dumps({"threads": torch.get_num_threads(), "pairs/s": scoring, "steps/s": training}))


def run_variant(variant: dict, seconds: float) -> dict:
    env = {key: value for key, value in os.environ.items() if key not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    if variant["policy"]:
        env["OMP_WAIT_POLICY"] = variant["policy"]
    command = [sys.executable, __file__, "--child", str(variant["threads"]), "--seconds", str(seconds)]
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0, help="timed seconds per workload and variant")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        return child(args.child, args.seconds)

    print(f"CPUs available: {len(os.sched_getaffinity(0))}; load average {os.getloadavg()[0]:.1f} at the start")
    results = {(condition, name): [] for condition in ("quiet", "busy neighbour") for name in VARIANTS}
    for round_index in range(args.rounds):
        for condition in ("quiet", "busy neighbour"):
            neighbour = None
            if condition == "busy neighbour":
                neighbour = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            try:
                for name, variant in VARIANTS.items():
                    results[condition, name].append(run_variant(variant, args.seconds))
            finally:
                if neighbour is not None:
                    neighbour.kill()
                    neighbour.wait()
        print(f"round {round_index + 1} of {args.rounds} done", file=sys.stderr)

    print(f"median over {args.rounds} rounds; ratio = rate / rate of 1 thread in the same round and condition")
    print(f"{'condition':<16}{'variant':<38}{'scoring pairs/s':>16}{'ratio':>7}{'train steps/s':>15}{'ratio':>7}")
    for condition in ("quiet", "busy neighbour"):
        baseline = results[condition, "1 thread"]
        for name in VARIANTS:
            runs = results[condition, name]
            row = f"{condition:<16}{name:<38}"
            for key in ("pairs/s", "steps/s"):
                ratio = statistics.median(run[key] / base[key] for run, base in zip(runs, baseline))
                row += f"{statistics.median(run[key] for run in runs):>16.1f}{ratio:>7.2f}"
            print(row)


if __name__ == "__main__":
    main()
