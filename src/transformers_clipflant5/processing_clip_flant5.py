# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""Processor for CLIP-FlanT5: CLIP image preprocessing + FlanT5 tokenization with the original model's quirks.

Text: the prompt is split at each `<image>`; every chunk is tokenized on its own, and T5's tokenizer appends `</s>`
to every chunk (an empty chunk becomes just `</s>`). Each `<image>` then stands for `image_seq_length` placeholder
tokens. The released checkpoints were trained on exactly this layout, so it is reproduced bit for bit.

Images: opened as RGB; with `image_aspect_ratio="pad"` they are first pasted, centred, on a square canvas filled
with the CLIP mean colour; then CLIP preprocessing (resize shortest edge, centre crop, rescale, normalise) with the
PIL backend, as the original code did.

This file imports only torch, transformers and its sibling files so that a Hub folder can carry it as remote code.
"""

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from transformers import AutoTokenizer, BatchFeature, ProcessorMixin
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

from .configuration_clip_flant5 import CLIP_VIT_L_14_336, HUB_KWARGS, CLIPFlanT5Config, read_original_config


DEFAULT_IMAGE_TOKEN = "<image>"
SYSTEM_MESSAGE = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
CLIP_IMAGE_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_IMAGE_STD = [0.26862954, 0.26130258, 0.27577711]

# Stage-2 ("t5_v1") prompt: "SYSTEM USER: <image>\nquestion ASSISTANT: ". A leading system message replaces the
# default one; images of a message are put first, each followed by a newline, as the original training data did.
CHAT_TEMPLATE = (
    "{%- set system = '" + SYSTEM_MESSAGE.replace("'", "\\'") + "' -%}"
    "{%- if messages and messages[0]['role'] == 'system' -%}"
    "{%- if messages[0]['content'] is string -%}{%- set system = messages[0]['content'] -%}"
    "{%- else -%}{%- set system = messages[0]['content'] | selectattr('type', 'equalto', 'text')"
    " | map(attribute='text') | join(' ') -%}{%- endif -%}"
    "{%- set messages = messages[1:] -%}"
    "{%- endif -%}"
    "{{- system + ' ' -}}"
    "{%- for message in messages -%}"
    "{%- if message['content'] is string -%}"
    "{%- set text = message['content'] -%}{%- set n_images = 0 -%}"
    "{%- else -%}"
    "{%- set text = message['content'] | selectattr('type', 'equalto', 'text') | map(attribute='text') | join(' ') -%}"
    "{%- set n_images = message['content'] | selectattr('type', 'equalto', 'image') | list | length -%}"
    "{%- endif -%}"
    "{{- ('USER' if message['role'] == 'user' else 'ASSISTANT') + ': ' + '<image>\\n' * n_images"
    " + (text | trim if n_images else text) + ' ' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- 'ASSISTANT: ' -}}{%- endif -%}"
)

ImageInput = Union[str, os.PathLike, Image.Image, np.ndarray, torch.Tensor]


def clip_vit_l_14_336_image_processor() -> CLIPImageProcessorPil:
    """The image processor of `openai/clip-vit-large-patch14-336`, known offline."""
    return CLIPImageProcessorPil(
        do_resize=True,
        size={"shortest_edge": 336},
        resample=3,  # bicubic
        do_center_crop=True,
        crop_size={"height": 336, "width": 336},
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=CLIP_IMAGE_MEAN,
        image_std=CLIP_IMAGE_STD,
        do_convert_rgb=True,
    )


def load_image(image: ImageInput, max_pixels: int | None = None) -> Image.Image:
    """
    Open a path, PIL image, HWC uint8 array or CHW/HWC tensor as an RGB PIL image; raise with the reason when it
    cannot be read. `max_pixels` bounds the decoded size (a guard against decompression bombs); None keeps PIL's.
    """
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if not path.is_file():
            raise FileNotFoundError(f"Image file not found: {path}")
        if path.stat().st_size == 0:
            raise ValueError(f"Image file is empty (0 bytes): {path}")
        try:
            with Image.open(path) as opened:
                _check_pixels(opened, max_pixels, str(path))
                opened.load()
                image = opened.copy()
        except Image.DecompressionBombError as error:
            raise ValueError(f"Image {path} is too large to decode safely: {error}") from error
        except (UnidentifiedImageError, OSError, SyntaxError) as error:
            raise ValueError(f"Image {path} is not a readable image ({type(error).__name__}: {error}).") from error
    elif isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
        if image.ndim == 3 and image.shape[0] in (1, 3, 4) and image.shape[-1] not in (1, 3, 4):
            image = image.transpose(1, 2, 0)
        image = _array_to_pil(image)
    elif isinstance(image, np.ndarray):
        image = _array_to_pil(image)
    elif not isinstance(image, Image.Image):
        raise TypeError(f"Unsupported image type {type(image).__name__}: pass a path, a PIL image or an array.")
    if image.width == 0 or image.height == 0:
        raise ValueError(f"Image has zero size ({image.width}x{image.height}).")
    _check_pixels(image, max_pixels, "image")
    # The original code opened every image with .convert("RGB"): RGBA drops alpha, L/P/CMYK/I;16 are mapped by PIL.
    return image.convert("RGB")


def _check_pixels(image: Image.Image, max_pixels: int | None, name: str) -> None:
    if max_pixels is not None and image.width * image.height > max_pixels:
        raise ValueError(
            f"{name} has {image.width}x{image.height} = {image.width * image.height} pixels, more than the limit of "
            f"{max_pixels}; refusing to decode it (a possible decompression bomb). Raise max_pixels if it is genuine."
        )


def _array_to_pil(array: np.ndarray) -> Image.Image:
    if array.size == 0:
        raise ValueError(f"Image array is empty (shape {array.shape}).")
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.dtype != np.uint8:
        if np.issubdtype(array.dtype, np.floating) and array.min() >= 0 and array.max() <= 1:
            array = array * 255
        array = np.clip(np.rint(array), 0, 255).astype(np.uint8)
    return Image.fromarray(array)


def expand_to_square(image: Image.Image, background: tuple[int, ...]) -> Image.Image:
    """Paste `image` centred on a square canvas of side max(width, height) filled with `background`."""
    width, height = image.size
    if width == height:
        return image
    side = max(width, height)
    canvas = Image.new(image.mode, (side, side), background)
    canvas.paste(image, ((side - width) // 2, (side - height) // 2))
    return canvas


class CLIPFlanT5Processor(ProcessorMixin):
    r"""
    Builds CLIP-FlanT5 inputs: `input_ids`, `attention_mask`, `pixel_values` (and `labels` from `text_target`).

    Args:
        image_processor ([`CLIPImageProcessorPil`]): CLIP preprocessing.
        tokenizer ([`T5Tokenizer`]): the FlanT5 tokenizer, with `<image>` added as a special token.
        chat_template (`str`, *optional*): defaults to the stage-2 template.
        image_token (`str`, *optional*, defaults to `"<image>"`).
        image_seq_length (`int`, *optional*, defaults to 576): placeholders per image (= the model config's).
        image_aspect_ratio (`str`, *optional*, defaults to `"pad"`): `"pad"` (stage 2) or `"square"` (stage 1).
        max_image_pixels (`int`, *optional*, defaults to 178956970): refuse larger images (PIL's bomb limit x 2).
    """

    def __init__(
        self,
        image_processor=None,
        tokenizer=None,
        chat_template: str | None = None,
        image_token: str = DEFAULT_IMAGE_TOKEN,
        image_seq_length: int = 576,
        image_aspect_ratio: str = "pad",
        max_image_pixels: int | None = 178956970,
        **kwargs,
    ):
        if image_aspect_ratio not in ("pad", "square"):
            raise ValueError(f"image_aspect_ratio must be 'pad' or 'square', got {image_aspect_ratio!r}.")
        self.image_token = image_token
        self.image_seq_length = image_seq_length
        self.image_aspect_ratio = image_aspect_ratio
        self.max_image_pixels = max_image_pixels
        if image_processor is not None and not isinstance(image_processor, CLIPImageProcessorPil):
            # The original resized with PIL; the torchvision backend's bicubic differs by a few intensity levels,
            # which moves scores. Keep the settings, use the PIL backend.
            image_processor = CLIPImageProcessorPil.from_dict(image_processor.to_dict())
        if tokenizer is not None and image_token not in tokenizer.get_vocab():
            tokenizer.add_tokens([image_token], special_tokens=True)
        self.image_token_id = tokenizer.convert_tokens_to_ids(image_token) if tokenizer is not None else None
        super().__init__(image_processor, tokenizer, chat_template=chat_template or CHAT_TEMPLATE)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        """Load our processor folder, or build one for an original checkpoint (its tokenizer + CLIP-336 settings)."""
        original = read_original_config(pretrained_model_name_or_path, **kwargs)
        if original is None:
            return super().from_pretrained(pretrained_model_name_or_path, **kwargs)
        tower = original.get("mm_vision_tower", CLIP_VIT_L_14_336)
        if tower == CLIP_VIT_L_14_336:
            image_processor = clip_vit_l_14_336_image_processor()
        else:
            # Any other tower: read its own preprocessing settings (a local folder or a Hub id).
            image_processor = CLIPImageProcessorPil.from_pretrained(tower)
        hub = {k: v for k, v in kwargs.items() if k in HUB_KWARGS}
        tokenizer = AutoTokenizer.from_pretrained(pretrained_model_name_or_path, **hub)
        aspect = "pad" if original.get("image_aspect_ratio") == "pad" else "square"
        image_token_id = tokenizer.get_vocab().get(DEFAULT_IMAGE_TOKEN, len(tokenizer))
        config = CLIPFlanT5Config.from_original_config(original, image_token_id=image_token_id)
        return cls(
            image_processor=image_processor,
            tokenizer=tokenizer,
            image_aspect_ratio=aspect,
            image_seq_length=config.image_seq_length,
        )

    # ----------------------------------------------------------------------------------------------------------------
    # Images

    def preprocess_images(self, images: Sequence[ImageInput]) -> torch.Tensor:
        """Load, pad (if `image_aspect_ratio == "pad"`) and CLIP-preprocess images into `(n, 3, H, W)` floats."""
        pil_images = [load_image(image, self.max_image_pixels) for image in images]
        if self.image_aspect_ratio == "pad":
            background = tuple(int(mean * 255) for mean in self.image_processor.image_mean)
            pil_images = [expand_to_square(image, background) for image in pil_images]
        return self.image_processor(pil_images, return_tensors="pt")["pixel_values"]

    # ----------------------------------------------------------------------------------------------------------------
    # Text

    def encode_prompt(self, prompt: str) -> list[int]:
        """Token ids of one prompt, the original way: chunks around `<image>` tokenized alone, each with `</s>`."""
        ids: list[int] = []
        chunks = prompt.split(self.image_token)
        for index, chunk in enumerate(chunks):
            if index > 0:
                ids.extend([self.image_token_id] * self.image_seq_length)
            ids.extend(self.tokenizer(chunk, add_special_tokens=True)["input_ids"])
        return ids

    def encode_target(self, target: str) -> list[int]:
        """Label ids of one answer: tokenized with its `</s>` (the original ran targets through the same splitter)."""
        if self.image_token in target:
            raise ValueError(f"A target text must not contain {self.image_token!r}: {target[:80]!r}")
        return self.tokenizer(target, add_special_tokens=True)["input_ids"]

    def __call__(
        self,
        images: ImageInput | Sequence[ImageInput] | Sequence[Sequence[ImageInput]] | None = None,
        text: str | Sequence[str] | None = None,
        text_target: str | Sequence[str] | None = None,
        padding: bool | str = "longest",
        truncation: bool = False,
        max_length: int | None = None,
        return_tensors: str | None = "pt",
        **kwargs,
    ) -> BatchFeature:
        """
        Args:
            images: one image, a list of images (in the order their `<image>` appear across `text`), or one list
                per text. Paths, PIL images, HWC uint8 arrays or tensors.
            text: one prompt or a list; each `<image>` marks where an image goes.
            text_target: answers, tokenized into `labels` (padded with -100).
            padding: `"longest"`/True (right padding) or False (requires equal lengths).
            truncation, max_length: cut prompts longer than `max_length`; an error if the cut would drop image
                placeholders (it would silently misalign image features otherwise).
        """
        if kwargs:
            raise TypeError(f"Unexpected arguments: {sorted(kwargs)}")
        if text is None:
            if images is not None:
                raise ValueError(
                    f"Images need a prompt with one {self.image_token!r} per image (e.g. from apply_chat_template)."
                )
            if text_target is None:
                raise ValueError("Pass text (prompts with <image>), images and/or text_target.")
            return BatchFeature(
                self._pad_labels([self.encode_target(t) for t in _as_list(text_target)]), return_tensors
            )
        texts = _as_list(text)
        if not all(isinstance(t, str) for t in texts):
            raise TypeError("text must be a string or a list of strings.")
        flat_images = _flatten_images(images)
        n_placeholders = [t.count(self.image_token) for t in texts]
        if sum(n_placeholders) != len(flat_images):
            raise ValueError(
                f"The prompts contain {sum(n_placeholders)} {self.image_token!r} placeholder(s) "
                f"(per prompt: {n_placeholders}) but {len(flat_images)} image(s) were given. Put exactly one "
                f"{self.image_token!r} in a prompt for each of its images."
            )
        if (
            images is not None
            and isinstance(images, (list, tuple))
            and images
            and isinstance(images[0], (list, tuple))
        ):
            per_text = [len(group) for group in images]
            if per_text != n_placeholders:
                raise ValueError(
                    f"Images per prompt {per_text} do not match {self.image_token!r} per prompt {n_placeholders}."
                )

        input_ids = [self.encode_prompt(t) for t in texts]
        if truncation and max_length is not None:
            input_ids = [self._truncate(ids, max_length, row) for row, ids in enumerate(input_ids)]
        lengths = [len(ids) for ids in input_ids]
        if not padding and len(set(lengths)) > 1:
            raise ValueError(f"Prompts have different lengths {lengths}; use padding='longest'.")
        width = max(lengths)
        pad_id = self.tokenizer.pad_token_id
        data: dict[str, Any] = {
            "input_ids": [ids + [pad_id] * (width - len(ids)) for ids in input_ids],
            "attention_mask": [[1] * len(ids) + [0] * (width - len(ids)) for ids in input_ids],
        }
        if text_target is not None:
            targets = _as_list(text_target)
            if len(targets) != len(texts):
                raise ValueError(f"{len(texts)} prompts but {len(targets)} targets.")
            data.update(self._pad_labels([self.encode_target(t) for t in targets]))
        batch = BatchFeature(data, tensor_type=return_tensors)
        if flat_images:
            batch["pixel_values"] = self.preprocess_images(flat_images)
        return batch

    def _truncate(self, ids: list[int], max_length: int, row: int) -> list[int]:
        if len(ids) <= max_length:
            return ids
        if self.image_token_id in ids[max_length:]:
            raise ValueError(
                f"Prompt {row} has {len(ids)} tokens; truncating it to max_length={max_length} would cut image "
                f"placeholder tokens (each image takes {self.image_seq_length}). Shorten the text or raise max_length."
            )
        return ids[:max_length]

    @staticmethod
    def _pad_labels(labels: list[list[int]]) -> dict[str, list[list[int]]]:
        width = max(len(ids) for ids in labels)
        return {"labels": [ids + [-100] * (width - len(ids)) for ids in labels]}

    def batch_decode(self, *args, **kwargs):
        return self.tokenizer.batch_decode(*args, **kwargs)

    def decode(self, *args, **kwargs):
        return self.tokenizer.decode(*args, **kwargs)

    @property
    def model_input_names(self) -> list[str]:
        return ["input_ids", "attention_mask", "pixel_values"]


def _as_list(value) -> list:
    return [value] if isinstance(value, str) else list(value)


def _flatten_images(images) -> list:
    if images is None:
        return []
    if isinstance(images, (str, os.PathLike, Image.Image, np.ndarray, torch.Tensor)):
        return [images]
    flat = []
    for item in images:
        if isinstance(item, (list, tuple)):
            flat.extend(item)
        else:
            flat.append(item)
    return flat


__all__ = ["CLIPFlanT5Processor", "CHAT_TEMPLATE", "SYSTEM_MESSAGE", "load_image", "expand_to_square"]
