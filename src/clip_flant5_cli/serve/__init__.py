"""`clip-flant5 serve`: VQAScore over HTTP, batched across requests, for RL trainers that call rewards as servers.

Endpoints (docs/serving.md has the details and client snippets):
  GET  /health   503 while the model loads, then 200 with the model's name
  POST /compute  Flow-Factory's JSON: {"prompt": [...], "image": [base64, ...]} -> {"rewards": [...]}
  POST /         Flow-GRPO's pickle: {"images": [JPEG bytes, ...], "prompts": [...]} -> {"outputs": [...], "scores": [...]}
  POST /score    our JSON: {"images": [base64, ...], "texts": [...], "matrix": false, "question_template": ...}
                 -> one result (score or error) per pair, or an image x text matrix
  GET  /metrics  Prometheus text format: requests, items, batch sizes, latencies

The items of concurrent requests are merged into model batches of at most --max-batch-size pairs, waiting at most
--max-wait-ms after the first one for more; large requests are split. One model replica runs per device (--devices);
each batch goes to the least-loaded one. Errors come back as one line of JSON, {"error": "..."}, with status 400 (a
malformed request, a refused pickle), 413 (too large), 422 (an image or text that cannot be scored) or 503 (loading).

Safe by default: the server listens on 127.0.0.1 only. Another --host needs --api-key-file (clients send the key as
"Authorization: Bearer <key>") or an explicit --no-auth. Pickled bodies are read by an unpickler that admits only
numpy's array and scalar reconstruction: any other global is refused, never imported.

SIGTERM (or Ctrl+C) stops accepting connections, finishes the requests in flight and exits with status 0.
"""

import argparse
from pathlib import Path

from clip_flant5_choices import QUANT_EXTRA_INSTALL, QUANTIZATION_CHOICES


HELP = "serve VQAScore over HTTP as a batched reward server (Flow-GRPO and Flow-Factory protocols)"
EPILOG = """\
exit status:
  0  the server was stopped by SIGTERM or SIGINT after finishing the requests in flight
  2  it could not start: a bad option, a non-loopback --host without --api-key-file or --no-auth, an unreadable key
     file, a --model that cannot be loaded, or a port in use

examples:
  clip-flant5 serve --model zhiqiulin/clip-flant5-xxl                      # all GPUs, 127.0.0.1:8000
  clip-flant5 serve --model zhiqiulin/clip-flant5-xxl --devices 0,1 --port 18085
  clip-flant5 serve --model zhiqiulin/clip-flant5-xxl --host 0.0.0.0 --api-key-file key.txt"""

SERVE_EXTRA_INSTALL = 'pip install -e ".[serve]"'


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="Hub repo or folder, original layout or ours")
    network = parser.add_argument_group("network and safety")
    network.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine)")
    network.add_argument("--port", type=int, default=8000, help="port to listen on (default: 8000)")
    network.add_argument(
        "--api-key-file",
        type=Path,
        help="file holding the API key clients must send as 'Authorization: Bearer <key>' (required for a "
        "non-loopback --host unless --no-auth)",
    )
    network.add_argument(
        "--no-auth",
        action="store_true",
        help="serve a non-loopback --host without an API key (logged as a warning: anyone who can reach the port "
        "can use the server)",
    )
    model = parser.add_argument_group("model")
    model.add_argument(
        "--devices",
        help="where the replicas run, one per device: 'cpu', GPU indices '0,1' or devices 'cuda:0,cuda:1' (default: "
        "every visible GPU, else one replica on the CPU)",
    )
    model.add_argument("--dtype", default="auto", help="auto (bf16 on CUDA, fp32 on CPU), float32, bfloat16, ...")
    model.add_argument(
        "--quantization",
        choices=QUANTIZATION_CHOICES,
        help="quantize the T5 weights as they load: int8 (torchao) or int4 (bitsandbytes NF4); needs "
        + QUANT_EXTRA_INSTALL,
    )
    model.add_argument("--attn-implementation", help="sdpa, eager, ... (default: transformers' choice)")
    model.add_argument("--revision", help="Hub revision of --model")
    model.add_argument(
        "--question-template",
        help="default question, with {} for the text (default: the paper's); /score may pass its own",
    )
    model.add_argument("--answer-template", help='answer whose probability is the score (default: "Yes")')
    batching = parser.add_argument_group("batching and limits")
    batching.add_argument(
        "--max-batch-size", type=int, default=32, help="most pairs per model batch, across requests (default: 32)"
    )
    batching.add_argument(
        "--max-wait-ms",
        type=float,
        default=5.0,
        help="how long a free replica waits after the first queued pair for more to fill its batch (default: 5)",
    )
    batching.add_argument(
        "--max-items",
        type=int,
        default=1024,
        help="most pairs in one request (default: 1024; a matrix counts images x texts)",
    )
    batching.add_argument(
        "--video-frames",
        type=int,
        default=8,
        help="frames scored of each /compute video item, sampled uniformly in time as VQAScore.score_videos does; "
        "its reward is their mean score (default: 8)",
    )
    batching.add_argument(
        "--max-body-mb", type=float, default=128.0, help="largest request body in MiB (default: 128)"
    )
    batching.add_argument(
        "--body-timeout",
        type=float,
        default=60.0,
        help="seconds a client may take to send its request body before it is refused (default: 60)",
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=("debug", "info", "warning", "error"),
        help="what the server logs (default: info: startup, refused requests, failures)",
    )
