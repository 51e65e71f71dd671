# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""Processor for CLIP-FlanT5: its image processor + FlanT5 tokenization with the original model's quirk.

Text: the prompt is split at each `<image>`; every chunk is tokenized on its own, and T5's tokenizer appends `</s>`
to every chunk (an empty chunk becomes just `</s>`). Each `<image>` then stands for `image_seq_length` placeholder
tokens. The released checkpoints were trained on exactly this layout, so it is reproduced bit for bit.

Images: see `image_processing_clip_flant5.py` (pad to square with the CLIP mean colour, CLIP preprocessing, PIL).

Keyword arguments follow transformers' processor convention: flat (`padding="max_length"`), per modality
(`text_kwargs={...}`, `images_kwargs={...}`) or common (`common_kwargs={"return_tensors": "pt"}`); the defaults are
the class attributes `text_kwargs` / `images_kwargs` below.

This file imports only torch, transformers and its sibling files so that a Hub folder can carry it as remote code.
"""

from typing import Any

from transformers import BatchFeature, ProcessorMixin
from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
from transformers.processing_utils import ProcessingKwargs, Unpack

from .image_processing_clip_flant5 import CLIPFlanT5ImageProcessor, ImageInput, flatten_images


DEFAULT_IMAGE_TOKEN = "<image>"
SYSTEM_MESSAGE = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
# The CLIP normalisation, re-exported for callers that preprocess by hand (the image processor holds its own copy).
CLIP_IMAGE_MEAN = list(OPENAI_CLIP_MEAN)
CLIP_IMAGE_STD = list(OPENAI_CLIP_STD)

# Stage-2 ("t5_v1") prompt: "SYSTEM USER: <image>\nquestion ASSISTANT: ". A leading system message replaces the
# default one; images of a message are put first, each followed by a newline, as the original training data did; as
# LLaVA's conversation format did, a message with an image is stripped, and an empty message is "ROLE:" alone.
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
    "{%- set body = '<image>\\n' * n_images + (text | trim if n_images else text) -%}"
    "{%- set body = body | trim if n_images else body -%}"
    "{%- set role = 'USER' if message['role'] == 'user' else 'ASSISTANT' -%}"
    "{{- role + ': ' + body + ' ' if body else role + ':' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- 'ASSISTANT: ' -}}{%- endif -%}"
)


class CLIPFlanT5Processor(ProcessorMixin):
    r"""
    Builds CLIP-FlanT5 inputs: `input_ids`, `attention_mask`, `pixel_values` (and `labels` from `text_target`).

    Args:
        image_processor ([`CLIPFlanT5ImageProcessor`]): loads, pads and CLIP-preprocesses images.
        tokenizer ([`T5Tokenizer`]): the FlanT5 tokenizer, with `<image>` added as a special token.
        chat_template (`str`, *optional*): defaults to the stage-2 template.
        image_token (`str`, *optional*, defaults to `"<image>"`).
        image_seq_length (`int`, *optional*, defaults to 576): placeholders per image (= the model config's).
    """

    valid_processor_kwargs = ProcessingKwargs
    # Defaults of the keyword arguments (transformers' convention); a call's own arguments override them.
    text_kwargs = {"padding": "longest", "return_tensors": "pt"}
    images_kwargs = {"return_tensors": "pt"}

    def __init__(
        self,
        image_processor=None,
        tokenizer=None,
        chat_template: str | None = None,
        image_token: str = DEFAULT_IMAGE_TOKEN,
        image_seq_length: int = 576,
        **kwargs,
    ):
        # Processor folders written before the image processor existed kept its two settings here.
        image_aspect_ratio = kwargs.pop("image_aspect_ratio", None)
        max_image_pixels = kwargs.pop("max_image_pixels", None)
        if image_processor is not None and not isinstance(image_processor, CLIPFlanT5ImageProcessor):
            # A plain CLIP image processor (either backend): keep its settings, add the original's padding and PIL.
            settings = {k: v for k, v in image_processor.to_dict().items() if k != "image_processor_type"}
            image_processor = CLIPFlanT5ImageProcessor(**settings)
        if image_processor is not None and image_aspect_ratio is not None:
            if image_aspect_ratio not in ("pad", "square"):
                raise ValueError(f"image_aspect_ratio must be 'pad' or 'square', got {image_aspect_ratio!r}.")
            image_processor.do_pad = image_aspect_ratio == "pad"
        if image_processor is not None and max_image_pixels is not None:
            image_processor.max_image_pixels = max_image_pixels
        self.image_token = image_token
        self.image_seq_length = image_seq_length
        if tokenizer is not None and image_token not in tokenizer.get_vocab():
            tokenizer.add_tokens([image_token], special_tokens=True)
        self.image_token_id = tokenizer.convert_tokens_to_ids(image_token) if tokenizer is not None else None
        super().__init__(image_processor, tokenizer, chat_template=chat_template or CHAT_TEMPLATE, **kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        for loader in CLIPFlanT5Processor.checkpoint_loaders:
            processor = loader(pretrained_model_name_or_path, **kwargs)
            if processor is not None:
                return processor
        return super().from_pretrained(pretrained_model_name_or_path, **kwargs)

    # Readers of checkpoint layouts other than ours, tried in order by `from_pretrained`: each is called as
    # `loader(name_or_path, **kwargs)` and returns a processor, or None when the checkpoint is not in its layout. The
    # pip package registers the original release's reader; remote code has none.
    checkpoint_loaders: list = []

    def save_pretrained(self, save_directory, push_to_hub: bool = False, **kwargs):
        # transformers records `auto_map` on the instance while it writes the remote code; saving must not change the
        # processor (a reloaded one would then differ from it).
        had_auto_map = "auto_map" in self.__dict__
        try:
            return super().save_pretrained(save_directory, push_to_hub=push_to_hub, **kwargs)
        finally:
            if not had_auto_map:
                self.__dict__.pop("auto_map", None)

    # ----------------------------------------------------------------------------------------------------------------
    # Text

    def encode_prompt(self, prompt: str, verbose: bool = True) -> list[int]:
        """Token ids of one prompt, the original way: chunks around `<image>` tokenized alone, each with `</s>`.
        `verbose=False` leaves out the tokenizer's warning about a prompt over `model_max_length`, for callers that
        measure the length to refuse or cut such a prompt themselves."""
        return self._encode_prompt_with_offsets(prompt, with_offsets=False, verbose=verbose)[0]

    def _encode_prompt_with_offsets(
        self, prompt: str, with_offsets: bool, verbose: bool = True
    ) -> tuple[list[int], list[tuple[int, int]] | None]:
        # Character offsets (in `prompt`) of every token, for assistant masks: a chunk's offsets are shifted by where
        # the chunk starts, and the image placeholders point at their `<image>`.
        ids: list[int] = []
        offsets: list[tuple[int, int]] = []
        start = 0
        for index, chunk in enumerate(prompt.split(self.image_token)):
            if index > 0:
                ids.extend([self.image_token_id] * self.image_seq_length)
                offsets.extend([(start - len(self.image_token), start)] * self.image_seq_length)
            encoded = self.tokenizer(
                chunk, add_special_tokens=True, return_offsets_mapping=with_offsets, verbose=verbose
            )
            ids.extend(encoded["input_ids"])
            if with_offsets:
                offsets.extend((a + start, b + start) if b > a else (0, 0) for a, b in encoded["offset_mapping"])
            start += len(chunk) + len(self.image_token)
        return ids, (offsets if with_offsets else None)

    def encode_target(self, target: str) -> list[int]:
        """Label ids of one answer: tokenized with its `</s>` (the original ran targets through the same splitter)."""
        if self.image_token in target:
            raise ValueError(f"A target text must not contain {self.image_token!r}: {target[:80]!r}")
        return self.tokenizer(target, add_special_tokens=True)["input_ids"]

    def chat_prompt(self, question: str, num_images: int = 1) -> str:
        """The stage-2 prompt for one question about `num_images` images, rendered from the chat template."""
        content = [{"type": "image"}] * num_images + [{"type": "text", "text": question}]
        return self.apply_chat_template(
            [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False
        )

    # ----------------------------------------------------------------------------------------------------------------
    # Call

    def __call__(
        self,
        images: ImageInput | list[ImageInput] | list[list[ImageInput]] | None = None,
        text: str | list[str] | None = None,
        **kwargs: Unpack[ProcessingKwargs],
    ) -> BatchFeature:
        """
        Args:
            images: one image, a list of images (in the order their `<image>` appear across `text`), or one list
                per text. Paths, PIL images, arrays (HWC or CHW; uint8, uint16 or float in [0, 1]) or tensors.
            text: one prompt or a list; each `<image>` marks where an image goes.
            kwargs: text settings (`padding` "longest" by default, or "max_length" with `max_length`, or False;
                `truncation` with `max_length`: an error if the cut would drop image placeholders; `padding_side`;
                `text_target`: answers tokenized into `labels`, padded with -100), image settings (`do_pad`,
                `size`, ...) and `return_tensors` ("pt" by default; None for lists).
        """
        # apply_chat_template passes every modality; only a real video or audio input is a mistake.
        if kwargs.pop("videos", None) is not None or kwargs.pop("audio", None) is not None:
            raise ValueError("CLIP-FlanT5 takes images and text only, not videos or audio.")
        output_kwargs = self._merge_kwargs(tokenizer_init_kwargs=self.tokenizer.init_kwargs, **kwargs)
        text_kwargs, images_kwargs = output_kwargs["text_kwargs"], output_kwargs["images_kwargs"]
        return_tensors = text_kwargs.get("return_tensors")
        text_target = text_kwargs.get("text_target")
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
        flat_images = flatten_images(images)
        self._check_image_counts(images, flat_images, texts)

        with_offsets = bool(text_kwargs.get("return_offsets_mapping"))
        encoded = [self._encode_prompt_with_offsets(t, with_offsets) for t in texts]
        input_ids = [ids for ids, _ in encoded]
        max_length = text_kwargs.get("max_length")
        if text_kwargs.get("truncation") and max_length is not None:
            input_ids = [self._truncate(ids, max_length, row) for row, ids in enumerate(input_ids)]
        padding = text_kwargs.get("padding")
        if not padding and return_tensors is not None and len({len(ids) for ids in input_ids}) > 1:
            raise ValueError(
                f"Prompts have different lengths {[len(ids) for ids in input_ids]}; use padding='longest' or "
                "return_tensors=None."
            )
        data: dict[str, Any] = dict(
            self.tokenizer.pad(
                {"input_ids": input_ids},
                padding=padding or False,
                max_length=max_length,
                pad_to_multiple_of=text_kwargs.get("pad_to_multiple_of"),
                padding_side=text_kwargs.get("padding_side"),
                return_attention_mask=text_kwargs.get("return_attention_mask", True),
            )
        )
        if with_offsets:
            data["offset_mapping"] = _pad_like(
                data["input_ids"],
                [offsets[: len(ids)] for ids, (_, offsets) in zip(input_ids, encoded)],
                (0, 0),
                self.tokenizer.pad_token_id,
            )
        if text_target is not None:
            targets = _as_list(text_target)
            if len(targets) != len(texts):
                raise ValueError(f"{len(texts)} prompts but {len(targets)} targets.")
            data.update(self._pad_labels([self.encode_target(t) for t in targets]))
        if flat_images:
            data.update(self.image_processor(flat_images, **images_kwargs))
        return BatchFeature(data, tensor_type=return_tensors)

    def _check_image_counts(self, images, flat_images: list, texts: list[str]) -> None:
        n_placeholders = [t.count(self.image_token) for t in texts]
        if sum(n_placeholders) != len(flat_images):
            raise ValueError(
                f"The prompts contain {sum(n_placeholders)} {self.image_token!r} placeholder(s) (per prompt: "
                f"{n_placeholders}) but {len(flat_images)} image(s) were given. Put exactly one {self.image_token!r} "
                "in a prompt for each of its images."
            )
        groups = [isinstance(item, (list, tuple)) for item in images] if isinstance(images, (list, tuple)) else []
        if any(groups) and not all(groups):
            # A list of lists is read as one group per prompt; a mix would be flattened, and its images could land
            # in other prompts than the caller meant.
            raise ValueError(
                "images mixes single images and lists of images: pass one flat list of images (in the order of the "
                f"{self.image_token!r} across the prompts) or one list of images per prompt (an empty list for a "
                "prompt without images)."
            )
        if any(groups):
            per_text = [len(group) for group in images]
            if per_text != n_placeholders:
                raise ValueError(
                    f"Images per prompt {per_text} do not match {self.image_token!r} per prompt {n_placeholders}."
                )

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

    # ----------------------------------------------------------------------------------------------------------------
    # Output

    def post_process_image_text_to_text(
        self, generated_outputs, skip_special_tokens: bool = True, **kwargs
    ) -> list[str]:
        """Decode `generate` outputs. The decoder's output holds the answer alone (the prompt went to the encoder)."""
        return self.tokenizer.batch_decode(generated_outputs, skip_special_tokens=skip_special_tokens, **kwargs)

    @property
    def model_input_names(self) -> list[str]:
        return ["input_ids", "attention_mask", "pixel_values"]


def _pad_like(padded_ids: list[list[int]], rows: list[list], fill, pad_id: int) -> list[list]:
    """Pad each row of `rows` with `fill` where `padded_ids` has padding (on whichever side it was added)."""
    result = []
    for ids, row in zip(padded_ids, rows):
        extra = len(ids) - len(row)
        left = extra if extra and ids[0] == pad_id and ids[-1] != pad_id else 0
        result.append([fill] * left + list(row) + [fill] * (extra - left))
    return result


def _as_list(value) -> list:
    return [value] if isinstance(value, str) else list(value)


__all__ = ["CLIPFlanT5Processor", "CHAT_TEMPLATE", "SYSTEM_MESSAGE"]
