# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""VQAScore as a batched reward server (`clip-flant5 serve`) and its client.

- `app`: the FastAPI app and `run_server` (uvicorn); `protocols`: Flow-Factory's, Flow-GRPO's and our request formats;
- `batcher`: dynamic batching across requests; `replicas`: one scorer per device;
- `decoding`: base64 and image bytes to PIL, text checks; `safe_pickle`: the numpy-only unpickler;
- `security`: loopback and API-key rules; `metrics`: Prometheus metrics;
- `client`: `RewardClient.score(images, prompts)` (standard library only).

Only the client is imported here: the server's modules need the `serve` extra (fastapi, uvicorn, prometheus-client).
"""

from .client import RewardClient, RewardServerError, score


__all__ = ["RewardClient", "RewardServerError", "score"]
