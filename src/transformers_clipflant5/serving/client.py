# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""A small client of `clip-flant5 serve`: `score(images, prompts)` -> one VQAScore per pair, with retries.

It uses only the standard library (and PIL to encode images), so that a trainer whose own dependencies clash with
this package's can copy this one file. Images go as lossless PNG, so the server scores exactly the pixels given.

Example:

```python
>>> from transformers_clipflant5.serving.client import RewardClient
>>> client = RewardClient("http://127.0.0.1:8000")
>>> client.score([image_a, image_b], ["a red cube", "two cats"])  # PIL images, uint8 arrays or encoded bytes
[0.83, 0.12]
```
"""

import base64
import io
import json
import math
import time
import urllib.error
import urllib.request
from collections.abc import Sequence


# Statuses worth retrying: the server is overloaded, restarting, still loading the model, or failed unexpectedly.
RETRY_STATUSES = (500, 502, 503, 504)


class RewardServerError(RuntimeError):
    """The server refused a request (`status`: 400, 401, 413, 422, ...) or could not be reached (`status` None)."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


def encode_image(image) -> str:
    """`image` as base64 text: encoded bytes are sent as they are; a PIL image or an HWC/HW uint8 array as PNG."""
    if isinstance(image, bytes | bytearray):
        data = bytes(image)
    else:
        from PIL import Image

        if not isinstance(image, Image.Image):
            dtype = getattr(image, "dtype", None)
            if dtype is None or str(dtype) != "uint8":
                raise TypeError(
                    f"images must be PIL images, uint8 arrays (H, W, 3) or encoded image bytes, got "
                    f"{type(image).__name__}{f' of {dtype}' if dtype is not None else ''}: convert float images "
                    "with (image * 255).round().clip(0, 255).astype('uint8')"
                )
            image = Image.fromarray(image)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        data = buffer.getvalue()
    return base64.b64encode(data).decode("ascii")


class RewardClient:
    """
    Calls a `clip-flant5 serve` server.

    Args:
        url: the server, e.g. `"http://127.0.0.1:8000"`.
        api_key: its key, when it was started with `--api-key-file`.
        timeout: seconds to wait for one answer.
        retries: further tries after a connection error or a 5xx answer (a 4xx answer is raised at once).
        backoff: seconds before the first retry, doubled for each next one.
    """

    def __init__(
        self,
        url: str = "http://127.0.0.1:8000",
        api_key: str | None = None,
        timeout: float = 120.0,
        retries: int = 3,
        backoff: float = 1.0,
    ):
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff

    def _request(self, path: str, payload: dict | None = None) -> dict:
        headers = {"Accept": "application/json"}
        data = None
        if payload is not None:
            data = json.dumps(payload).encode("utf-8")
            headers["Content-Type"] = "application/json"
        if self.api_key is not None:
            headers["Authorization"] = f"Bearer {self.api_key}"
        for attempt in range(self.retries + 1):
            request = urllib.request.Request(self.url + path, data=data, headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return json.loads(response.read())
            except urllib.error.HTTPError as error:
                message = _error_message(error)
                if error.code not in RETRY_STATUSES or attempt == self.retries:
                    raise RewardServerError(f"{self.url}{path} answered {error.code}: {message}", error.code) from None
            except (urllib.error.URLError, OSError) as error:
                if attempt == self.retries:
                    reason = getattr(error, "reason", error)
                    raise RewardServerError(f"cannot reach {self.url}{path}: {reason}") from None
            time.sleep(self.backoff * 2**attempt)
        raise AssertionError("unreachable")

    def health(self) -> dict:
        """The server's `/health` answer (`{"status": "ok", "model": ..., "devices": [...]}`); raises while it loads."""
        return self._request("/health")

    def wait_until_ready(self, timeout: float = 600.0) -> dict:
        """Poll `/health` until the model has loaded (raises [`RewardServerError`] after `timeout` seconds)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return RewardClient(self.url, self.api_key, timeout=10, retries=0).health()
            except RewardServerError as error:
                if error.status not in (None, 503) or time.monotonic() > deadline:
                    raise
            time.sleep(0.5)

    def score(
        self,
        images: Sequence,
        prompts: Sequence[str],
        question_template: str | None = None,
        on_error: str = "raise",
    ) -> list[float]:
        """
        VQAScore of `images[i]` with `prompts[i]` for every i.

        Args:
            images: PIL images, uint8 arrays (H, W, 3) or encoded image bytes (PNG, JPEG, ...).
            prompts: one text per image.
            question_template: the question, with `{}` for the text (default: the server's).
            on_error: `"raise"` ([`RewardServerError`] naming the pairs that cannot be scored) or `"nan"` (NaN for
                them).
        """
        if on_error not in ("raise", "nan"):
            raise ValueError(f'on_error must be "raise" or "nan", got {on_error!r}')
        prompts = [str(prompt) for prompt in prompts]
        if len(images) != len(prompts):
            raise ValueError(f"got {len(images)} images but {len(prompts)} prompts; pass one prompt per image")
        payload = {"images": [encode_image(image) for image in images], "texts": prompts}
        if question_template is not None:
            payload["question_template"] = question_template
        results = self._request("/score", payload)["results"]
        problems = [f"pair {index}: {result['error']}" for index, result in enumerate(results) if "error" in result]
        if problems and on_error == "raise":
            raise RewardServerError(f"{len(problems)} pair(s) cannot be scored: " + "; ".join(problems[:5]), 422)
        return [result.get("score", math.nan) for result in results]

    def score_matrix(
        self, images: Sequence, texts: Sequence[str], question_template: str | None = None
    ) -> list[list[float | None]]:
        """Every image with every text: `[i][j]` scores `images[i]` with `texts[j]` (None where it cannot be)."""
        payload = {"images": [encode_image(image) for image in images], "texts": list(texts), "matrix": True}
        if question_template is not None:
            payload["question_template"] = question_template
        return self._request("/score", payload)["scores"]


def _error_message(error: "urllib.error.HTTPError") -> str:
    try:
        return json.loads(error.read())["error"]
    except (ValueError, KeyError, TypeError, OSError):
        return error.reason


def score(images: Sequence, prompts: Sequence[str], url: str = "http://127.0.0.1:8000", **kwargs) -> list[float]:
    """`RewardClient(url, **kwargs).score(images, prompts)`: VQAScore of each (image, prompt) pair from a server."""
    return RewardClient(url, **kwargs).score(images, prompts)


__all__ = ["RewardClient", "RewardServerError", "encode_image", "score"]
