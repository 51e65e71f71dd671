# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""The reward server: a FastAPI app (endpoints, limits, errors, auth, metrics) and [`run_server`], which serves it
with uvicorn.

The model loads in the background once the server listens, so that `/health` can say 503 until it is ready. Request
bodies are read up to `max_body_bytes` within `body_timeout`; images are decoded and texts checked on Starlette's
thread pool; the pairs then go to the [`Batcher`]. Errors reach the client as one line of JSON, `{"error": ...}`;
tracebacks go to the log only. uvicorn's graceful shutdown (SIGTERM, SIGINT) stops accepting connections and waits
for the requests in flight, and the app's shutdown then drains the batcher.
"""

import asyncio
import contextlib
import copy
import json
import logging
import pickle
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from .batcher import Batcher, PairError
from .decoding import ItemError, TextChecker, decode_base64, decode_image
from .metrics import ServerMetrics
from .protocols import (
    RequestError,
    item_problems,
    read_flow_factory,
    read_flow_grpo,
    read_score_request,
    video_frame_items,
)
from .replicas import Replica
from .safe_pickle import RefusedGlobal, safe_loads
from .security import bearer_matches


logger = logging.getLogger(__name__)


@dataclass
class ServerConfig:
    """What the server needs besides its replicas.

    Args:
        model_name: reported by `/health`.
        max_batch_size: most pairs per model batch, across requests.
        max_wait: seconds a free replica waits after the oldest queued pair for more pairs.
        max_items: most pairs in one request.
        video_frames: frames scored (and averaged) of each `/compute` video item.
        max_body_bytes: largest request body.
        body_timeout: seconds a client may take to send its body.
        api_key: the bearer token every request must carry (None: no authentication).
    """

    model_name: str
    max_batch_size: int = 32
    max_wait: float = 0.005
    max_items: int = 1024
    video_frames: int = 8
    max_body_bytes: int = 128 * 2**20
    body_timeout: float = 60.0
    api_key: str | None = None


class _State:
    def __init__(self):
        self.replicas: list[Replica] | None = None
        self.batcher: Batcher | None = None
        self.checker: TextChecker | None = None
        self.max_image_pixels: int | None = None
        self.load_error: str | None = None

    def require_ready(self) -> tuple[Batcher, TextChecker]:
        if self.batcher is None:
            raise RequestError(503, "the model is still loading; retry when GET /health answers 200")
        return self.batcher, self.checker


def create_app(
    load_replicas: Callable[[], list[Replica]],
    config: ServerConfig,
    on_load_error: Callable[[BaseException], None] | None = None,
) -> FastAPI:
    """The reward server's app. `load_replicas()` runs on a thread once the app starts (a `VQAScore` per device, see
    `replicas.load_replicas`); if it raises, `on_load_error(error)` is called (the CLI stops the server)."""
    state = _State()
    metrics = ServerMetrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        loading = asyncio.get_running_loop().create_task(_load())
        yield
        if state.batcher is not None:
            logger.info("draining the batcher")
            await state.batcher.drain()
        elif not loading.done():
            logger.info("stopping while the model loads")

    async def _load() -> None:
        started = time.monotonic()
        try:
            replicas = await asyncio.to_thread(load_replicas)
        except BaseException as error:
            state.load_error = str(error)
            logger.error("the model could not be loaded, stopping: %s", error)
            logger.debug("loading failed", exc_info=error)
            if on_load_error is not None:
                on_load_error(error)
            return
        scorer = replicas[0].scorer
        # The replicas' tokenizers are busy on their threads; request checks use a copy of their own.
        state.checker = TextChecker(copy.deepcopy(scorer.processor), scorer.question_template, scorer.answer_template)
        state.max_image_pixels = scorer.processor.image_processor.max_image_pixels
        batcher = Batcher(replicas, config.max_batch_size, config.max_wait, metrics)
        batcher.start()
        state.replicas, state.batcher = replicas, batcher
        devices = ", ".join(replica.device for replica in replicas)
        logger.info("%s ready on %s in %.1f s", config.model_name, devices, time.monotonic() - started)

    async def require_key(request: Request) -> None:
        if config.api_key is not None and not bearer_matches(request.headers.get("authorization"), config.api_key):
            raise RequestError(401, "missing or wrong API key: send 'Authorization: Bearer <key>'")

    app = FastAPI(
        title="CLIP-FlanT5 VQAScore reward server",
        lifespan=lifespan,
        dependencies=[Depends(require_key)],
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.add_middleware(_MetricsMiddleware, metrics=metrics)

    @app.exception_handler(RequestError)
    async def request_error(request: Request, error: RequestError) -> JSONResponse:
        logger.info("%s %s -> %d: %s", request.method, request.url.path, error.status, error.message)
        headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
        return JSONResponse({"error": error.message}, status_code=error.status, headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(error.detail)}, status_code=error.status_code, headers=error.headers)

    @app.exception_handler(ClientDisconnect)
    async def client_gone(request: Request, error: ClientDisconnect) -> Response:
        logger.info("%s %s: the client hung up before sending its whole body", request.method, request.url.path)
        return Response(status_code=400)  # nobody reads it

    @app.exception_handler(Exception)
    async def internal_error(request: Request, error: Exception) -> JSONResponse:
        logger.error("%s %s failed", request.method, request.url.path, exc_info=error)
        return JSONResponse({"error": "internal server error (see the server log)"}, status_code=500)

    async def read_body(request: Request) -> bytes:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > config.max_body_bytes:
            raise RequestError(413, _too_large(int(length), config.max_body_bytes))
        chunks, size = [], 0

        async def receive() -> None:
            nonlocal size
            async for chunk in request.stream():
                size += len(chunk)
                if size > config.max_body_bytes:
                    raise RequestError(413, _too_large(size, config.max_body_bytes))
                chunks.append(chunk)

        try:
            await asyncio.wait_for(receive(), config.body_timeout)
        except TimeoutError:
            raise RequestError(408, f"the request body took more than {config.body_timeout:g} s to arrive") from None
        return b"".join(chunks)

    async def read_json(request: Request) -> object:
        body = await read_body(request)
        try:
            return json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise RequestError(400, f"the body is not JSON ({error})") from None

    async def score(
        endpoint: str,
        images: list[object],
        texts: list[str],
        template: object,
        decode: Callable[[object], object],
        pairs: list[tuple[int, int]] | None = None,
    ) -> tuple[list[float | None], list[tuple[str, str] | None]]:
        """Score `images[i]` with `texts[i]` (or the `pairs` of (image, text) indices), decoding each image with
        `decode` (raw item -> bytes): per pair a score, or `("image" or "text", why)`."""
        batcher, checker = state.require_ready()
        try:
            template = checker.check_template(template)
        except ItemError as error:
            raise RequestError(422, f"question_template: {error}") from None
        pixels = state.max_image_pixels

        def prepare():
            decoded = []
            for image in images:
                try:
                    decoded.append(decode_image(decode(image), pixels))
                except ItemError as error:
                    decoded.append(error)
            problems = []
            for text in texts:
                try:
                    checker.check(text, template)
                    problems.append(None)
                except ItemError as error:
                    problems.append(error)
            return decoded, problems

        decoded, text_problems = await run_in_threadpool(prepare)
        if pairs is None:
            pairs = [(index, index) for index in range(len(texts))]
        scores: list[float | None] = [None] * len(pairs)
        errors: list[tuple[str, str] | None] = [None] * len(pairs)
        to_score = []
        for position, (image, text) in enumerate(pairs):
            if isinstance(decoded[image], ItemError):
                errors[position] = ("image", f"the image: {decoded[image]}")
            elif text_problems[text] is not None:
                errors[position] = ("text", f"the text: {text_problems[text]}")
            else:
                to_score.append(position)
        futures = batcher.submit(
            [decoded[pairs[position][0]] for position in to_score],
            [texts[pairs[position][1]] for position in to_score],
            template,
        )
        try:
            results = await asyncio.gather(*futures, return_exceptions=True)
        except asyncio.CancelledError:
            for future in futures:
                future.cancel()
            raise
        for position, result in zip(to_score, results):
            if isinstance(result, PairError):
                errors[position] = ("image", f"the image: {result}")
            elif isinstance(result, BaseException):
                raise result
            else:
                scores[position] = result
        metrics.items.labels(endpoint, "scored").inc(sum(score is not None for score in scores))
        metrics.items.labels(endpoint, "error").inc(sum(error is not None for error in errors))
        return scores, errors

    def all_or_nothing(scores: list[float | None], errors: list[tuple[str, str] | None]) -> list[float]:
        problems = [(index, error[1]) for index, error in enumerate(errors) if error is not None]
        if problems:
            raise RequestError(422, item_problems(problems))
        return scores

    @app.get("/health")
    async def health() -> JSONResponse:
        if state.replicas is None:
            message = "the model is still loading" if state.load_error is None else "the model could not be loaded"
            return JSONResponse({"status": "loading", "error": message}, status_code=503)
        devices = [replica.device for replica in state.replicas]
        return JSONResponse({"status": "ok", "model": config.model_name, "devices": devices})

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/compute")
    async def compute(request: Request) -> JSONResponse:
        state.require_ready()
        prompts, images, videos = read_flow_factory(await read_json(request), config.max_items)
        image_items = [index for index in range(len(prompts)) if index not in videos]
        missing = [
            (index, "it has neither an image nor video frames") for index in image_items if images[index] is None
        ]
        image_items = [index for index in image_items if images[index] is not None]
        # Video items go through the same batches as images, one pair per sampled frame, averaged per video.
        frame_items = video_frame_items(videos, config.video_frames)
        items = [(index, images[index]) for index in image_items] + frame_items
        scores, errors = await score(
            "/compute", [item for _, item in items], [prompts[index] for index, _ in items], None, decode_base64
        )
        problems = list(missing)
        item_scores: dict[int, list[float]] = {}
        for (index, _), value, error in zip(items, scores, errors):
            if error is not None:
                kind = "a frame of the video" if index in videos else "the image"
                problems.append((index, error[1] if error[0] == "text" else f"{kind}: {error[1]}"))
            else:
                item_scores.setdefault(index, []).append(value)
        if problems:
            raise RequestError(422, item_problems(sorted(set(problems))))
        rewards = [sum(values) / len(values) for _, values in sorted(item_scores.items())]
        return JSONResponse({"rewards": rewards})

    @app.post("/")
    async def flow_grpo(request: Request) -> Response:
        state.require_ready()
        body = await read_body(request)
        try:
            payload = safe_loads(body)
        except RefusedGlobal as error:
            logger.warning("refused a pickle naming the global %s", error.global_name)
            raise RequestError(400, str(error)) from None
        except pickle.UnpicklingError as error:
            raise RequestError(400, str(error)) from None
        images, prompts = read_flow_grpo(payload, config.max_items)
        scores, errors = await score("/", images, prompts, None, lambda data: data)
        outputs = all_or_nothing(scores, errors)
        return Response(pickle.dumps({"outputs": outputs, "scores": outputs}), media_type="application/octet-stream")

    @app.post("/score")
    async def score_endpoint(request: Request) -> JSONResponse:
        state.require_ready()
        images, texts, matrix, template = read_score_request(await read_json(request), config.max_items)
        if not matrix:
            scores, errors = await score("/score", images, texts, template, decode_base64)
            results = [{"score": s} if e is None else {"error": e[1]} for s, e in zip(scores, errors)]
            return JSONResponse({"results": results})
        pairs = [(image, text) for image in range(len(images)) for text in range(len(texts))]
        scores, errors = await score("/score", images, texts, template, decode_base64, pairs)
        table = [scores[row * len(texts) : (row + 1) * len(texts)] for row in range(len(images))]
        problems = {}
        for (image, text), error in zip(pairs, errors):
            if error is not None:
                kind, index = error[0], image if error[0] == "image" else text
                problems.setdefault((kind, index), {kind: index, "error": error[1]})
        return JSONResponse({"scores": table, "errors": [problems[key] for key in sorted(problems)]})

    app.state.server_state = state
    return app


def _too_large(size: int, limit: int) -> str:
    return (
        f"the request body is {size} bytes or more, over this server's limit of {limit} bytes (--max-body-mb): send "
        "fewer or smaller images per request"
    )


class _MetricsMiddleware:
    """Counts each HTTP request by endpoint and status, and times it (plain ASGI: it never touches the body)."""

    _ENDPOINTS = ("/", "/compute", "/score", "/health", "/metrics")

    def __init__(self, app, metrics: ServerMetrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        endpoint = scope["path"] if scope["path"] in self._ENDPOINTS else "other"
        started, status = time.monotonic(), [500]

        async def send_and_note(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            self.metrics.requests.labels(endpoint, str(status[0])).inc()
            self.metrics.latency.labels(endpoint).observe(time.monotonic() - started)


# --------------------------------------------------------------------------------------------------------------------
# Running it


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening socket on `host:port`, bound before the model loads so that a port in use is reported at once
    (OSError)."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def run_server(
    load_replicas: Callable[[], list[Replica]], config: ServerConfig, sock: socket.socket, log_level: str = "info"
) -> int:
    """Serve the app on `sock` until SIGTERM or SIGINT (then finish the requests in flight): 0, or 2 when the model
    could not be loaded."""
    import uvicorn

    failed: list[BaseException] = []

    def stop_on_load_error(error: BaseException) -> None:
        failed.append(error)
        server.should_exit = True

    app = create_app(load_replicas, config, on_load_error=stop_on_load_error)
    server = uvicorn.Server(
        uvicorn.Config(app, log_level=log_level, timeout_graceful_shutdown=None, lifespan="on", access_log=False)
    )
    # uvicorn re-raises the signal that stopped it once it has shut down, so that the process dies of it; a handler
    # of our own receives it instead, and a shutdown that finished every request exits with status 0.
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 2 if failed else 0


__all__ = ["ServerConfig", "bind_socket", "create_app", "run_server"]
