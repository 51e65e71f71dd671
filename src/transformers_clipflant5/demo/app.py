# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""The web demo: a Gradio app around one loaded [`VQAScore`].

Tabs and their API endpoints (`gradio_client.Client(url).predict(..., api_name="/score")`):

- **Score** (`/score`): image + text -> the score (first output), the words coloured by attribution (a class
  each: raises or lowers the score, "a lot" within half of the largest), the heatmap
  overlaid on the image, the answer's token trace, sub-question/sub-caption scores and the whole explanation as JSON
  ([`VQAScore.explain`]).
- **Rank** (`/rank`): several images, one prompt -> a gallery best first, and a table of rank, file name, score
  ([`VQAScore.rank`]).
- **Compare texts** (`/compare`): one image, several texts (one per line) -> a table of the texts best first.

The model is loaded once, by the caller; every event goes through one queue that runs one request at a time on it
(a second would only contend for the same device). Inputs are checked before any model work, and a bad one (no
image, an upload that is not an image, an empty or over-long text, too many images) is answered with a message in the
page (`gr.Error`), never a traceback. Gradio's own preprocessing is skipped (`preprocess=False`): the handlers read
the uploaded file (Gradio has already checked it lies in its upload folder) with the package's image reader, so that
an unreadable upload gets that reader's explanation.
"""

import hmac
import ipaddress
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr
from PIL import Image

from ..image_processing_clip_flant5 import load_image
from ..scoring.explain import DEFAULT_HEATMAP, HEATMAP_METHODS
from ..scoring.vqascore import VQAScore
from .views import (
    HEATMAP_COLOURS,
    WORD_COLOURS,
    explanation_json,
    heatmap_overlay,
    part_rows,
    trace_rows,
    word_highlights,
)


MAX_IMAGES = 32  # per Rank request
MAX_TEXTS = 32  # per Compare request, and sub-questions per Score request
MAX_WORDS = 64  # per explained text: each word is one more pair to score
MAX_FILE_SIZE = "25mb"  # per upload
MAX_QUEUE = 64  # waiting requests; more are turned away with a message
KEY_VARIABLE = "CLIP_FLANT5_DEMO_KEY"
LOOPBACK_HOSTS = ("localhost",)
NO_HEATMAP = "none"

INTRO = """\
# VQAScore with CLIP-FlanT5
The score is the model's probability of answering **Yes** to *Does this figure show "{text}"? Please answer yes or
no.* Red marks what lowers it (what the model finds missing or wrong), blue what raises it: a word by the log score
with the word minus without it, a region by the log score minus the log score with the region greyed out
(occlusion) or that difference's per-pixel gradient estimate.
"""


class DemoError(gr.Error):
    """A bad input, shown as a message in the page (and not logged with a traceback on the server)."""

    def __init__(self, message: str):
        super().__init__(message, print_exception=False)


def _path(payload: Any, what: str) -> tuple[str, str]:
    """`(path, name shown to the user)` of an uploaded file's payload (a dict, or a path string from the API)."""
    if payload is None:
        raise DemoError(f"Upload {what} first.")
    if isinstance(payload, dict):
        path = payload.get("path")
        name = payload.get("orig_name") or (Path(path).name if path else what)
    else:
        path = os.fspath(payload)
        name = Path(path).name
    if not path:
        raise DemoError(f"Upload {what} first.")
    return path, name


def _read_image(payload: Any, what: str = "an image") -> tuple[Image.Image, str]:
    path, name = _path(payload, what)
    try:
        return load_image(path), name
    except (OSError, ValueError, TypeError) as error:
        raise DemoError(
            f"{name} is not an image this demo can read ({type(error).__name__}). Upload a PNG, JPEG or WebP image."
        ) from error


def _text(text: Any, what: str = "a text") -> str:
    if not isinstance(text, str) or not text.strip():
        raise DemoError(f"Type {what} first.")
    return text.strip()


def _lines(text: Any, what: str, required: bool) -> list[str]:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    if required and not lines:
        raise DemoError(f"Type {what}, one per line.")
    if len(lines) > MAX_TEXTS:
        raise DemoError(f"Got {len(lines)} {what}; this demo takes at most {MAX_TEXTS} per request.")
    return lines


