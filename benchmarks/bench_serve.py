"""Throughput of `clip-flant5 serve` against in-process `VQAScore` on the same pairs, in one run.

    HF_HUB_OFFLINE=1 python benchmarks/bench_serve.py                               # CPU, t5-heavy shape
    HF_HUB_OFFLINE=1 python benchmarks/bench_serve.py --pairs 64 --clients 1,4,16 --threads 2
    HF_HUB_OFFLINE=1 python benchmarks/bench_serve.py --device cuda --dtype bfloat16 --preset xxl \
        --flow-grpo-batch 64 --pairs 512 --clients 1,4                              # GPU, Flow-GRPO's requests

The model has random weights (no download) in bench_score.py's shapes (default `t5-heavy`: a 6-layer ViT at 224 px,
~405-token prompts, a 6+6-layer T5 of width 512, so that the T5 dominates as in the real model), saved to a
temporary folder that the server loads. `--pairs` distinct 384 x 384 images (smooth random colour fields, PNG) are
paired with texts of several lengths.

Rows:
- `in-process`: one `VQAScore(images, texts)` call on all the pairs (decoded PIL images), batch `--batch-size`;
- `server, N clients`: N client threads send the same pairs as requests of `--request-pairs` pairs (our `/score`
  JSON with base64 PNG) or, with `--flow-grpo-batch B`, as Flow-GRPO's pickled requests of B JPEG images to `/`
  (the in-process row then scores the decoded JPEGs), to a server started with `--max-batch-size --batch-size`. The
  clients pre-encode their requests before timing.

Reported per row: pairs/s (total pairs / wall time), its ratio to in-process, the server's CPU seconds per pair
against in-process's (process CPU time, less sensitive to other load on a shared machine; it leaves out the clients'
own work), p50 and p99 request latency, and the largest relative difference of the server's scores from in-process.
Rows run `--repeats` times, interleaved; the best time is kept.
"""

import argparse
import base64
import io
import json
import os
import pickle
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image


sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_score import MODEL_SHAPES, build_config, make_inputs  # noqa: E402

from transformers_clipflant5 import CLIPFlanT5ForConditionalGeneration, VQAScore  # noqa: E402
from transformers_clipflant5.testing.tiny import build_tiny_tokenizer, tiny_processor  # noqa: E402


SOURCE_ROOT = Path(__file__).resolve().parents[1] / "src"


def smooth_images(count: int, size: int = 384, seed: int = 0) -> list[Image.Image]:
    """Images like a generator's output in their compressibility: smooth colour fields, not pixel noise."""
    rng = np.random.default_rng(seed)
    return [
        Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).resize((size, size), Image.BICUBIC)
        for _ in range(count)
    ]


def encode(image: Image.Image, format: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **({"quality": 90} if format == "JPEG" else {}))
    return buffer.getvalue()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def post(url: str, body: bytes, content_type: str) -> bytes:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type})
    with urllib.request.urlopen(request, timeout=3600) as response:
        return response.read()


