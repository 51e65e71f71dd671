# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""The forward passes a [`VQAScore`] runs: image features, and the decoder's states for teacher-forced answers,
through transformers' model or the fused T5 of `t5_inference` (where it applies, must apply, or not at all), compiled
on first use when asked."""

from collections.abc import Callable

import torch
from torch import nn

from . import t5_inference


class ScoringForward:
    """The image-feature and T5 functions a VQAScore calls: this module's fused T5 where it applies (`fused=None`),
    must apply (`True`) or not at all (`False`); compiled on first use (dynamic shapes) when `compile` is True or
    a dict of `torch.compile` options."""

    def __init__(self, model: nn.Module, fused: bool | None = None, compile: bool | dict = False):
        self.model, self.fused, self.compile = model, fused, compile
        self._compiled: dict[str, Callable] = {}
        self.use_fused(assume_eval_mode=True)  # fused=True that cannot be met fails at construction

    def use_fused(self, assume_eval_mode: bool = False) -> bool:
        """Whether the T5 runs through `encode`/`decode`; raises if `fused=True` cannot be met."""
        if self.fused is False:
            return False
        reason = t5_inference.fused_t5_unsupported_reason(self.model, assume_eval_mode)
        if reason is not None and self.fused:
            raise ValueError(f"fused=True, but the fused T5 path does not apply: {reason}; pass fused=None or False.")
        return reason is None

    def image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self._function("image_features")(pixel_values)

    def decoder_states(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        decoder_input_ids: torch.Tensor,
        decoder_attention_mask: torch.Tensor,
        image_embeds: torch.Tensor,
        fused: bool,
    ) -> torch.Tensor:
        """The decoder's last hidden states for teacher-forced `decoder_input_ids` (no cache). `encode`/`decode` work
        in place, without autograd: where gradients are recorded, transformers' forward runs."""
        if not fused or torch.is_grad_enabled():
            return self._function("model")(
                input_ids=input_ids,
                attention_mask=attention_mask,
                decoder_input_ids=decoder_input_ids,
                decoder_attention_mask=decoder_attention_mask,
                image_embeds=image_embeds,
                use_cache=False,
            ).last_hidden_state
        language_model = self.model.model.language_model
        inputs_embeds, _ = self.model.model.embed_inputs(input_ids=input_ids, image_embeds=image_embeds)
        # Compiled, the per-length runs (Python ints read off the mask) would recompile for every new set of lengths.
        encoded = self._function("encode")(
            language_model.encoder, inputs_embeds, attention_mask, split_by_length=not self.compile
        )
        return self._function("decode")(
            language_model.decoder, decoder_input_ids, decoder_attention_mask, encoded, attention_mask
        )

    def _projected_image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model.get_image_features(pixel_values, return_dict=True).pooler_output

    def _function(self, name: str) -> Callable:
        # Module functions looked up at call time (tests may wrap them).
        functions = {
            "image_features": self._projected_image_features,
            "model": self.model.model,
            "encode": t5_inference.encode,
            "decode": t5_inference.decode,
        }
        if not self.compile:
            return functions[name]
        if name not in self._compiled:
            options = self.compile if isinstance(self.compile, dict) else {}
            self._compiled[name] = torch.compile(functions[name], **{"dynamic": True, **options})
        return self._compiled[name]


__all__ = ["ScoringForward"]
