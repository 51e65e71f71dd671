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
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from ..hub.arguments import hub_kwargs
from ..image_processing_clip_flant5 import ImageInput
from ..modeling_clip_flant5 import CLIPFlanT5ForConditionalGeneration, shift_tokens_right
from ..padding import pad_right
from ..processing_clip_flant5 import CLIPFlanT5Processor
from . import generation
from . import pixels as pixel_scoring
from .image_reading import ImageReader
from .inputs import as_list, fit_texts
from .precision import build_quantization_config, check_finite_scores, quantize_int4_wo
from .prompts import (
    DEFAULT_ANSWER_TEMPLATE,
    DEFAULT_QUESTION_TEMPLATE,
    check_answer_template,
    check_question_template,
    check_text,
)
from .settings import check_batch_size, execution_device, resolve_device, resolve_dtype
from .t5_inference import ScoringForward


DEFAULT_BATCH_SIZE = 16


# Called with (row index, error) for each row whose image cannot be read, when the caller prefers skipping to raising.
ImageErrorHandler = Callable[[int, Exception], None]


def _image_key(image: ImageInput) -> tuple[str, object]:
    # Paths are compared by absolute name; in-memory images by identity (the caller holds them for the whole call).
    if isinstance(image, (str, os.PathLike)):
        return ("path", os.path.abspath(os.fspath(image)))
    return ("object", id(image))