def run_clients(url: str, requests: list[tuple[list[int], bytes]], clients: int, pickled: bool):
    """Send `requests` (pair indices, body) from `clients` threads: (wall seconds, latencies, scores by pair)."""
    scores, latencies = {}, []

    def send(request):
        indices, body = request
        started = time.perf_counter()
        if pickled:
            answer = pickle.loads(post(url + "/", body, "application/octet-stream"))["outputs"]
        else:
            answer = [
                result["score"] for result in json.loads(post(url + "/score", body, "application/json"))["results"]
            ]
        return indices, answer, time.perf_counter() - started

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for indices, answer, latency in pool.map(send, requests):
            scores.update(zip(indices, answer))
            latencies.append(latency)
    return time.perf_counter() - started, latencies, scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=sorted(MODEL_SHAPES), default="t5-heavy")
    parser.add_argument("--preset", choices=("xxl", "xl"), help="full-size CLIP-FlanT5 shape (FlanT5 vocabulary)")
    parser.add_argument("--pairs", type=int, default=64, help="pairs scored by each row")
    parser.add_argument("--clients", default="1,4,16", help="concurrent clients, comma-separated")
    parser.add_argument("--request-pairs", type=int, default=4, help="pairs per /score request")
    parser.add_argument("--flow-grpo-batch", type=int, help="send Flow-GRPO's pickled requests of this many JPEGs")
    parser.add_argument("--batch-size", type=int, default=32, help="in-process batch and the server's max batch")
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--threads", type=int, help="torch CPU threads, in-process and in the server")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    clients = [int(count) for count in args.clients.split(",")]
    pickled = args.flow_grpo_batch is not None
    per_request = args.flow_grpo_batch or args.request_pairs
    torch.manual_seed(0)
    tokenizer = build_tiny_tokenizer()
    vision_size, text_size = ("large", args.preset) if args.preset else MODEL_SHAPES[args.shape]
    config = build_config(tokenizer, vision_size, text_size, 32128 if args.preset else None)

    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        model = CLIPFlanT5ForConditionalGeneration._from_config(config, dtype=getattr(torch, args.dtype)).eval()
        model.save_pretrained(folder / "model")
        tiny_processor(tokenizer, config).save_pretrained(folder / "model")
        del model
        _, texts = make_inputs(folder, 0, 12)
        texts = [texts[index % len(texts)] for index in range(args.pairs)]
        images = smooth_images(args.pairs)
        encoded = [encode(image, "JPEG" if pickled else "PNG") for image in images]
        # The server scores what it decodes; in-process scores the same decoded pixels.
        decoded = [Image.open(io.BytesIO(data)).convert("RGB") for data in encoded]
        requests = []
        for start in range(0, args.pairs, per_request):
            indices = list(range(start, min(start + per_request, args.pairs)))
            if pickled:
                prompts = np.array([texts[index] for index in indices])  # Flow-GRPO sends a numpy array of str
                body = pickle.dumps({"images": [encoded[index] for index in indices], "prompts": prompts})
            else:
                payload = {"images": [base64.b64encode(encoded[index]).decode() for index in indices],
                           "texts": [texts[index] for index in indices]}  # fmt: skip
                body = json.dumps(payload).encode()
            requests.append((indices, body))

        scorer = VQAScore.from_pretrained(
            folder / "model", dtype=args.dtype, device=args.device, batch_size=args.batch_size
        )
        port = free_port()
        env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS=str(threads))
        env["PYTHONPATH"] = os.pathsep.join([str(SOURCE_ROOT), env.get("PYTHONPATH", "")])
        devices = "cpu" if args.device == "cpu" else args.device.replace("cuda:", "").replace("cuda", "0")
        command = [sys.executable, "-m", "transformers_clipflant5", "serve", "--model", str(folder / "model"),
                   "--port", str(port), "--devices", devices, "--dtype", args.dtype, "--max-batch-size",
                   str(args.batch_size), "--max-wait-ms", str(args.max_wait_ms), "--max-items",
                   str(max(1024, per_request)), "--max-body-mb", "1024", "--log-level", "warning"]  # fmt: skip
        server = subprocess.Popen(command, env=env)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 1800
            while True:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"the server did not start (exit status {server.poll()})")
                try:
                    urllib.request.urlopen(url + "/health", timeout=10).read()
                    break
                except OSError:
                    time.sleep(0.5)
            # Warm-up: both sides once, untimed.
            reference = scorer(decoded, texts).tolist()
            run_clients(url, requests[: max(clients)], max(clients), pickled)

            rows = {"in-process": []} | {f"server, {count} clients": [] for count in clients}
            latencies, server_scores = {}, {}
            for _ in range(args.repeats):
                cpu, started = time.process_time(), time.perf_counter()
                scores = scorer(decoded, texts)
                rows["in-process"].append((time.perf_counter() - started, time.process_time() - cpu))
                for count in clients:
                    cpu = process_cpu_seconds(server.pid)
                    wall, request_latencies, answers = run_clients(url, requests, count, pickled)
                    rows[f"server, {count} clients"].append((wall, process_cpu_seconds(server.pid) - cpu))
                    latencies.setdefault(count, []).extend(request_latencies)
                    server_scores[count] = answers
            assert torch.allclose(scores, torch.tensor(reference)), "in-process scores changed between runs"
        finally:
            server.send_signal(signal.SIGTERM)
            status = server.wait(timeout=600)

    reference = torch.tensor(reference)
    device_name = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "CPU"
    print(
        f"model: {vision_size} vision + {text_size} T5, {args.dtype} on {device_name}, {threads} torch threads; "
        f"{args.pairs} pairs, requests of {per_request} pairs ({'Flow-GRPO pickle, JPEG' if pickled else '/score JSON, PNG'}); "
        f"batch {args.batch_size}, max wait {args.max_wait_ms:g} ms; server exit status {status}"
    )
    print(
        f"{'row':<22} {'pairs/s':>8} {'x in-proc.':>10} {'x CPU/pair':>10} {'p50 ms':>8} {'p99 ms':>8} {'max rel. diff':>13}  times (s)"
    )
    best = {name: min(run[0] for run in runs) for name, runs in rows.items()}
    cpu_per_pair = {name: min(run[1] for run in runs) / args.pairs for name, runs in rows.items()}
    for name, runs in rows.items():
        rate = args.pairs / best[name]
        if name == "in-process":
            extra = f"{'-':>8} {'-':>8} {'-':>13}"
        else:
            count = int(name.split()[1])
            p50, p99 = np.percentile(latencies[count], [50, 99]) * 1000
            answers = torch.tensor([server_scores[count][index] for index in range(args.pairs)])
            extra = f"{p50:8.0f} {p99:8.0f} {((answers - reference).abs() / reference).max().item():13.2e}"
        print(
            f"{name:<22} {rate:8.2f} {best['in-process'] / best[name]:10.2f} "
            f"{cpu_per_pair['in-process'] / cpu_per_pair[name]:10.2f} {extra}  "
            + ", ".join(f"{run[0]:.2f}" for run in runs)
        )
    print("x CPU/pair: in-process CPU seconds per pair / the server process's (above 1: the server used less CPU)")


if __name__ == "__main__":
    main()
