# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""VQAScore (Lin et al., ECCV 2024) with CLIP-FlanT5: how likely the model answers "Yes" to "Does this figure show
"{text}"? Please answer yes or no." about an image.

The score of a pair is exp(-mean cross-entropy) over the answer's label tokens (the answer and its `</s>`), with the
question in the stage-2 chat format, exactly as the original evaluation code computed it. What differs is the cost:

- each distinct image goes through the vision tower and projector once per call, however many texts it is paired
  with (the projected features are passed to the model as `image_embeds`);
- rows are sorted by prompt length before batching, so that batches carry little padding;
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
from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from .configuration_clip_flant5 import HUB_KWARGS
from .modeling_clip_flant5 import CLIPFlanT5ForConditionalGeneration, shift_tokens_right
from .precision import build_quantization_config, check_finite_scores
from .processing_clip_flant5 import SYSTEM_MESSAGE, CLIPFlanT5Processor, ImageInput, load_image


DEFAULT_QUESTION_TEMPLATE = 'Does this figure show "{}"? Please answer yes or no.'
DEFAULT_ANSWER_TEMPLATE = "Yes"
DEFAULT_BATCH_SIZE = 16
DEFAULT_MAX_NEW_TOKENS = 128

# Called with (row index, error) for each row whose image cannot be read, when the caller prefers skipping to raising.
ImageErrorHandler = Callable[[int, Exception], None]


def chat_prompt(question: str, image_token: str = "<image>") -> str:
    """The stage-2 ("t5_v1") prompt for one question about one image, as the original evaluation built it."""
    return f"{SYSTEM_MESSAGE} USER: {image_token}\n{question} ASSISTANT: "


def check_question_template(template: str) -> None:
    """Raise if `template` cannot take a text: it needs exactly one `{}` slot and nothing else to fill."""
    if not isinstance(template, str):
        raise TypeError(f"question_template must be a string, got {type(template).__name__}.")
    if "{}" not in template:
        raise ValueError(
            f"question_template must contain '{{}}' where the text goes, got {template!r} "
            f"(the default is {DEFAULT_QUESTION_TEMPLATE!r})."
        )
    try:
        template.format("text")
    except (IndexError, KeyError, ValueError) as error:
        raise ValueError(
            f"question_template {template!r} is not a format string with one '{{}}' slot ({error!r}); write other "
            "literal braces as '{{' and '}}'."
        ) from error


def check_answer_template(template: str) -> None:
    """Raise if `template` is not a usable answer: a non-empty string, optionally with one `{}` slot for the text."""
    if not isinstance(template, str):
        raise TypeError(f"answer_template must be a string, got {type(template).__name__}.")
    try:
        answer = template.format("text")
    except (IndexError, KeyError, ValueError) as error:
        raise ValueError(
            f"answer_template {template!r} is not a format string with at most one '{{}}' slot ({error!r})."
        ) from error
    if not answer.strip():
        raise ValueError(f"answer_template is empty ({template!r}); the default is {DEFAULT_ANSWER_TEMPLATE!r}.")