@dataclass
class _Row:
    index: int
    image: int  # position in the distinct-image list
    prompt_ids: list[int]
    target_ids: list[int]


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

    # Differentiable scoring (a reward for image generators) and best-of-N ranking: see pixel_scoring.
    score_pixels = pixel_scoring.score_pixels
    prepare_for_reward = pixel_scoring.prepare_for_reward
    rank = pixel_scoring.rank
    # VQA and captioning through the same plan of distinct images and length-sorted batches: see generation.
    generate = generation.generate

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
        batch_size = self.batch_size if batch_size is None else batch_size
        check_batch_size(batch_size)
        images, texts = as_list(images, "images"), as_list(texts, "texts")
        if len(images) != len(texts):
            raise ValueError(f"Got {len(images)} images and {len(texts)} texts; both lists need the same length.")
        question_template, answer_template = self._check_scoring_inputs(texts, question_template, answer_template)
        # Over-long texts are found (or cut) here, before any image is read or any model work.
        texts = fit_texts(self.processor, texts, "texts", question_template, answer_template, truncate_texts)

        distinct_images, rows = self._plan_rows(images, texts, question_template, answer_template)
        bar = tqdm(total=len(rows), disable=not progress, unit="pair", desc="VQAScore")
        fused = self.forward.use_fused(assume_eval_mode=True)
        for features, image_slots, batch in self._batches(distinct_images, rows, batch_size, on_image_error, bar):
            yield [row.index for row in batch], self._score_batch(features, image_slots, batch, fused)

    def _batches(
        self,
        distinct_images: list[ImageInput],
        rows: list["_Row"],
        batch_size: int,
        on_image_error: ImageErrorHandler | None,
        bar,
    ) -> Iterator[tuple[torch.Tensor, list[int], list["_Row"]]]:
        """
        `(features, image slots, rows)` batch by batch, for scoring and generation alike: the distinct images are
        encoded a chunk at a time, and each chunk's rows go out longest prompt first. `features[image_slots[i]]` is
        the image of `rows[i]`. The model is in eval mode meanwhile (dropout would make outputs random) and is left
        as it was found.
        """
        was_training = self.model.training
        self.model.eval()
        try:
            rows_by_image: dict[int, list[_Row]] = {}
            for row in rows:
                rows_by_image.setdefault(row.image, []).append(row)
            # All rows of an image are done while its features are held, and memory stays bounded however many
            # images the call has.
            image_ids, size = list(rows_by_image), max(batch_size, 32)
            chunks = [image_ids[start : start + size] for start in range(0, len(image_ids), size)]
            with ImageReader(self.processor.image_processor) as reader:
                # On an accelerator the next chunk's images are read while this chunk is scored (see image_reading).
                pending_chunks = reader.read_chunks(distinct_images, chunks, read_ahead=self.device.type != "cpu")
                for chunk, pending in zip(chunks, pending_chunks):
                    features, readable = self._encode_images(
                        pending, chunk, batch_size, rows_by_image, on_image_error, bar
                    )
                    position = {image_id: slot for slot, image_id in enumerate(readable)}
                    chunk_rows = [row for image_id in readable for row in rows_by_image[image_id]]
                    # Longest prompts first: padding stays small, and an out-of-memory error shows up at once.
                    chunk_rows.sort(key=lambda row: (len(row.prompt_ids), len(row.target_ids)), reverse=True)
                    for batch_start in range(0, len(chunk_rows), batch_size):
                        batch = chunk_rows[batch_start : batch_start + batch_size]
                        yield features, [position[row.image] for row in batch], batch
                        bar.update(len(batch))
        finally:
            bar.close()
            self.model.train(was_training)

    def _check_scoring_inputs(
        self, texts: list[str], question_template: str | None, answer_template: str | None
    ) -> tuple[str, str]:
        """The templates to use (the scorer's defaults where None), after checking them and every text."""
        question_template = self.question_template if question_template is None else question_template
        answer_template = self.answer_template if answer_template is None else answer_template
        image_token = self.processor.image_token
        check_question_template(question_template, image_token)
        check_answer_template(answer_template, image_token)
        for index, text in enumerate(texts):
            check_text(text, f"texts[{index}]", image_token)
        return question_template, answer_template

    def _plan_rows(
        self, images: list[ImageInput], texts: list[str], question_template: str, answer_template: str | None
    ) -> tuple[list[ImageInput], list[_Row]]:
        """The distinct images, and one row per pair with its encoded prompt and target (none without an answer)."""
        image_slots: dict[tuple[str, object], int] = {}
        distinct_images: list[ImageInput] = []
        encoded_prompts: dict[str, list[int]] = {}
        encoded_targets: dict[str, list[int]] = {}
        rows = []
        for index, (image, text) in enumerate(zip(images, texts)):
            key = _image_key(image)
            if key not in image_slots:
                image_slots[key] = len(distinct_images)
                distinct_images.append(image)
            if text not in encoded_prompts:
                prompt = self.processor.chat_prompt(question_template.format(text))
                encoded_prompts[text] = self.processor.encode_prompt(prompt)
                encoded_targets[text] = (
                    [] if answer_template is None else self.processor.encode_target(answer_template.format(text))
                )
            rows.append(_Row(index, image_slots[key], encoded_prompts[text], encoded_targets[text]))
        return distinct_images, rows

    @torch.inference_mode()
    def _encode_images(
        self,
        pending: list[Future],
        image_ids: list[int],
        batch_size: int,
        rows_by_image: dict[int, list[_Row]],
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
                first_row = rows_by_image[image_id][0].index
                if on_image_error is None:
                    # Same exception type, with the offending row named.
                    raise type(error)(f"images[{first_row}]: {error}") from error
                for row in rows_by_image[image_id]:
                    on_image_error(row.index, error)
                bar.update(len(rows_by_image[image_id]))
        if not pixels:
            return None, []
        features = []
        for start in range(0, len(pixels), batch_size):
            pixel_values = torch.cat(pixels[start : start + batch_size])
            features.append(self.forward.image_features(pixel_values.to(self.device)))
        return torch.cat(features), readable

    @torch.inference_mode()
    def _score_batch(
        self, features: torch.Tensor, image_slots: list[int], rows: list[_Row], fused: bool = False
    ) -> torch.Tensor:
        scores = self._score_rows(features, image_slots, rows, fused).cpu()
        check_finite_scores(scores, self.model)
        return scores

    def _score_rows(
        self, features: torch.Tensor, image_slots: list[int], rows: list[_Row], fused: bool = False
    ) -> torch.Tensor:
        """Scores of `rows` (on the LM head's device), row i showing `features[image_slots[i]]`; differentiable
        (the fused T5 path, inference-only, is used only where no gradient is recorded)."""
        device = self.device
        input_ids, attention_mask = pad_right(
            [row.prompt_ids for row in rows], self.processor.tokenizer.pad_token_id, device
        )
        labels, label_mask = pad_right([row.target_ids for row in rows], -100, device)
        label_mask = label_mask.bool()
        config = self.model.config
        decoder_input_ids = shift_tokens_right(labels, config.pad_token_id, config.decoder_start_token_id)
        image_embeds = features[torch.tensor(image_slots, device=features.device)]
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


__all__ = [
    "DEFAULT_ANSWER_TEMPLATE",
    "DEFAULT_QUESTION_TEMPLATE",
    "VQAScore",
    "check_question_template",
    "check_text",
]
