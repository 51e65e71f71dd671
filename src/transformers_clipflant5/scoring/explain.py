# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""`VQAScore.explain`: why a pair scores what it scores.

An [`Explanation`] holds, for one (image, text) pair:

- the score, and a trace of the answer: per answer token the probability of the expected token and the top-k
  tokens the model would have preferred there (the score is the geometric mean of the expected tokens' probabilities);
- word attributions: for each word of the text, the log score with the word minus the log score without it;
- a region heatmap over the original image (height x width of the image as given, not of the model's square input);
- optionally the scores of sub-questions ("Is there a dog?") and sub-captions ("a dog"), as in DSG-style
  decompositions of a prompt into its parts.

Every value is a difference of log scores, "with" minus "without": positive where the part (a word, a region) raises
the score, i.e. the image agrees with it; negative where leaving it out raises the score, i.e. what the model finds
missing or wrong. Word attributions are exact by definition (each is two scores `VQAScore.__call__` returns); the
occlusion heatmap likewise (each cell is greyed out and the image scored again).

Heatmap methods:

- `"occlusion"` (the default): the image is cut into a grid of cells (`grid` x `grid`, following the image's aspect
  ratio); each cell in turn is filled with the colour the processor pads with (the CLIP mean, what the model sees
  as "nothing" around padded images) and the image scored again; a cell's value is log score - log score with the
  cell greyed out. Chosen as default because its values are exact and in the same unit as the word attributions, it
  runs under `torch.inference_mode` through the ordinary scoring path (so it works with quantized, compiled and
  offloaded models alike), and it measures what removing a region does rather than what an infinitesimal change of
  pixels does: a model sure of its answer (p near 1) has almost no gradient anywhere.
- `"gradient"`: one forward and backward pass of `VQAScore.score_pixels` on the original pixels; the value of a pixel
  is gradient x (pixel - pad colour) summed over channels, the first-order estimate of the same "with minus greyed
  out" difference, per pixel. The gradient flows back through the differentiable padding, resizing and cropping, so
  the map is already on the original pixel grid (pixels the crop drops get 0). Finer, far cheaper for large grids,
  but noisy, and it needs a model autograd can run backward through (activations of one pair held in memory).
- None: no heatmap.

The heatmap is over the original image because both methods work on it: occlusion greys out cells of the image as
given, and the gradient is taken with respect to its pixels before padding to square and resizing.
"""

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from PIL import Image

from ..image_processing_clip_flant5 import ImageInput, load_image
from .prompts import check_text
from .scorer_api import ScorerAPI


HEATMAP_METHODS = ("occlusion", "gradient")
DEFAULT_HEATMAP = "occlusion"
DEFAULT_GRID = 8
# Sub-questions are asked as they are, with the default question's request for a yes/no answer.
SUB_QUESTION_TEMPLATE = "{} Please answer yes or no."


@dataclass
class AnswerToken:
    """
    One position of the answer (e.g. `"▁Yes"`, then `"</s>"`).

    Attributes:
        token: the expected token (its sentencepiece piece).
        token_id: its id.
        probability: the model's probability of the expected token at this position.
        alternatives: the `top_k` most probable tokens at this position, most probable first, as `(token,
            probability)`; the expected token is among them when it is that probable.
    """

    token: str
    token_id: int
    probability: float
    alternatives: list[tuple[str, float]]


@dataclass
class Explanation:
    """
    What [`VQAScore.explain`] finds about one (image, text) pair.

    Attributes:
        text: the text explained.
        score: `VQAScore(image, text)`.
        answer_tokens: per answer position, the expected token, its probability and the top-k alternatives (one
            model forward pass). The geometric mean of the expected tokens' probabilities is the score
            (`trace_score`).
        word_attributions: `(word, value)` per word of `text.split()`, in order: value = log score of the text - log
            score of the text without that word (the others joined by single spaces). Positive: the word raises the
            score; negative: the score is higher without it (the image does not show it). NaN for a text of one
            word, which leaves nothing to score.
        heatmap: `(height, width)` float32 array over the original image (None without a heatmap): log score - log
            score with that region greyed out (`"occlusion"`) or its first-order estimate per pixel (`"gradient"`).
        heatmap_method: `"occlusion"`, `"gradient"` or None.
        sub_questions: `(question, score)` per sub-question, asked as `"{question} Please answer yes or no."`.
        sub_captions: `(caption, score)` per sub-caption, scored as the text is (with the scorer's question).
    """

    text: str
    score: float
    answer_tokens: list[AnswerToken]
    word_attributions: list[tuple[str, float]]
    heatmap: np.ndarray | None = None
    heatmap_method: str | None = None
    sub_questions: list[tuple[str, float]] = field(default_factory=list)
    sub_captions: list[tuple[str, float]] = field(default_factory=list)

    @property
    def trace_score(self) -> float:
        """The score recomputed from the trace: the geometric mean of the expected tokens' probabilities."""
        return math.exp(sum(math.log(token.probability) for token in self.answer_tokens) / len(self.answer_tokens))


def leave_one_out(text: str) -> list[str]:
    """For each word of `text.split()`, the text without it, the other words joined by single spaces."""
    words = text.split()
    return [" ".join(words[:index] + words[index + 1 :]) for index in range(len(words))]


def explain(
    scorer: ScorerAPI,
    image: ImageInput,
    text: str,
    top_k: int = 5,
    sub_questions: Sequence[str] | None = None,
    sub_captions: Sequence[str] | None = None,
    heatmap: Literal["occlusion", "gradient"] | None = DEFAULT_HEATMAP,
    grid: int = DEFAULT_GRID,
    question_template: str | None = None,
    answer_template: str | None = None,
    batch_size: int | None = None,
) -> Explanation:
    """
    Explain the score of one (image, text) pair: a token trace, word attributions, a region heatmap over the original
    image and optional sub-question scores. See [`Explanation`] for what each holds and the module's docstring for
    the heatmap methods.

    Args:
        image: a path, PIL image or array, as for `VQAScore.__call__`.
        text: the text to explain.
        top_k: alternatives listed per answer token.
        sub_questions: questions about parts of the text ("Is the dog brown?"), each asked as
            `"{question} Please answer yes or no."` and scored.
        sub_captions: captions of parts of the text ("a brown dog"), each scored as `text` is.
        heatmap: `"occlusion"` (default), `"gradient"` or None.
        grid: cells per side of the occlusion grid (fewer where the image has fewer pixels).
        question_template, answer_template, batch_size: as in `VQAScore.__call__` (default: the scorer's).

    Cost, for a text of W words, S sub-captions and Q sub-questions (a "pair" is one row of a scoring batch, the
    image encoded once per call):
        - 1 + W + S pairs in one `VQAScore.__call__` (the score, the word attributions, the sub-captions);
        - Q pairs in a second call, when there are sub-questions (their question template differs);
        - one model forward pass with labels (the trace; vision tower included);
        - occlusion: one pair per grid cell (`grid`² at most), `batch_size` occluded copies of the image held in
          memory at a time; gradient: one forward and one backward pass of `score_pixels` (the pair's activations
          held until the backward pass ends).
        Everything but the gradient runs under `torch.inference_mode()`.

    Returns:
        [`Explanation`]
    """
    check_text(text, "text", scorer.processor.image_token)
    if not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"top_k must be a positive integer, got {top_k!r}.")
    if heatmap is not None and heatmap not in HEATMAP_METHODS:
        raise ValueError(f"heatmap must be one of {HEATMAP_METHODS} or None, got {heatmap!r}.")
    if not isinstance(grid, int) or grid < 1:
        raise ValueError(f"grid must be a positive integer, got {grid!r}.")
    sub_questions = _text_list(sub_questions, "sub_questions")
    sub_captions = _text_list(sub_captions, "sub_captions")
    question_template = scorer.question_template if question_template is None else question_template
    answer_template = scorer.answer_template if answer_template is None else answer_template
    # Read once: every call below gets the same RGB image (the scorer encodes an in-memory image once per call).
    picture = load_image(image, scorer.processor.image_processor.max_image_pixels)

    reduced = leave_one_out(text) if len(text.split()) > 1 else []
    texts = [text, *reduced, *sub_captions]
    scores = scorer([picture] * len(texts), texts, batch_size, question_template, answer_template).double()
    log_score = float(scores[0].log())
    if reduced:
        values = (log_score - scores[1 : 1 + len(reduced)].log()).tolist()
    else:
        values = [float("nan")]
    question_scores = (
        scorer([picture] * len(sub_questions), sub_questions, batch_size, SUB_QUESTION_TEMPLATE, answer_template)
        if sub_questions
        else torch.zeros(0)
    )
    answer_tokens = trace_answer(scorer, picture, text, top_k, question_template, answer_template)
    if heatmap == "occlusion":
        region_map = occlusion_heatmap(
            scorer, picture, text, log_score, grid, question_template, answer_template, batch_size
        )
    elif heatmap == "gradient":
        region_map = gradient_heatmap(scorer, picture, text, question_template, answer_template)
    else:
        region_map = None
    return Explanation(
        text=text,
        score=float(scores[0]),
        answer_tokens=answer_tokens,
        word_attributions=list(zip(text.split(), values)),
        heatmap=region_map,
        heatmap_method=heatmap,
        sub_questions=list(zip(sub_questions, question_scores.tolist())),
        sub_captions=list(zip(sub_captions, scores[1 + len(reduced) :].tolist())),
    )


def _text_list(texts: Sequence[str] | None, name: str) -> list[str]:
    if texts is None:
        return []
    if isinstance(texts, str):
        raise TypeError(f"{name} must be a list of strings, got one string: pass [{texts!r}].")
    texts = list(texts)
    for index, text in enumerate(texts):
        check_text(text, f"{name}[{index}]")
    return texts


def _token_name(tokenizer, token_id: int) -> str:
    # The model's vocabulary is rounded up past the tokenizer's (FlanT5: 32128 rows for 32100 tokens).
    name = tokenizer.convert_ids_to_tokens(token_id) if token_id < len(tokenizer) else None
    return name if name is not None else f"<unused {token_id}>"


@torch.inference_mode()
def trace_answer(
    scorer: ScorerAPI,
    image: Image.Image,
    text: str,
    top_k: int = 5,
    question_template: str | None = None,
    answer_template: str | None = None,
) -> list[AnswerToken]:
    """
    Per answer position, the expected token's probability and the `top_k` most probable tokens: one forward pass of
    the model with the answer as labels, for one pair (the geometric mean of the expected tokens' probabilities is
    `exp(-loss)`, the score).
    """
    processor, model = scorer.processor, scorer.model
    question_template = scorer.question_template if question_template is None else question_template
    answer_template = scorer.answer_template if answer_template is None else answer_template
    prompt = processor.chat_prompt(question_template.format(text))
    inputs = processor(images=[image], text=[prompt], text_target=[answer_template.format(text)], return_tensors="pt")
    inputs = inputs.to(scorer.device)
    inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
    was_training = model.training
    model.eval()
    try:
        logits = model(**inputs).logits[0]
    finally:
        model.train(was_training)
    log_probs = logits.to(torch.promote_types(logits.dtype, torch.float32)).log_softmax(-1)
    labels = inputs["labels"][0]
    probabilities = log_probs.exp()
    top = probabilities.topk(min(top_k, probabilities.shape[-1]), dim=-1)
    tokenizer = processor.tokenizer
    tokens = []
    for position, token_id in enumerate(labels.tolist()):
        if token_id == -100:
            continue
        alternatives = [
            (_token_name(tokenizer, candidate), probability)
            for candidate, probability in zip(top.indices[position].tolist(), top.values[position].tolist())
        ]
        tokens.append(
            AnswerToken(
                token=_token_name(tokenizer, token_id),
                token_id=token_id,
                probability=float(probabilities[position, token_id]),
                alternatives=alternatives,
            )
        )
    return tokens


def _pad_colour(scorer: ScorerAPI) -> tuple[int, ...]:
    """The 8-bit colour the processor pads images with: the CLIP mean, as the original pasted it."""
    return tuple(int(mean * 255) for mean in scorer.processor.image_processor.image_mean)


def grid_cells(height: int, width: int, grid: int) -> list[tuple[int, int, int, int]]:
    """`(top, bottom, left, right)` of the cells of a `grid` x `grid` partition of an image (fewer cells along a side
    with fewer pixels), row by row; together they cover every pixel once."""
    rows = np.linspace(0, height, min(grid, height) + 1).round().astype(int)
    columns = np.linspace(0, width, min(grid, width) + 1).round().astype(int)
    return [
        (int(top), int(bottom), int(left), int(right))
        for top, bottom in zip(rows[:-1], rows[1:])
        for left, right in zip(columns[:-1], columns[1:])
    ]


def occlusion_heatmap(
    scorer: ScorerAPI,
    image: Image.Image,
    text: str,
    log_score: float,
    grid: int = DEFAULT_GRID,
    question_template: str | None = None,
    answer_template: str | None = None,
    batch_size: int | None = None,
) -> np.ndarray:
    """`(height, width)` map of `log_score` (the pair's log score) minus the log score with each grid cell filled with
    the pad colour, every pixel of a cell holding the cell's value. Scored `batch_size` cells per call."""
    batch_size = scorer.batch_size if batch_size is None else batch_size
    cells = grid_cells(image.height, image.width, grid)
    colour = _pad_colour(scorer)
    heatmap = np.zeros((image.height, image.width), dtype=np.float32)
    for start in range(0, len(cells), batch_size):
        chunk = cells[start : start + batch_size]
        occluded = []
        for top, bottom, left, right in chunk:
            copy = image.copy()
            copy.paste(colour, (left, top, right, bottom))
            occluded.append(copy)
        scores = scorer(occluded, [text] * len(chunk), batch_size, question_template, answer_template).double()
        for (top, bottom, left, right), score in zip(chunk, scores.log().tolist()):
            heatmap[top:bottom, left:right] = log_score - score
    return heatmap


def gradient_heatmap(
    scorer: ScorerAPI,
    image: Image.Image,
    text: str,
    question_template: str | None = None,
    answer_template: str | None = None,
) -> np.ndarray:
    """`(height, width)` map of gradient x (pixel - pad colour), summed over channels, of the log score with respect
    to the original pixels (through `score_pixels`, which pads, resizes and crops differentiably)."""
    pixels = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1).contiguous()
    pixels = pixels.to(scorer.device).requires_grad_(True)
    with torch.enable_grad(), warnings.catch_warnings():
        # autograd.grad below asks for the pixels' gradient only: weights that require gradients cost nothing more.
        warnings.filterwarnings("ignore", message="The scorer's weights require gradients")
        score = scorer.score_pixels([pixels], [text], question_template, answer_template)
        (gradient,) = torch.autograd.grad(score.log().sum(), pixels)
    fill = torch.tensor(_pad_colour(scorer), dtype=pixels.dtype, device=pixels.device).view(3, 1, 1) / 255
    return (gradient * (pixels.detach() - fill)).sum(0).float().cpu().numpy()


__all__ = [
    "DEFAULT_HEATMAP",
    "HEATMAP_METHODS",
    "SUB_QUESTION_TEMPLATE",
    "AnswerToken",
    "Explanation",
    "explain",
    "gradient_heatmap",
    "grid_cells",
    "leave_one_out",
    "occlusion_heatmap",
    "trace_answer",
]
