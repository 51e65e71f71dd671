# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""CLIP-FlanT5 model configuration.

CLIP-FlanT5 (Lin et al., "Evaluating Text-to-Visual Generation with Image-to-Text Generation", ECCV 2024) is an
encoder-decoder vision-language model: a CLIP vision tower, a two-layer MLP projector and a FlanT5
encoder-decoder. The projected patch features replace `image_seq_length` placeholder tokens in the T5 encoder input.

This file imports only `transformers` so that a Hub folder can carry it as remote code.
"""

from typing import Literal

from huggingface_hub.dataclasses import strict
from transformers import CLIPVisionConfig, PreTrainedConfig, T5Config
from transformers.configuration_utils import SubConfigSpec


# The default vision tower, `openai/clip-vit-large-patch14-336`, which every released CLIP-FlanT5 uses.
CLIP_VIT_L_14_336_VISION_CONFIG = {
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "patch_size": 14,
    "image_size": 336,
    "hidden_act": "quick_gelu",
    "layer_norm_eps": 1e-5,
    "projection_dim": 768,
    "num_channels": 3,
}


def check_vision_feature_layer(layer: int, num_layers: int, name: str = "vision_feature_layer") -> None:
    """Raise unless `layer` indexes the hidden states of a vision tower of `num_layers` layers: it returns
    `num_layers + 1` of them (the embeddings first), so -(num_layers + 1) to num_layers."""
    if not -(num_layers + 1) <= layer <= num_layers:
        raise ValueError(
            f"{name}={layer} is outside the vision tower's {num_layers + 1} hidden states (its embeddings and "
            f"{num_layers} layers): use an index from {-(num_layers + 1)} to {num_layers} (-2, the second-to-last "
            "layer, for the CLIP-FlanT5 checkpoints)."
        )


@strict
class CLIPFlanT5Config(PreTrainedConfig):
    r"""
    Configuration of a [`CLIPFlanT5ForConditionalGeneration`] or [`CLIPFlanT5Model`].

    Args:
        vision_config (`CLIPVisionConfig` or `dict`, *optional*):
            The vision tower. Defaults to CLIP ViT-L/14 at 336 px.
        text_config (`T5Config` or `dict`, *optional*):
            The FlanT5 encoder-decoder. Defaults to FlanT5-XXL.
        image_token_id (`int`, *optional*, defaults to 32100):
            Token id of the image placeholder. 32100 is the first unused row of FlanT5's 32128-row embedding.
        image_seq_length (`int`, *optional*):
            Number of placeholder tokens per image; derived from the vision config (576 for CLIP-L/14 at 336 px).
        projector_hidden_act (`str`, *optional*, defaults to `"gelu"`):
            Activation between the projector's two linear layers (exact erf GELU, as in the original).
        vision_feature_layer (`int`, *optional*, defaults to -2):
            Hidden-state index of the vision tower whose features are projected.
        vision_feature_select_strategy (`str`, *optional*, defaults to `"default"`):
            `"default"` drops the CLS token, `"full"` keeps it.
        tie_word_embeddings (`bool`, *optional*, defaults to `False`):
            FlanT5 has an untied LM head; original T5 v1.0 ties it (and scales the decoder output).

    Example:

    ```python
    >>> from transformers_clipflant5 import CLIPFlanT5Config, CLIPFlanT5ForConditionalGeneration
    >>> config = CLIPFlanT5Config()  # CLIP ViT-L/14-336 + FlanT5-XXL
    >>> config.image_seq_length
    576
    ```
    """

    model_type = "clip_flant5"
    sub_configs_defaults = {
        "vision_config": SubConfigSpec(config_class=CLIPVisionConfig, init_kwargs=CLIP_VIT_L_14_336_VISION_CONFIG),
        "text_config": SubConfigSpec(
            config_class=T5Config,
            init_kwargs={
                "vocab_size": 32128,
                "d_model": 4096,
                "d_kv": 64,
                "d_ff": 10240,
                "num_layers": 24,
                "num_decoder_layers": 24,
                "num_heads": 64,
                "feed_forward_proj": "gated-gelu",
                "tie_word_embeddings": False,
                "decoder_start_token_id": 0,
            },
        ),
    }

    vision_config: dict | PreTrainedConfig | None = None
    text_config: dict | PreTrainedConfig | None = None
    image_token_id: int = 32100
    image_seq_length: int | None = None
    projector_hidden_act: str = "gelu"
    vision_feature_layer: int = -2
    vision_feature_select_strategy: Literal["default", "full"] = "default"
    tie_word_embeddings: bool = False
    is_encoder_decoder: bool = True

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        patches = (self.vision_config.image_size // self.vision_config.patch_size) ** 2
        expected = patches + (1 if self.vision_feature_select_strategy == "full" else 0)
        if self.image_seq_length is None:
            self.image_seq_length = expected
        elif self.image_seq_length != expected:
            raise ValueError(
                f"image_seq_length={self.image_seq_length} does not match the vision tower, which yields {expected} "
                f"features per image (image_size {self.vision_config.image_size}, patch_size "
                f"{self.vision_config.patch_size}, strategy {self.vision_feature_select_strategy!r}). "
                "Leave image_seq_length unset to derive it."
            )
        check_vision_feature_layer(self.vision_feature_layer, self.vision_config.num_hidden_layers)
        if not 0 <= self.image_token_id < self.text_config.vocab_size:
            raise ValueError(
                f"image_token_id={self.image_token_id} is outside the text embedding (vocab_size "
                f"{self.text_config.vocab_size}); pick an unused row of the embedding."
            )
        # Generation reads these from the top-level config.
        for name in ("pad_token_id", "eos_token_id", "decoder_start_token_id"):
            if getattr(self, name, None) is None:
                setattr(self, name, getattr(self.text_config, name))

    @property
    def hidden_size(self) -> int:
        return self.text_config.d_model

    @classmethod
    def get_config_dict(cls, pretrained_model_name_or_path, **kwargs) -> tuple[dict, dict]:
        config_dict, kwargs = super().get_config_dict(pretrained_model_name_or_path, **kwargs)
        # An empty dict (transformers' answer for a folder or repo without config.json) or another model's config
        # would otherwise fill in the defaults: a random XXL-sized model (46 GB in fp32) instead of an error.
        if not config_dict:
            raise OSError(
                f"{pretrained_model_name_or_path} has no config.json, so it is not a CLIP-FlanT5 checkpoint: pass a "
                "folder written by save_pretrained (or a Hub repo of one), or an original release such as "
                "zhiqiulin/clip-flant5-xxl."
            )
        model_type = config_dict.get("model_type")
        if model_type is not None and model_type != cls.model_type:
            raise ValueError(
                f"{pretrained_model_name_or_path}'s config.json is a {model_type!r} config, not a CLIP-FlanT5 one "
                f"(model_type {cls.model_type!r}). An original CLIP-FlanT5 release (a T5 config that also names a "
                "vision tower and projector) is read as it is by CLIPFlanT5ForConditionalGeneration.from_pretrained "
                "and VQAScore.from_pretrained, and converted to this format by `clip-flant5 convert`."
            )
        return config_dict, kwargs


__all__ = ["CLIPFlanT5Config", "CLIP_VIT_L_14_336_VISION_CONFIG"]
