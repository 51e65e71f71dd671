# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""VQAScore (Lin et al., ECCV 2024) with CLIP-FlanT5: how likely the model answers "Yes" to "Does this figure show
"{text}"? Please answer yes or no." about an image.

The score of a pair is exp(-mean cross-entropy) over the answer's label tokens (the answer and its `</s>`), with the
question in the stage-2 chat format, exactly as the original evaluation code computed it. What differs is the cost:

- each distinct image goes through the vision tower and projector once per call, however many texts it is paired
  with (the projected features are passed to the model as `image_embeds`);
- rows are sorted by prompt length before batching, so that batches carry little padding;
- images are read and preprocessed on a pool of threads, on a GPU the next chunk while this one is scored;
- the LM head runs only on the answer positions, the decoder only on the answer's length;
- every method builds a [`ScoringPlan`] (`plan`) and runs it (`run_plan`, `score_batch`), so these rules hold for
  `__call__`, `score_matrix`, `rank`, `generate` and `score_pixels` alike;
- everything runs under `torch.inference_mode()`, by default in bf16 on CUDA (fp32 on CPU) with the attention
  implementation transformers picks (SDPA where supported).

Example:

```python
>>> from transformers_clipflant5 import VQAScore
>>> scorer = VQAScore.from_pretrained("zhiqiulin/clip-flant5-xxl")
>>> scorer(["cat.png", "dog.png"], ["a cat", "a dog"])  # one score per (image, text) pair
>>> scorer.score_matrix(["cat.png", "dog.png"], ["a cat", "a dog", "a bird"])  # 2 x 3
>>> scorer.generate(["cat.png"], ["What is in the image?"], max_new_tokens=20)
```
"""

import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import nullcontext
from typing import NamedTuple

import torch
from torch import nn
from tqdm.auto import tqdm

from ..hub_kwargs import hub_kwargs
from ..image_processing_clip_flant5 import ImageInput
from ..modeling_clip_flant5 import CLIPFlanT5ForConditionalGeneration, shift_tokens_right
from ..padding import pad_right
from ..processing_clip_flant5 import CLIPFlanT5Processor
from . import explain as explanation
from . import video as video_scoring
from .devices import execution_device, resolve_device, resolve_dtype
from .generation import default_max_new_tokens, generate_batch
from .image_reading import ImageReader
from .pixel_preprocessing import PixelInput, check_pixels, checkpoint_in_eval_mode, preprocess_pixels
from .plan import PlanBatch, ScoringPlan, as_list, check_batch_size
from .precision import build_quantization_config, check_finite_scores, quantize_int4_wo
from .prompts import (
    DEFAULT_ANSWER_TEMPLATE,
    DEFAULT_QUESTION_TEMPLATE,
    check_answer_template,
    check_question_template,
    check_text,
    fit_texts,
)
from .scoring_forward import ScoringForward
from .video.decoding import VideoInput


DEFAULT_BATCH_SIZE = 16


# Called with (row index, error) for each row whose image cannot be read, when the caller prefers skipping to raising.
ImageErrorHandler = Callable[[int, Exception], None]


class Ranking(NamedTuple):
    """Best-of-N result: `order` lists image indices best first; `scores[i]` is the score of image i."""

    order: torch.Tensor
    scores: torch.Tensor


# What belongs to loading, not to a call: a scorer scores with the model it loaded.
_LOADING_ARGUMENTS = ("dtype", "torch_dtype", "device", "device_map", "quantization", "attn_implementation")


def _refuse_unknown_arguments(method: str, unknown: dict) -> None:
    if not unknown:
        return
    names = ", ".join(sorted(unknown))
    loading = [name for name in sorted(unknown) if name in _LOADING_ARGUMENTS]
    if loading:
        raise TypeError(
            f"VQAScore.{method}() got {names}: {', '.join(loading)} is chosen when the model loads, e.g. "
            f"VQAScore.from_pretrained(model, {loading[0]}=...); a scorer scores with the model it loaded."
        )
    raise TypeError(f"VQAScore.{method}() got unexpected keyword argument(s): {names}.")


def _check_local_source(name: str | os.PathLike, kwargs: dict) -> None:
    """Name a missing folder as such: "outputs/nope" where "outputs" is a folder here, or a name no Hub repo can
    have, is reported as "there is no folder" (and, if it could be a repo id, why the Hub does not have it either)
    instead of transformers' "could not connect to the Hub". A repo id with no local look-alike goes to
    transformers as it is."""
    from ..hub.model_source import check_model_source, names_a_local_folder

    if not os.path.isdir(os.path.expanduser(os.fspath(name))) and names_a_local_folder(name):
        check_model_source(name, argument="model", revision=kwargs.get("revision"), cache_dir=kwargs.get("cache_dir"))


class VQAScore:
    r"""
    Scores (image, text) pairs with a CLIP-FlanT5 model: P("Yes" | image, "Does this figure show "{text}"? ...").

    Args:
        model ([`CLIPFlanT5ForConditionalGeneration`]): a loaded model (put it in eval mode on its device first).
        processor ([`CLIPFlanT5Processor`]): its processor.
        question_template (`str`, *optional*): default question, with `{}` where the text goes.
        answer_template (`str`, *optional*, defaults to `"Yes"`): default answer (may contain `{}` for the text).
        batch_size (`int`, *optional*, defaults to 16): default number of pairs per forward pass.
        fused (`bool`, *optional*): run the T5 through `t5_inference` (same scores, less overhead per layer). None:
            where it applies (SDPA, eval mode, one device, no offloading), else transformers' T5 forward; True:
            raise where it does not apply; False: always transformers' forward.
        compile (`bool` or `dict`, *optional*, defaults to False): `torch.compile` (dynamic shapes) the image features
            and the T5 forward the scorer uses; a dict is passed to `torch.compile` (`{"mode": "max-autotune"}`). The
            first call compiles (minutes on a small CPU: see benchmarks/bench_score.py); worth it for long runs.
    """

    def __init__(
        self,
        model: CLIPFlanT5ForConditionalGeneration,
        processor: CLIPFlanT5Processor,
        question_template: str = DEFAULT_QUESTION_TEMPLATE,
        answer_template: str = DEFAULT_ANSWER_TEMPLATE,
        batch_size: int = DEFAULT_BATCH_SIZE,
        fused: bool | None = None,
        compile: bool | dict = False,
    ):
        if processor.image_seq_length != model.config.image_seq_length:
            raise ValueError(
                f"The processor expands each image to {processor.image_seq_length} placeholders but the model "
                f"produces {model.config.image_seq_length} features per image: they come from different checkpoints."
            )
        if processor.image_token_id != model.config.image_token_id:
            raise ValueError(
                f"The processor's image token id ({processor.image_token_id}) differs from the model's "
                f"({model.config.image_token_id}): load both from the same checkpoint."
            )
        check_question_template(question_template, processor.image_token)
        check_answer_template(answer_template, processor.image_token)
        check_batch_size(batch_size)
        self.model = model
        self.processor = processor
        self.question_template = question_template
        self.answer_template = answer_template
        self.batch_size = batch_size
        self.forward = ScoringForward(model, fused, compile)

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike,
        dtype: str | torch.dtype = "auto",
        device: str | torch.device | None = None,
        attn_implementation: str | None = None,
        quantization: str | None = None,
        **kwargs,
    ) -> "VQAScore":
        """
        Load a scorer from a Hub repo or folder, in the original layout (`zhiqiulin/clip-flant5-xxl`, `-xl`) or ours.

        Args:
            dtype: `"auto"` (bf16 on CUDA, fp32 on CPU), a torch dtype or its name (`"float32"`, `"bfloat16"`).
            device: where to run; defaults to CUDA when available, else CPU. Ignored with `device_map=...`.
            attn_implementation: `"sdpa"`, `"eager"`, ...; None lets transformers choose (SDPA where supported).
            quantization: `"int8"` (torchao int8 weights) or `"int4"` (bitsandbytes NF4), CPU or CUDA; the T5
                linears are quantized as they load, straight onto `device` (see `transformers_clipflant5.scoring.
                precision`). Needs the `quant` extra. Any other transformers `quantization_config` can be passed in `kwargs` instead.
            kwargs: passed to the model's `from_pretrained` (`revision`, `cache_dir`, `device_map`, ...); the Hub
                arguments among them also reach the processor. `question_template`, `answer_template`,
                `batch_size`, `fused` and `compile` go to the scorer (see the class).
        """
        _check_local_source(pretrained_model_name_or_path, kwargs)
        scorer_kwargs = {
            name: kwargs.pop(name)
            for name in ("question_template", "answer_template", "batch_size", "fused", "compile")
            if name in kwargs
        }
        device = resolve_device(device)
        model_kwargs = dict(kwargs, dtype=resolve_dtype(dtype, device))
        if quantization is not None:
            if kwargs.get("quantization_config") is not None:
                raise ValueError("Pass quantization or quantization_config, not both.")
            model_kwargs["quantization_config"] = build_quantization_config(quantization, model_kwargs["dtype"])
            # Quantize each weight as it loads, on the device it runs on, rather than a full-precision copy first.
            model_kwargs.setdefault("device_map", {"": str(device)})
        if attn_implementation is not None:
            model_kwargs["attn_implementation"] = attn_implementation
        model = CLIPFlanT5ForConditionalGeneration.from_pretrained(pretrained_model_name_or_path, **model_kwargs)
        if quantization == "int4":
            quantize_int4_wo(model, model_kwargs["dtype"])
        if model_kwargs.get("device_map") is None:
            model.to(device)
        model.eval()
        processor = CLIPFlanT5Processor.from_pretrained(pretrained_model_name_or_path, **hub_kwargs(kwargs))
        return cls(model=model, processor=processor, **scorer_kwargs)

    @property
    def device(self) -> torch.device:
        """Where the inputs go: the input embedding's device (its execution device when offloaded)."""
        return execution_device(self.model.get_input_embeddings(), self.model)

    def __call__(
        self,
        images: Sequence[ImageInput],
        texts: Sequence[str],
        batch_size: int | None = None,
        question_template: str | None = None,
        answer_template: str | None = None,
        progress: bool = False,
        truncate_texts: bool = False,
        **unknown,
    ) -> torch.Tensor:
        """
        Score `images[i]` with `texts[i]` for every i.

        Args:
            images: paths, PIL images or arrays (HWC/CHW, uint8, uint16 or float in [0, 1]); a single image (not in a
                list) is one pair.
            texts: one text per image (a single string is one pair).
            batch_size: pairs per forward pass (default: the scorer's).
            question_template: question with `{}` for the text (default: the paper's).
            answer_template: the answer whose likelihood is the score (default `"Yes"`).
            progress: show a progress bar.
            truncate_texts: cut a text whose prompt exceeds the tokenizer's `model_max_length` (512 for FlanT5) to
                fit, instead of raising a ValueError with its token count (the default). Only the text is cut.

        The precision, device and quantization are the loaded model's: `dtype="float64"` (a numerical reference),
        `device` and `quantization` go to [`VQAScore.from_pretrained`]; passed here they raise a TypeError that says
        so.

        Returns:
            `torch.Tensor` of shape `(len(images),)`, float32, on CPU.
        """
        _refuse_unknown_arguments("__call__", unknown)
        images, texts = as_list(images, "images"), as_list(texts, "texts")
        if len(images) != len(texts):
            raise ValueError(
                f"Got {len(images)} images and {len(texts)} texts; VQAScore scores images[i] with texts[i], so both "
                "lists need the same length (use score_matrix for every combination)."
            )
        scores = torch.full((len(images),), float("nan"))
        for rows, batch_scores in self.iter_scores(
            images, texts, batch_size, question_template, answer_template, progress, truncate_texts=truncate_texts
        ):
            scores[rows] = batch_scores.to(scores.dtype)  # float32 as documented, also from a float64 model
        return scores

    def score_matrix(
        self,
        images: Sequence[ImageInput],
        texts: Sequence[str],
        batch_size: int | None = None,
        question_template: str | None = None,
        answer_template: str | None = None,
        progress: bool = False,
        truncate_texts: bool = False,
        **unknown,
    ) -> torch.Tensor:
        """
        Score every image with every text (a single image or text, not in a list, is a list of one). Arguments as
        for `__call__` (`dtype` and `device` belong to `from_pretrained`).

        Returns:
            `torch.Tensor` of shape `(len(images), len(texts))`, float32, on CPU: `[i, j]` scores `images[i]` with
            `texts[j]`.
        """
        _refuse_unknown_arguments("score_matrix", unknown)
        images, texts = as_list(images, "images"), as_list(texts, "texts")
        pair_images = [image for image in images for _ in texts]
        pair_texts = texts * len(images)
        scores = self(
            pair_images, pair_texts, batch_size, question_template, answer_template, progress, truncate_texts
        )
        return scores.view(len(images), len(texts))

    def score_videos(
        self,
        videos: Sequence[VideoInput],
        texts: Sequence[str],
        num_frames: int = 8,
        mode: str = "average",
        sampling: str = "uniform",
        batch_size: int | None = None,
        question_template: str | None = None,
        answer_template: str | None = None,
        progress: bool = False,
        truncate_texts: bool = False,
    ) -> torch.Tensor:
        """
        Score `videos[i]` with `texts[i]`: `mode="average"` the mean of the sampled frames' scores, `"concat"` the
        frames side by side in one strip scored as one image. Each distinct frame is encoded once per call. Arguments
        and frame sampling: [`scoring.video.score_videos`] and docs/video.md.

        Returns:
            `torch.Tensor` of shape `(len(videos),)`, float32, on CPU.
        """
        return video_scoring.score_videos(
            self, videos, texts, num_frames, mode, sampling, batch_size, question_template, answer_template,
            progress, truncate_texts,
        )  # fmt: skip

    def score_videos_matrix(
        self,
        videos: Sequence[VideoInput],
        texts: Sequence[str],
        num_frames: int = 8,
        mode: str = "average",
        sampling: str = "uniform",
        batch_size: int | None = None,
        question_template: str | None = None,
        answer_template: str | None = None,
        progress: bool = False,
        truncate_texts: bool = False,
    ) -> torch.Tensor:
        """Score every video with every text (arguments as in `score_videos`), each video read once: a
        `(len(videos), len(texts))` tensor."""
        return video_scoring.score_videos_matrix(
            self, videos, texts, num_frames, mode, sampling, batch_size, question_template, answer_template,
            progress, truncate_texts,
        )  # fmt: skip

    def score_video_pixels(
        self,
        videos: torch.Tensor | Sequence[torch.Tensor],
        texts: Sequence[str],
        num_frames: int | None = None,
        sampling: str = "uniform",
        **score_pixels_kwargs,
    ) -> torch.Tensor:
        """Differentiable `average`-mode score of float `(N, T, 3, H, W)` video tensors in [0, 1] with `texts`: the
        mean of the frames' `score_pixels`, with the autograd graph (a reward for video generators). See
        [`scoring.video.score_video_pixels`]."""
        return video_scoring.score_video_pixels(self, videos, texts, num_frames, sampling, **score_pixels_kwargs)

    def explain(
        self,
        image: ImageInput,
        text: str,
        top_k: int = 5,
        sub_questions: Sequence[str] | None = None,
        sub_captions: Sequence[str] | None = None,
        heatmap: str | None = explanation.DEFAULT_HEATMAP,
        grid: int = explanation.DEFAULT_GRID,
        question_template: str | None = None,
        answer_template: str | None = None,
        batch_size: int | None = None,
    ) -> explanation.Explanation:
        """
        Why one (image, text) pair scores what it scores: the answer tokens' probabilities with the top-k
        alternatives, each word's effect on the log score (left out, the other words kept), a region heatmap over
        the original image (occlusion by default, or the pixels' gradient) and optional sub-question or sub-caption
        scores. Arguments, costs and the heatmap methods: [`scoring.explain.explain`] and docs/explain.md.
        """
        return explanation.explain(
            self, image, text, top_k, sub_questions, sub_captions, heatmap, grid, question_template,
            answer_template, batch_size,
        )  # fmt: skip

    def iter_scores(
        self,
        images: Sequence[ImageInput],
        texts: Sequence[str],
        batch_size: int | None = None,
        question_template: str | None = None,
        answer_template: str | None = None,
        progress: bool = False,
        on_image_error: ImageErrorHandler | None = None,
        truncate_texts: bool = False,
    ) -> Iterator[tuple[list[int], torch.Tensor]]:
        """
        Score `images[i]` with `texts[i]`, yielding `(row indices, scores)` batch by batch as they are computed (not in
        input order). Every argument is checked before any computation starts.

        `on_image_error(row, error)`, when given, is called for each row whose image cannot be read, and those rows
        are skipped; by default such an image raises. `truncate_texts`: as in `__call__`.
        """
        plan = self.plan(images, texts, batch_size, question_template, answer_template, truncate_texts)
        fused = self.forward.use_fused(assume_eval_mode=True)
        for batch in self.run_plan(plan, on_image_error, progress):
            with torch.inference_mode():
                scores = self.score_batch(batch, fused).cpu()
            check_finite_scores(scores, self.model)
            yield [row.index for row in batch.rows], scores

    def plan(
        self,
        images: Sequence,
        texts: Sequence[str],
        batch_size: int | None = None,
        question_template: str | None = None,
        answer_template: str | None = None,
        truncate_texts: bool = False,
    ) -> ScoringPlan:
        """
        The [`ScoringPlan`] of scoring `images[i]` with `texts[i]` (the scorer's batch size and templates where None),
        after checking every argument: the templates, each text (not empty, no `<image>`, within the tokenizer's
        limit unless `truncate_texts` cuts it). `images` are not read here: anything the plan's runner can read, or
        tensors for `score_pixels`.
        """
        batch_size = self.batch_size if batch_size is None else batch_size
        check_batch_size(batch_size)
        images, texts = as_list(images, "images"), as_list(texts, "texts")
        if len(images) != len(texts):
            raise ValueError(f"Got {len(images)} images and {len(texts)} texts; both lists need the same length.")
        texts, question_template, answer_template = self.check_texts(
            texts, question_template, answer_template, truncate_texts
        )
        return ScoringPlan.build(self.processor, images, texts, question_template, answer_template, batch_size)

    def check_texts(
        self,
        texts: Sequence[str],
        question_template: str | None = None,
        answer_template: str | None = None,
        truncate_texts: bool = False,
    ) -> tuple[list[str], str, str]:
        """
        `(texts, question_template, answer_template)` after checking them, before any image is read or any model
        work: the templates (the scorer's where None), each text (not empty, no `<image>`), and each prompt's length
        against the tokenizer's limit (an over-long text is refused, or cut to fit with `truncate_texts`).
        """
        texts = as_list(texts, "texts")
        question_template = self.question_template if question_template is None else question_template
        answer_template = self.answer_template if answer_template is None else answer_template
        image_token = self.processor.image_token
        check_question_template(question_template, image_token)
        check_answer_template(answer_template, image_token)
        for index, text in enumerate(texts):
            check_text(text, f"texts[{index}]", image_token)
        texts = fit_texts(self.processor, texts, "texts", question_template, answer_template, truncate_texts)
        return texts, question_template, answer_template

    def run_plan(
        self,
        plan: ScoringPlan,
        on_image_error: ImageErrorHandler | None = None,
        progress: bool = False,
        description: str = "VQAScore",
    ) -> Iterator[PlanBatch]:
        """
        The plan's batches with their images' features: the images are read and encoded a chunk at a time (on an
        accelerator the next chunk is read while this one is scored), then the chunk's rows go out longest prompt
        first. The model is in eval mode meanwhile (dropout would make outputs random) and is left as it was found.
        `on_image_error`: as in `iter_scores`.
        """
        was_training = self.model.training
        self.model.eval()
        bar = tqdm(total=len(plan.rows), disable=not progress, unit="pair", desc=description)
        try:
            chunks = plan.chunks()
            with ImageReader(self.processor.image_processor) as reader:
                pending_chunks = reader.read_chunks(plan.images, chunks, read_ahead=self.device.type != "cpu")
                for chunk, pending in zip(chunks, pending_chunks):
                    features, readable = self._encode_images(plan, pending, chunk, on_image_error, bar)
                    position = {image_id: slot for slot, image_id in enumerate(readable)}
                    for rows in plan.batches(readable):
                        yield PlanBatch(features, [position[row.image] for row in rows], rows)
                        bar.update(len(rows))
        finally:
            bar.close()
            self.model.train(was_training)

    def score_batch(self, batch: PlanBatch, fused: bool = False) -> torch.Tensor:
        """
        The scores of `batch.rows` (on the LM head's device), row i showing `batch.features[batch.image_slots[i]]`:
        exp(-mean cross-entropy) of each row's answer tokens. Differentiable; `fused` runs the T5 through
        `t5_inference`, which is used only where no gradient is recorded.
        """
        rows, device, config = batch.rows, self.device, self.model.config
        input_ids, attention_mask = pad_right(
            [row.prompt_ids for row in rows], self.processor.tokenizer.pad_token_id, device
        )
        labels, label_mask = pad_right([row.target_ids for row in rows], -100, device)
        label_mask = label_mask.bool()
        decoder_input_ids = shift_tokens_right(labels, config.pad_token_id, config.decoder_start_token_id)
        image_embeds = batch.features[torch.tensor(batch.image_slots, device=batch.features.device)]
        last_hidden_state = self.forward.decoder_states(
            input_ids, attention_mask, decoder_input_ids, label_mask, image_embeds, fused
        )
        # Logits only where a label is: the vocabulary projection of padded positions would be thrown away. (Masks are
        # moved along because with a device_map the decoder output and the head may sit on another device.)
        hidden = last_hidden_state[label_mask.to(last_hidden_state.device)]
        if config.text_config.scale_decoder_outputs:
            hidden = hidden * (config.text_config.d_model**-0.5)
        logits = self.model.lm_head(hidden.to(execution_device(self.model.lm_head, self.model)))
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))  # fp32 at least; fp64 stays fp64
        label_mask = label_mask.to(logits.device)
        token_loss = nn.functional.cross_entropy(logits, labels.to(logits.device)[label_mask], reduction="none")
        row_of_token = torch.arange(len(rows), device=logits.device).unsqueeze(1).expand_as(label_mask)[label_mask]
        loss_sum = token_loss.new_zeros(len(rows)).index_add_(0, row_of_token, token_loss)
        return torch.exp(-loss_sum / label_mask.sum(dim=1))

    @torch.inference_mode()
    def _encode_images(
        self,
        plan: ScoringPlan,
        pending: list[Future],
        image_ids: list[int],
        on_image_error: ImageErrorHandler | None,
        bar,
    ) -> tuple[torch.Tensor | None, list[int]]:
        """Projected features of the readable images (`pending`: their pixel values, read in `image_ids`' order) and
        the ids of those images."""
        pixels, readable = [], []
        for future, image_id in zip(pending, image_ids):
            try:
                pixels.append(future.result())
                readable.append(image_id)
            except (OSError, ValueError, TypeError) as error:
                rows = plan.rows_by_image[image_id]
                if on_image_error is None:
                    # Same exception type, with the offending row named.
                    raise type(error)(f"images[{rows[0].index}]: {error}") from error
                for row in rows:
                    on_image_error(row.index, error)
                bar.update(len(rows))
        if not pixels:
            return None, []
        features = []
        for start in range(0, len(pixels), plan.batch_size):
            pixel_values = torch.cat(pixels[start : start + plan.batch_size])
            features.append(self.forward.image_features(pixel_values.to(self.device)))
        return torch.cat(features), readable

    def rank(
        self,
        images: Sequence[ImageInput] | torch.Tensor,
        text: str,
        batch_size: int | None = None,
        question_template: str | None = None,
        answer_template: str | None = None,
        progress: bool = False,
    ) -> Ranking:
        """
        Best-of-N: score every image with `text`, exactly as `__call__` does (8-bit PIL path, no gradients), and order
        them. `images` are paths, PIL images, arrays, or a `(N, 3, H, W)` float tensor in [0, 1].

        Returns:
            `Ranking(order, scores)`: `order` the image indices best first (ties keep input order), `scores[i]` the
            score of `images[i]`.
        """
        if not isinstance(text, str):
            raise TypeError(f"rank scores images against one text (a string), got {type(text).__name__}.")
        if isinstance(images, torch.Tensor):
            images = list(images.unbind(0)) if images.dim() == 4 else [images]
        images = list(images)
        scores = self(images, [text] * len(images), batch_size, question_template, answer_template, progress)
        return Ranking(order=torch.sort(scores, descending=True, stable=True).indices, scores=scores)

    def score_pixels(
        self,
        pixels: PixelInput,
        texts: Sequence[str],
        question_template: str | None = None,
        answer_template: str | None = None,
        autocast_dtype: torch.dtype | str | None = None,
        quantize: bool = False,
        truncate_texts: bool = False,
    ) -> torch.Tensor:
        """
        Score `pixels[i]` with `texts[i]`, keeping the autograd graph back to `pixels`: a reward for guiding or
        fine-tuning an image generator. Call [`prepare_for_reward`] first (frozen weights, optional checkpointing).

        Args:
            pixels: a float `(N, 3, H, W)` tensor in [0, 1], or a list of `(3, H, W)` tensors of any sizes, on any
                device; preprocessed by [`preprocess_pixels`] (the image processor's steps in torch).
            texts: one text per image (a single string is one text).
            question_template, answer_template, truncate_texts: as in `__call__` (default: the scorer's templates;
                texts over the tokenizer's limit are refused unless `truncate_texts`).
            autocast_dtype: run the model under `torch.autocast` in this dtype (e.g. `torch.bfloat16` or
                `"bfloat16"`).
            quantize: round to 8-bit levels where the PIL path does, with straight-through gradients.

        Returns:
            `(N,)` scores on the model's device, with the autograd graph. An image already at the tower's size (square,
            or padded to it) scores as `__call__` scores the same 8-bit image. The model runs in eval mode; with
            gradient checkpointing, call `backward` before putting it back in training mode (the backward pass re-runs
            the checkpointed layers).
        """
        texts = as_list(texts, "texts")
        images = check_pixels(pixels, len(texts))
        plan = self.plan(images, texts, None, question_template, answer_template, truncate_texts)
        if not plan.rows:
            return torch.zeros(0, device=self.device)
        model = self.model
        if torch.is_grad_enabled() and any(param.requires_grad for param in model.parameters()):
            warnings.warn(
                "The scorer's weights require gradients: backward will also compute a gradient for every weight. Call "
                "scorer.prepare_for_reward() to freeze them when only the pixels' gradient is wanted.",
                stacklevel=2,
            )
        # A batch tensor is preprocessed in one go (its rows are distinct views); a list one image at a time.
        pixel_values = preprocess_pixels(
            pixels if isinstance(pixels, torch.Tensor) else plan.images, self.processor, quantize, self.device
        )
        if isinstance(autocast_dtype, str):
            autocast_dtype = resolve_dtype(autocast_dtype, self.device)
        autocast = (
            torch.autocast(self.device.type, dtype=autocast_dtype) if autocast_dtype is not None else nullcontext()
        )
        was_training = model.training
        model.eval()
        try:
            with autocast, checkpoint_in_eval_mode(model):
                features = model.get_image_features(pixel_values, return_dict=True).pooler_output
                return self.score_batch(PlanBatch(features, plan.image_slots, plan.rows))
        finally:
            model.train(was_training)

    def prepare_for_reward(self, gradient_checkpointing: bool | str = False) -> "VQAScore":
        """
        Make this scorer a reward model: eval mode and frozen weights (`requires_grad=False`: backward then computes
        the pixels' gradient only), and activation checkpointing of the vision tower and T5 (`True`), of one of them
        (`"vision"`, `"text"`) or of none (`False`), which trades a second forward pass of each layer for not holding
        its activations until backward. Returns the scorer.
        """
        if gradient_checkpointing not in (True, False, "vision", "text"):
            raise ValueError(
                f"gradient_checkpointing must be True, False, 'vision' or 'text', got {gradient_checkpointing!r}."
            )
        model = self.model
        model.eval().requires_grad_(False)
        parts = {"vision": model.model.vision_tower, "text": model.model.language_model}
        for name, part in parts.items():
            if gradient_checkpointing is True or gradient_checkpointing == name:
                part.activation_checkpointing_enable()
            else:
                part.activation_checkpointing_disable()
        return self

    @torch.inference_mode()
    def generate(
        self,
        images: Sequence[ImageInput],
        prompts: Sequence[str],
        batch_size: int | None = None,
        progress: bool = False,
        truncate_prompts: bool = False,
        **generation_kwargs,
    ) -> list[str] | list[list[str]]:
        """
        Answer `prompts[i]` about `images[i]` (VQA, captioning) in the stage-2 chat format, through the same plan as
        scoring (each distinct image encoded once, rows sorted by prompt length).

        Args:
            images: one image per prompt.
            prompts: questions or instructions, without `<image>` (the chat prompt places the image).
            batch_size: rows per `generate` call (default: the scorer's).
            truncate_prompts: cut a prompt whose chat prompt exceeds the tokenizer's `model_max_length` (512 for
                FlanT5) to fit, instead of raising a ValueError with its token count (the default).
            generation_kwargs: passed to `model.generate` (`max_new_tokens`, defaulting to 128 unless `max_length` or
                a `generation_config` that sets either is given, `num_beams`, `do_sample`, `temperature`, ...).

        Returns:
            The decoded answers, special tokens removed and whitespace stripped: one string per prompt, or with
            `num_return_sequences=n > 1` a list of `n` strings per prompt (best first for beam search).
        """
        batch_size = self.batch_size if batch_size is None else batch_size
        check_batch_size(batch_size)
        images, prompts = as_list(images, "images"), as_list(prompts, "prompts")
        if len(images) != len(prompts):
            raise ValueError(f"Got {len(images)} images and {len(prompts)} prompts; pass one prompt per image.")
        for index, prompt in enumerate(prompts):
            check_text(prompt, f"prompts[{index}]", self.processor.image_token)
        prompts = fit_texts(self.processor, prompts, "prompts", "{}", None, truncate_prompts)
        default_max_new_tokens(generation_kwargs)
        plan = ScoringPlan.build(self.processor, images, prompts, "{}", None, batch_size)
        answers: list[str | list[str]] = [""] * len(plan.rows)
        for batch in self.run_plan(plan, progress=progress, description="generate"):
            for row, answer in zip(
                batch.rows, generate_batch(self.model, self.processor, batch, self.device, generation_kwargs)
            ):
                answers[row.index] = answer
        return answers


__all__ = [
    "DEFAULT_ANSWER_TEMPLATE",
    "DEFAULT_QUESTION_TEMPLATE",
    "PlanBatch",
    "Ranking",
    "ScoringPlan",
    "VQAScore",
    "check_question_template",
    "check_text",
]