def check_text(text: str, where: str = "text", image_token: str = "<image>") -> None:
    """Raise if `text` cannot be scored: not a string, empty, or carrying the image placeholder."""
    if not isinstance(text, str):
        raise TypeError(f"{where} must be a string, got {type(text).__name__}.")
    if not text.strip():
        raise ValueError(f"{where} is empty; every text needs some content to be scored.")
    if image_token in text:
        raise ValueError(
            f"{where} contains {image_token!r}, which the model reserves for image features: {text[:80]!r}"
        )


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str | torch.dtype, device: torch.device) -> torch.dtype:
    """`"auto"`: bf16 on a CUDA device that supports it, fp32 elsewhere (fp16 overflows in FlanT5's activations)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    resolved = getattr(torch, str(dtype), None)
    if not isinstance(resolved, torch.dtype) or not resolved.is_floating_point:
        raise ValueError(f"dtype must be 'auto', a floating-point torch dtype or its name, got {dtype!r}.")
    return resolved


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


class VQAScore:
    r"""
    Scores (image, text) pairs with a CLIP-FlanT5 model: P("Yes" | image, "Does this figure show "{text}"? ...").

    Args:
        model ([`CLIPFlanT5ForConditionalGeneration`]): a loaded model (put it in eval mode on its device first).
        processor ([`CLIPFlanT5Processor`]): its processor.
        question_template (`str`, *optional*): default question, with `{}` where the text goes.
        answer_template (`str`, *optional*, defaults to `"Yes"`): default answer (may contain `{}` for the text).
        batch_size (`int`, *optional*, defaults to 16): default number of pairs per forward pass.
    """

    def __init__(
        self,
        model: CLIPFlanT5ForConditionalGeneration,
        processor: CLIPFlanT5Processor,
        question_template: str = DEFAULT_QUESTION_TEMPLATE,
        answer_template: str = DEFAULT_ANSWER_TEMPLATE,
        batch_size: int = DEFAULT_BATCH_SIZE,
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
        check_question_template(question_template)
        check_answer_template(answer_template)
        _check_batch_size(batch_size)
        self.model = model
        self.processor = processor
        self.question_template = question_template
        self.answer_template = answer_template
        self.batch_size = batch_size

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
            quantization: `"int8"` (torchao int8 weights, CPU or CUDA) or `"int4"` (CUDA, bf16); the T5 linears are
                quantized as they load, straight onto `device` (see `transformers_clipflant5.precision`). Needs the
                `quant` extra. Any other transformers `quantization_config` can be passed in `kwargs` instead.
            kwargs: passed to the model's `from_pretrained` (`revision`, `cache_dir`, `device_map`, ...); the Hub
                arguments among them also reach the processor. `question_template`, `answer_template` and
                `batch_size` set the scorer's defaults.
        """
        scorer_kwargs = {
            name: kwargs.pop(name) for name in ("question_template", "answer_template", "batch_size") if name in kwargs
        }
        device = resolve_device(device)
        model_kwargs = dict(kwargs, dtype=resolve_dtype(dtype, device))
        if quantization is not None:
            if kwargs.get("quantization_config") is not None:
                raise ValueError("Pass quantization or quantization_config, not both.")
            model_kwargs["quantization_config"] = build_quantization_config(
                quantization, device, model_kwargs["dtype"]
            )
            # Quantize each weight as it loads, on the device it runs on, rather than a full-precision copy first.
            model_kwargs.setdefault("device_map", {"": str(device)})
        if attn_implementation is not None:
            model_kwargs["attn_implementation"] = attn_implementation
        model = CLIPFlanT5ForConditionalGeneration.from_pretrained(pretrained_model_name_or_path, **model_kwargs)
        if model_kwargs.get("device_map") is None:
            model.to(device)
        model.eval()
        hub_kwargs = {name: kwargs[name] for name in HUB_KWARGS if kwargs.get(name) is not None}
        processor = CLIPFlanT5Processor.from_pretrained(pretrained_model_name_or_path, **hub_kwargs)
        return cls(model=model, processor=processor, **scorer_kwargs)

    @property
    def device(self) -> torch.device:
        """Where the inputs go: the input embedding's device (its execution device when offloaded)."""
        return execution_device(self.model.get_input_embeddings(), self.model)

    # ----------------------------------------------------------------------------------------------------------------
    # Scoring

    def __call__(
        self,
        images: Sequence[ImageInput],
        texts: Sequence[str],
        batch_size: int | None = None,
        question_template: str | None = None,
        answer_template: str | None = None,
        progress: bool = False,
    ) -> torch.Tensor:
        """
        Score `images[i]` with `texts[i]` for every i.

        Args:
            images: paths, PIL images or arrays (HWC uint8 / float in [0, 1], or CHW tensors).
            texts: one text per image.
            batch_size: pairs per forward pass (default: the scorer's).
            question_template: question with `{}` for the text (default: the paper's).
            answer_template: the answer whose likelihood is the score (default `"Yes"`).
            progress: show a progress bar.

        Returns:
            `torch.Tensor` of shape `(len(images),)`, float32, on CPU.
        """
        images, texts = list(images), list(texts)
        if len(images) != len(texts):
            raise ValueError(
                f"Got {len(images)} images and {len(texts)} texts; VQAScore scores images[i] with texts[i], so both "
                "lists need the same length (use score_matrix for every combination)."
            )
        scores = torch.full((len(images),), float("nan"))
        for rows, batch_scores in self.iter_scores(
            images, texts, batch_size, question_template, answer_template, progress=progress
        ):
            scores[rows] = batch_scores
        return scores

    def score_matrix(
        self,
        images: Sequence[ImageInput],
        texts: Sequence[str],
        batch_size: int | None = None,
        question_template: str | None = None,
        answer_template: str | None = None,
        progress: bool = False,
    ) -> torch.Tensor:
        """
        Score every image with every text.

        Returns:
            `torch.Tensor` of shape `(len(images), len(texts))`, float32, on CPU: `[i, j]` scores `images[i]` with
            `texts[j]`.
        """
        images, texts = list(images), list(texts)
        pair_images = [image for image in images for _ in texts]
        pair_texts = texts * len(images)
        return self(pair_images, pair_texts, batch_size, question_template, answer_template, progress).view(
            len(images), len(texts)
        )

    def iter_scores(
        self,
        images: Sequence[ImageInput],
        texts: Sequence[str],
        batch_size: int | None = None,
        question_template: str | None = None,
        answer_template: str | None = None,
        progress: bool = False,
        on_image_error: ImageErrorHandler | None = None,
    ) -> Iterator[tuple[list[int], torch.Tensor]]:
        """
        Score `images[i]` with `texts[i]`, yielding `(row indices, scores)` batch by batch as they are computed (not in
        input order). Every argument is checked before any computation starts.

        `on_image_error(row, error)`, when given, is called for each row whose image cannot be read, and those rows
        are skipped; by default such an image raises.
        """
        batch_size = self.batch_size if batch_size is None else batch_size
        question_template = self.question_template if question_template is None else question_template
        answer_template = self.answer_template if answer_template is None else answer_template
        _check_batch_size(batch_size)
        check_question_template(question_template)
        check_answer_template(answer_template)
        images, texts = list(images), list(texts)
        if len(images) != len(texts):
            raise ValueError(f"Got {len(images)} images and {len(texts)} texts; both lists need the same length.")
        image_token = self.processor.image_token
        if image_token in question_template:
            raise ValueError(f"question_template must not contain {image_token!r}: the prompt adds the image itself.")
        for index, text in enumerate(texts):
            check_text(text, f"texts[{index}]", image_token)

        distinct_images, rows = self._plan_rows(images, texts, question_template, answer_template)
        bar = tqdm(total=len(rows), disable=not progress, unit="pair", desc="VQAScore")
        # Dropout would make scores random: score in eval mode, and leave the model as it was found.
        was_training = self.model.training
        self.model.eval()
        try:
            rows_by_image: dict[int, list[_Row]] = {}
            for row in rows:
                rows_by_image.setdefault(row.image, []).append(row)
            # Encode the distinct images a chunk at a time: all rows of an image are scored while its features are
            # held, and memory stays bounded however many images the call has.
            image_ids = list(rows_by_image)
            images_per_chunk = max(batch_size, 32)
            for start in range(0, len(image_ids), images_per_chunk):
                chunk = image_ids[start : start + images_per_chunk]
                features, readable = self._encode_images(
                    [distinct_images[i] for i in chunk], batch_size, chunk, rows_by_image, on_image_error, bar
                )
                position = {image_id: slot for slot, image_id in enumerate(readable)}
                chunk_rows = [row for image_id in readable for row in rows_by_image[image_id]]
                # Longest prompts first: padding stays small, and an out-of-memory error shows up at once.
                chunk_rows.sort(key=lambda row: (len(row.prompt_ids), len(row.target_ids)), reverse=True)
                for batch_start in range(0, len(chunk_rows), batch_size):
                    batch = chunk_rows[batch_start : batch_start + batch_size]
                    scores = self._score_batch(features, [position[row.image] for row in batch], batch)
                    bar.update(len(batch))
                    yield [row.index for row in batch], scores
        finally:
            bar.close()
            self.model.train(was_training)

    def _plan_rows(
        self, images: list[ImageInput], texts: list[str], question_template: str, answer_template: str
    ) -> tuple[list[ImageInput], list[_Row]]:
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
                prompt = chat_prompt(question_template.format(text), self.processor.image_token)
                encoded_prompts[text] = self.processor.encode_prompt(prompt)
                encoded_targets[text] = self.processor.encode_target(answer_template.format(text))
            rows.append(_Row(index, image_slots[key], encoded_prompts[text], encoded_targets[text]))
        return distinct_images, rows

    @torch.inference_mode()
    def _encode_images(
        self,
        images: list[ImageInput],
        batch_size: int,
        image_ids: list[int],
        rows_by_image: dict[int, list[_Row]],
        on_image_error: ImageErrorHandler | None,
        bar,
    ) -> tuple[torch.Tensor | None, list[int]]:
        """Projected features of the readable images, and the ids of those images (in order)."""
        loaded, readable = [], []
        for image, image_id in zip(images, image_ids):
            try:
                loaded.append(load_image(image, self.processor.max_image_pixels))
                readable.append(image_id)
            except (OSError, ValueError, TypeError) as error:
                first_row = rows_by_image[image_id][0].index
                if on_image_error is None:
                    # Same exception type, with the offending row named.
                    raise type(error)(f"images[{first_row}]: {error}") from error
                for row in rows_by_image[image_id]:
                    on_image_error(row.index, error)
                bar.update(len(rows_by_image[image_id]))
        if not loaded:
            return None, []
        features = []
        for start in range(0, len(loaded), batch_size):
            pixel_values = self.processor.preprocess_images(loaded[start : start + batch_size])
            features.append(self.model.get_image_features(pixel_values.to(self.device)))
        return torch.cat(features), readable

    @torch.inference_mode()
    def _score_batch(self, features: torch.Tensor, image_slots: list[int], rows: list[_Row]) -> torch.Tensor:
        device = self.device
        pad_id = self.processor.tokenizer.pad_token_id
        prompt_width = max(len(row.prompt_ids) for row in rows)
        target_width = max(len(row.target_ids) for row in rows)
        input_ids = torch.tensor(
            [row.prompt_ids + [pad_id] * (prompt_width - len(row.prompt_ids)) for row in rows], device=device
        )
        attention_mask = torch.tensor(
            [[1] * len(row.prompt_ids) + [0] * (prompt_width - len(row.prompt_ids)) for row in rows], device=device
        )
        labels = torch.tensor(
            [row.target_ids + [-100] * (target_width - len(row.target_ids)) for row in rows], device=device
        )
        config = self.model.config
        decoder_input_ids = shift_tokens_right(labels, config.pad_token_id, config.decoder_start_token_id)
        label_mask = labels.ne(-100)
        outputs = self.model.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            decoder_input_ids=decoder_input_ids,
            decoder_attention_mask=label_mask,
            image_embeds=features[torch.tensor(image_slots, device=features.device)],
            use_cache=False,
        )
        # Logits only where a label is: the vocabulary projection of padded positions would be thrown away. (Masks are
        # moved along because with a device_map the decoder output and the head may sit on another device.)
        last_hidden_state = outputs.last_hidden_state
        hidden = last_hidden_state[label_mask.to(last_hidden_state.device)]
        if config.text_config.scale_decoder_outputs:
            hidden = hidden * (config.text_config.d_model**-0.5)
        logits = self.model.lm_head(hidden.to(execution_device(self.model.lm_head, self.model))).float()
        label_mask = label_mask.to(logits.device)
        token_loss = nn.functional.cross_entropy(logits, labels.to(logits.device)[label_mask], reduction="none")
        row_of_token = torch.arange(len(rows), device=logits.device).unsqueeze(1).expand_as(label_mask)[label_mask]
        loss_sum = torch.zeros(len(rows), device=logits.device).index_add_(0, row_of_token, token_loss)
        scores = torch.exp(-loss_sum / label_mask.sum(dim=1)).cpu()
        check_finite_scores(scores, self.model)
        return scores

    # ----------------------------------------------------------------------------------------------------------------
    # Generation

    @torch.inference_mode()
    def generate(
        self,
        images: Sequence[ImageInput],
        prompts: Sequence[str],
        batch_size: int | None = None,
        progress: bool = False,
        **generation_kwargs,
    ) -> list[str]:
        """
        Answer `prompts[i]` about `images[i]` (VQA, captioning) in the stage-2 chat format.

        Args:
            images: one image per prompt.
            prompts: questions or instructions, without `<image>` (the chat prompt places the image).
            batch_size: rows per `generate` call (default: the scorer's).
            generation_kwargs: passed to `model.generate` (`max_new_tokens`, defaulting to 128, `num_beams`,
                `do_sample`, `temperature`, ...).

        Returns:
            The decoded answers, special tokens removed and whitespace stripped.
        """
        batch_size = self.batch_size if batch_size is None else batch_size
        _check_batch_size(batch_size)
        images, prompts = list(images), list(prompts)
        if len(images) != len(prompts):
            raise ValueError(f"Got {len(images)} images and {len(prompts)} prompts; pass one prompt per image.")
        for index, prompt in enumerate(prompts):
            check_text(prompt, f"prompts[{index}]", self.processor.image_token)
        if "max_new_tokens" not in generation_kwargs and "max_length" not in generation_kwargs:
            generation_kwargs["max_new_tokens"] = DEFAULT_MAX_NEW_TOKENS

        image_slots: dict[tuple[str, object], int] = {}
        distinct_images: list[ImageInput] = []
        rows = []
        for index, (image, prompt) in enumerate(zip(images, prompts)):
            key = _image_key(image)
            if key not in image_slots:
                image_slots[key] = len(distinct_images)
                distinct_images.append(image)
            prompt_ids = self.processor.encode_prompt(chat_prompt(prompt, self.processor.image_token))
            rows.append(_Row(index, image_slots[key], prompt_ids, []))
        rows_by_image: dict[int, list[_Row]] = {}
        for row in rows:
            rows_by_image.setdefault(row.image, []).append(row)

        answers: list[str] = [""] * len(rows)
        pad_id = self.processor.tokenizer.pad_token_id
        was_training = self.model.training
        self.model.eval()
        try:
            with tqdm(total=len(rows), disable=not progress, unit="prompt", desc="generate") as bar:
                image_ids = list(rows_by_image)
                images_per_chunk = max(batch_size, 32)
                for start in range(0, len(image_ids), images_per_chunk):
                    chunk = image_ids[start : start + images_per_chunk]
                    features, readable = self._encode_images(
                        [distinct_images[i] for i in chunk], batch_size, chunk, rows_by_image, None, bar
                    )
                    position = {image_id: slot for slot, image_id in enumerate(readable)}
                    chunk_rows = sorted(
                        (row for image_id in readable for row in rows_by_image[image_id]),
                        key=lambda row: len(row.prompt_ids),
                        reverse=True,
                    )
                    for batch_start in range(0, len(chunk_rows), batch_size):
                        batch = chunk_rows[batch_start : batch_start + batch_size]
                        width = max(len(row.prompt_ids) for row in batch)
                        input_ids = torch.tensor(
                            [row.prompt_ids + [pad_id] * (width - len(row.prompt_ids)) for row in batch],
                            device=self.device,
                        )
                        attention_mask = torch.tensor(
                            [[1] * len(row.prompt_ids) + [0] * (width - len(row.prompt_ids)) for row in batch],
                            device=self.device,
                        )
                        slots = torch.tensor([position[row.image] for row in batch], device=features.device)
                        output_ids = self.model.generate(
                            input_ids=input_ids,
                            attention_mask=attention_mask,
                            image_embeds=features[slots],
                            **generation_kwargs,
                        )
                        for row, text in zip(batch, self.processor.batch_decode(output_ids, skip_special_tokens=True)):
                            answers[row.index] = text.strip()
                        bar.update(len(batch))
        finally:
            self.model.train(was_training)
        return answers


def execution_device(module: nn.Module, model: nn.Module) -> torch.device:
    """The device `module` computes on. With a `device_map` that offloads it to CPU RAM or disk its weights sit on the
    meta device between calls and accelerate's hook moves them in, to the hook's execution device (the main device)."""
    weight = next(module.parameters())
    if weight.device.type != "meta":
        return weight.device
    hook = getattr(module, "_hf_hook", None)
    for candidate in getattr(hook, "hooks", [hook]):
        if getattr(candidate, "execution_device", None) is not None:
            return torch.device(candidate.execution_device)
    devices = [device for device in getattr(model, "hf_device_map", {}).values() if device not in ("cpu", "disk")]
    return torch.device(devices[0] if devices else "cpu")


def _check_batch_size(batch_size: int) -> None:
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")


__all__ = [
    "DEFAULT_ANSWER_TEMPLATE",
    "DEFAULT_QUESTION_TEMPLATE",
    "VQAScore",
    "chat_prompt",
    "check_question_template",
    "check_text",
]
