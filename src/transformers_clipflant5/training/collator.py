# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""The seq2seq collator of CLIP-FlanT5 training: rows of a LLaVA dataset -> padded batches, images opened lazily."""

import logging
import os
import random
from pathlib import Path
from typing import Any

import torch

from ..padding import pad_right
from ..processing_clip_flant5 import CLIPFlanT5Processor
from .data import IMAGE_COLUMN
from .templates import TEMPLATES, build_prompt_and_target


logger = logging.getLogger(__name__)


class CLIPFlanT5DataCollator:
    """
    Turns rows of a [`load_llava_dataset`] dataset into a seq2seq batch: `input_ids`, `attention_mask` (right padded),
    `labels` (-100 padded), `decoder_attention_mask`, and `pixel_values` for the rows with an image.

    Images are opened here, batch by batch, never all at once. Each distinct image of a batch is preprocessed and
    encoded once: `pixel_values` holds the distinct images and, when a batch repeats an image, `image_index` maps each
    image row to its entry. A batch without images still gets an empty `pixel_values` `(0, 3, H, W)`, so the model runs
    the vision tower and projector at every step (DeepSpeed ZeRO-3 ranks hang otherwise).

    Args:
        processor: the model's processor (tokenizer, chat template, image processor and its `do_pad`,
            image_seq_length).
        template: `"t5_plain"`, `"t5_plain_split_text"` or `"t5_v1"`.
        image_folder: folder the `image_file` column is relative to.
        max_length: longest prompt and target in tokens. A longer prompt or target is cut at the end; a cut that would
            drop image placeholders raises (it would misalign the image features), and so does a max_length shorter
            than the template's shortest prompt with an image. Cuts are counted (`rows_cut` of `rows_collated`) and
            logged as a warning at the 1st, 10th, 100th, ... cut row, not once per row: a cut prompt loses the end of
            its question (with t5_v1 also the "ASSISTANT:" that asks for the answer), a cut target its end of
            sequence. With dataloader workers each worker counts and warns for its own rows.
        seed: seeds the split-text cut. The cut of a row depends only on the seed and the row (not on what was
            collated before), so a run resumed from a checkpoint sees exactly the batches of an uninterrupted one;
            the price is the same cut for a row in every epoch (the paper's stage 1 is one epoch).
        deduplicate_images: encode a repeated image once (default) instead of once per row.
    """

    def __init__(
        self,
        processor: CLIPFlanT5Processor,
        template: str = "t5_v1",
        image_folder: str | os.PathLike | None = None,
        max_length: int | None = None,
        seed: int = 0,
        deduplicate_images: bool = True,
    ):
        if template not in TEMPLATES:
            raise ValueError(f"Unknown template {template!r}; choose one of {TEMPLATES}.")
        self.processor = processor
        self.template = template
        self.image_folder = Path(image_folder) if image_folder is not None else None
        self.max_length = max_length
        self.deduplicate_images = deduplicate_images
        self.seed = seed
        if max_length is not None:
            shortest = self._shortest_prompt_length()
            if max_length < shortest:
                raise ValueError(
                    f"max_length={max_length} cannot hold a {template!r} prompt: one image's "
                    f"{processor.image_seq_length} placeholders and the template's own text take {shortest} tokens "
                    "before any question. Raise --max_length (TRL's default is 1024)."
                )
        self.rows_collated = 0
        self.rows_cut = 0
        self._next_warning = 1

    def _shortest_prompt_length(self) -> int:
        """Tokens of the template's prompt for a row with an image and an empty question (its scaffolding)."""
        prompt, _ = build_prompt_and_target(
            [{"from": "human", "value": self.processor.image_token}, {"from": "gpt", "value": "x"}],
            self.template,
            True,
            random.Random(0),
            self.processor,
        )
        return len(self.processor.encode_prompt(prompt))

    def _warn_about_cuts(self, row: dict[str, Any], prompt_length: int, target_length: int) -> None:
        # Logarithmically spaced: a data set of long rows would otherwise log once per row.
        if self.rows_cut < self._next_warning:
            return
        while self._next_warning <= self.rows_cut:
            self._next_warning *= 10
        logger.warning(
            f"{self.rows_cut} of {self.rows_collated} rows collated so far were cut to max_length={self.max_length} "
            f"tokens (the latest, {row.get('id')!r}: a prompt of {prompt_length} tokens, a target of {target_length}). "
            "A cut prompt loses the end of its question (with t5_v1 also the 'ASSISTANT:' that asks for the answer); "
            "a cut target loses its end of sequence. Raise --max_length to keep them whole. Warned again at "
            f"{self._next_warning} cut rows."
        )

    def _truncate(self, ids: list[int], row: dict[str, Any], what: str) -> list[int]:
        if self.max_length is None or len(ids) <= self.max_length:
            return ids
        if what == "prompt" and self.processor.image_token_id in ids[self.max_length :]:
            raise ValueError(
                f"Sample {row.get('id')!r}: its prompt has {len(ids)} tokens and cutting it to max_length="
                f"{self.max_length} would drop image placeholders (an image takes {self.processor.image_seq_length}). "
                "Raise --max_length or shorten/remove the sample."
            )
        return ids[: self.max_length]

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if not features:
            raise ValueError("The collator got an empty batch: pass at least one row.")
        prompts, targets, image_keys = [], [], []
        for row in features:
            image_file = row.get(IMAGE_COLUMN)
            rng = None
            if self.template == "t5_plain_split_text":
                rng = random.Random(f"{self.seed}:{row.get('id')}:{row['conversations'][-1]['value']}")
            prompt, target = build_prompt_and_target(
                row["conversations"], self.template, image_file is not None, rng, self.processor
            )
            full_prompt_ids = self.processor.encode_prompt(prompt)
            prompt_ids = self._truncate(full_prompt_ids, row, "prompt")
            n_images = prompt_ids.count(self.processor.image_token_id) // self.processor.image_seq_length
            if n_images != (1 if image_file is not None else 0):
                raise ValueError(
                    f"Sample {row.get('id')!r} has {n_images} '<image>' slot(s) in its prompt but "
                    f"{'one image' if image_file is not None else 'no image'}."
                )
            target_ids = self.processor.encode_target(target)
            self.rows_collated += 1
            if self.max_length is not None and max(len(full_prompt_ids), len(target_ids)) > self.max_length:
                self.rows_cut += 1
                self._warn_about_cuts(row, len(full_prompt_ids), len(target_ids))
            prompts.append(prompt_ids)
            targets.append(self._truncate(target_ids, row, "target"))
            if image_file is not None:
                image_keys.append(image_file)

        input_ids, attention_mask = pad_right(prompts, self.processor.tokenizer.pad_token_id)
        labels, decoder_attention_mask = pad_right(targets, -100)
        batch = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "labels": labels,
            "decoder_attention_mask": decoder_attention_mask,
        }

        distinct = list(dict.fromkeys(image_keys)) if self.deduplicate_images else image_keys
        if distinct:
            if self.image_folder is None:
                raise ValueError("Rows with images need the collator's image_folder.")
            images = [self.image_folder / key for key in distinct]
            batch["pixel_values"] = self.processor.image_processor(images, return_tensors="pt")["pixel_values"]
        else:
            size = self.processor.image_processor.crop_size
            batch["pixel_values"] = torch.zeros((0, 3, size["height"], size["width"]))
        if len(distinct) < len(image_keys):
            position = {key: i for i, key in enumerate(distinct)}
            batch["image_index"] = torch.tensor([position[key] for key in image_keys], dtype=torch.long)
        return batch


__all__ = ["CLIPFlanT5DataCollator"]