def _model_errors(function: Callable) -> Callable:
    """Turn the scorer's errors about an input (an over-long text, say) into messages in the page."""

    def wrapped(*args):
        try:
            return function(*args)
        except gr.Error:
            raise
        except (ValueError, TypeError) as error:
            raise DemoError(str(error)) from error

    wrapped.__name__ = wrapped.__qualname__ = function.__name__
    wrapped.__doc__ = function.__doc__
    return wrapped


class DemoHandlers:
    """The demo's event handlers, one per tab, around one scorer (callable without a browser)."""

    def __init__(self, scorer: VQAScore):
        self.scorer = scorer

    def score(self, image: Any, text: Any, heatmap: Any = DEFAULT_HEATMAP, parts: Any = "") -> tuple:
        """Score and explain one (image, text) pair. Lines of `parts` ending in '?' are sub-questions, other lines
        sub-captions."""
        picture, _ = _read_image(image)
        text = _text(text)
        if len(text.split()) > MAX_WORDS:
            raise DemoError(
                f"The text has {len(text.split())} words; this demo explains texts of at most {MAX_WORDS} (each word "
                "is scored without it)."
            )
        method = None if heatmap in (None, "", NO_HEATMAP) else heatmap
        if method is not None and method not in HEATMAP_METHODS:
            raise DemoError(f"Heatmap must be one of {', '.join((*HEATMAP_METHODS, NO_HEATMAP))}, got {heatmap!r}.")
        lines = _lines(parts, "sub-questions and sub-captions", required=False)
        explanation = self.scorer.explain(
            picture,
            text,
            heatmap=method,
            sub_questions=[line for line in lines if line.endswith("?")],
            sub_captions=[line for line in lines if not line.endswith("?")],
        )
        overlay = heatmap_overlay(picture, explanation.heatmap, method) if method is not None else (picture, [])
        return (
            explanation.score,
            word_highlights(explanation),
            overlay,
            trace_rows(explanation),
            part_rows(explanation),
            explanation_json(explanation),
        )

    def rank(self, images: Any, prompt: Any) -> tuple:
        """Rank the uploaded images by their score with `prompt`, best first."""
        files = [] if images is None else (images if isinstance(images, list) else [images])
        if not files:
            raise DemoError("Upload some images first.")
        if len(files) > MAX_IMAGES:
            raise DemoError(f"Got {len(files)} images; this demo ranks at most {MAX_IMAGES} per request.")
        prompt = _text(prompt, "a prompt")
        pictures, names = zip(*(_read_image(payload, "images") for payload in files))
        ranking = self.scorer.rank(list(pictures), prompt)
        order, scores = ranking.order.tolist(), ranking.scores.tolist()
        gallery = [
            (pictures[index], f"#{place} · {scores[index]:.6g} · {names[index]}")
            for place, index in enumerate(order, 1)
        ]
        table = [[place, names[index], scores[index]] for place, index in enumerate(order, 1)]
        return gallery, table

    def compare(self, image: Any, texts: Any) -> list[list]:
        """Score one image with each text (one per line), best first."""
        picture, _ = _read_image(image)
        lines = _lines(texts, "texts", required=True)
        scores = self.scorer([picture] * len(lines), lines).tolist()
        order = sorted(range(len(lines)), key=lambda index: -scores[index])
        return [[place, lines[index], scores[index]] for place, index in enumerate(order, 1)]


def build_demo(scorer: VQAScore, title: str = "VQAScore (CLIP-FlanT5)") -> gr.Blocks:
    """The demo's Gradio app around `scorer` (not launched; see [`launch_demo`])."""
    handlers = DemoHandlers(scorer)
    # One queue for every event: the model runs one request at a time.
    queued = {"concurrency_limit": 1, "concurrency_id": "model", "preprocess": False}
    with gr.Blocks(title=title) as demo:
        gr.Markdown(INTRO)
        with gr.Tab("Score", id="score"):
            with gr.Row():
                with gr.Column():
                    image = gr.Image(type="filepath", label="Image", height=280, elem_id="score-image")
                    text = gr.Textbox(label="Text", placeholder="a red circle on the left", elem_id="score-text")
                    heatmap = gr.Radio(
                        [*HEATMAP_METHODS, NO_HEATMAP], value=DEFAULT_HEATMAP, label="Heatmap", elem_id="score-heatmap"
                    )
                    parts = gr.Textbox(
                        label="Sub-questions or sub-captions (optional, one per line; a line ending in ? is a question)",
                        lines=2,
                        elem_id="score-parts",
                    )
                    button = gr.Button("Score", variant="primary", elem_id="score-button")
                with gr.Column():
                    score = gr.Number(value=None, label="VQAScore: P(Yes)", elem_id="score-value")
                    words = gr.HighlightedText(
                        label="Words: how each changes the score",
                        color_map=WORD_COLOURS,
                        show_legend=True,
                        show_inline_category=False,
                        elem_id="score-words",
                    )
                    overlay = gr.AnnotatedImage(
                        label="Regions", color_map=HEATMAP_COLOURS, elem_id="score-heatmap-image"
                    )
            with gr.Accordion("Answer trace, sub-questions, raw explanation", open=False):
                trace = gr.Dataframe(
                    headers=["position", "expected token", "probability", "most probable tokens"],
                    label="Answer tokens",
                    elem_id="score-trace",
                )
                part_table = gr.Dataframe(headers=["kind", "text", "score"], label="Sub-questions and sub-captions")
                details = gr.JSON(label="Explanation")
            outputs = [score, words, overlay, trace, part_table, details]
            button.click(
                _model_errors(handlers.score), [image, text, heatmap, parts], outputs, api_name="score", **queued
            )
            text.submit(
                _model_errors(handlers.score), [image, text, heatmap, parts], outputs, api_name=False, **queued
            )
        with gr.Tab("Rank", id="rank"):
            with gr.Row():
                with gr.Column():
                    images = gr.File(
                        file_count="multiple", file_types=["image"], label="Images", elem_id="rank-images"
                    )
                    prompt = gr.Textbox(label="Prompt", elem_id="rank-prompt")
                    rank_button = gr.Button("Rank", variant="primary", elem_id="rank-button")
                with gr.Column():
                    gallery = gr.Gallery(label="Best first", columns=4, elem_id="rank-gallery")
                    ranking = gr.Dataframe(headers=["rank", "image", "score"], label="Ranking", elem_id="rank-table")
            rank_button.click(
                _model_errors(handlers.rank), [images, prompt], [gallery, ranking], api_name="rank", **queued
            )
        with gr.Tab("Compare texts", id="compare"):
            with gr.Row():
                with gr.Column():
                    compare_image = gr.Image(type="filepath", label="Image", height=280, elem_id="compare-image")
                    texts = gr.Textbox(label="Texts, one per line", lines=5, elem_id="compare-texts")
                    compare_button = gr.Button("Compare", variant="primary", elem_id="compare-button")
                comparison = gr.Dataframe(
                    headers=["rank", "text", "score"], label="Best first", elem_id="compare-table"
                )
            compare_button.click(
                _model_errors(handlers.compare), [compare_image, texts], comparison, api_name="compare", **queued
            )
    demo.queue(max_size=MAX_QUEUE)
    return demo


def is_loopback(host: str) -> bool:
    """Whether `host` only accepts connections from this machine."""
    if host in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def launch_settings(key: str | None = None) -> dict[str, Any]:
    """`Blocks.launch` arguments every way of serving the demo shares: the upload size limit, and with `key` a login
    that takes any user name and the key as password."""
    auth = (lambda _user, password: hmac.compare_digest(password.encode(), key.encode())) if key else None
    return {"auth": auth, "max_file_size": MAX_FILE_SIZE, "ssr_mode": False, "footer_links": ["api"]}


def launch_demo(
    scorer: VQAScore,
    host: str = "127.0.0.1",
    port: int | None = 7860,
    key: str | None = None,
    block: bool = True,
) -> gr.Blocks:
    """
    Build and serve the demo on `host:port` (port None: Gradio picks a free one from 7860 up).

    A host other than loopback needs `key`: the page then asks for it (any user name, the key as password). `block`:
    serve until interrupted; False returns once the server is up (the app's `local_url` says where; `close()` stops
    it).
    """
    if not is_loopback(host) and not key:
        raise ValueError(
            f"Serving on {host} makes the demo reachable from other machines: set {KEY_VARIABLE} to a secret key "
            "that visitors must enter, or keep the default host 127.0.0.1."
        )
    demo = build_demo(scorer)
    demo.launch(
        server_name=host, server_port=port, prevent_thread_lock=not block, quiet=not block, **launch_settings(key)
    )
    return demo


__all__ = ["KEY_VARIABLE", "DemoHandlers", "build_demo", "is_loopback", "launch_demo", "launch_settings"]
