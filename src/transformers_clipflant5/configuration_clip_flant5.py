# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""CLIP-FlanT5 model configuration.

CLIP-FlanT5 (Lin et al., "Evaluating Text-to-Visual Generation with Image-to-Text Generation", ECCV 2024) is an
encoder-decoder vision-language model: a CLIP vision tower, a two-layer MLP projector and a FlanT5
encoder-decoder. The projected patch features replace `image_seq_length` placeholder tokens in the T5 encoder input.

This file imports only `transformers` so that a Hub folder can carry it as remote code.
"""

import json
import os
from typing import Any, Literal

from huggingface_hub.dataclasses import strict
from transformers import CLIPVisionConfig, PreTrainedConfig, T5Config
from transformers.configuration_utils import SubConfigSpec
from transformers.utils import cached_file


# The original checkpoints name their tower by Hub id only. These are the facts of that tower, so that the
# original checkpoints convert and load without network access.
CLIP_VIT_L_14_336 = "openai/clip-vit-large-patch14-336"
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

# FlanT5 hyper-parameters that a flat original config carries and that `T5Config` understands.
_T5_KEYS = (
    "vocab_size",
    "d_model",
    "d_kv",
    "d_ff",
    "num_layers",
    "num_decoder_layers",
    "num_heads",
    "relative_attention_num_buckets",
    "relative_attention_max_distance",
    "dropout_rate",
    "layer_norm_epsilon",
    "initializer_factor",
    "feed_forward_proj",
    "pad_token_id",
    "eos_token_id",
    "decoder_start_token_id",
)

# LLaVA's names for which vision features to keep, mapped to transformers' names.
_ORIGINAL_SELECT_FEATURE = {"patch": "default", "cls_patch": "full"}


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
        image_aspect_ratio (`str`, *optional*, defaults to `"pad"`):
            `"pad"` pastes images on a square canvas of the mean colour before CLIP preprocessing (stage 2);
            `"square"` does not (stage 1).
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
    image_aspect_ratio: Literal["pad", "square"] = "pad"
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
    def from_original_config(
        cls, original: dict[str, Any], vision_config: CLIPVisionConfig | dict | None = None, **kwargs
    ) -> "CLIPFlanT5Config":
        """
        Translate the flat config.json of an original CLIP-FlanT5 checkpoint (a T5 config with LLaVA `mm_*` fields,
        `model_type` "t5" or "clip_t5") into a [`CLIPFlanT5Config`].

        `vision_config` is only needed for a tower other than `openai/clip-vit-large-patch14-336`; pass the tower's
        `CLIPVisionConfig`, or let it be read from the tower's own folder or Hub repo.
        """
        if not is_original_config(original):
            raise ValueError(
                "This config.json is not an original CLIP-FlanT5 config: it needs model_type 't5' or 'clip_t5' and an "
                "'mm_vision_tower' field."
            )
        tower = original["mm_vision_tower"]
        if vision_config is None:
            if tower == CLIP_VIT_L_14_336:
                vision_config = CLIPVisionConfig(**CLIP_VIT_L_14_336_VISION_CONFIG)
            else:
                # Any other tower: read its own config (a local folder, or a Hub id / offline cache entry).
                vision_config = CLIPVisionConfig.from_pretrained(tower)
        elif isinstance(vision_config, dict):
            vision_config = CLIPVisionConfig(**vision_config)

        projector_type = original.get("mm_projector_type", "linear")
        if projector_type != "mlp2x_gelu":
            raise ValueError(
                f"mm_projector_type {projector_type!r} is not supported: CLIP-FlanT5 checkpoints use 'mlp2x_gelu'."
            )
        mm_hidden_size = original.get("mm_hidden_size", vision_config.hidden_size)
        if mm_hidden_size != vision_config.hidden_size:
            raise ValueError(
                f"mm_hidden_size {mm_hidden_size} differs from the vision tower's hidden_size {vision_config.hidden_size}."
            )
        if original.get("mm_use_im_start_end") or original.get("mm_use_im_patch_token"):
            raise ValueError("Checkpoints with mm_use_im_start_end or mm_use_im_patch_token are not supported.")
        select_feature = original.get("mm_vision_select_feature", "patch")
        if select_feature not in _ORIGINAL_SELECT_FEATURE:
            raise ValueError(
                f"mm_vision_select_feature {select_feature!r} is not one of {list(_ORIGINAL_SELECT_FEATURE)}."
            )

        text_kwargs = {key: original[key] for key in _T5_KEYS if key in original}
        # Original T5 (v1.0) configs omit tie_word_embeddings and tie + rescale; FlanT5 says false.
        tied = original.get("tie_word_embeddings", True)
        text_kwargs["tie_word_embeddings"] = tied
        text_config = T5Config(**text_kwargs)
        aspect = original.get("image_aspect_ratio") or "square"
        return cls(
            vision_config=vision_config,
            text_config=text_config,
            vision_feature_layer=original.get("mm_vision_select_layer", -2),
            vision_feature_select_strategy=_ORIGINAL_SELECT_FEATURE[select_feature],
            image_aspect_ratio="pad" if aspect == "pad" else "square",
            tie_word_embeddings=tied,
            **kwargs,
        )


def is_original_config(config_dict: dict[str, Any]) -> bool:
    """Whether a config.json dict is in the original (LLaVA-fork) layout rather than ours."""
    return config_dict.get("model_type") in ("t5", "clip_t5") and "mm_vision_tower" in config_dict


HUB_KWARGS = ("cache_dir", "force_download", "proxies", "token", "revision", "local_files_only", "subfolder")


def read_original_config(name_or_path: str | os.PathLike, **kwargs) -> dict[str, Any] | None:
    """The config.json dict if `name_or_path` (folder or Hub id) holds an original-layout checkpoint, else None."""
    hub = {key: kwargs[key] for key in HUB_KWARGS if kwargs.get(key) is not None}
    try:
        config_file = cached_file(str(name_or_path), "config.json", _raise_exceptions_for_missing_entries=False, **hub)
    except OSError:
        return None
    if config_file is None:
        return None
    with open(config_file, encoding="utf-8") as handle:
        config_dict = json.load(handle)
    return config_dict if is_original_config(config_dict) else None


__all__ = [
    "CLIPFlanT5Config",
    "is_original_config",
    "read_original_config",
    "CLIP_VIT_L_14_336",
    "CLIP_VIT_L_14_336_VISION_CONFIG",
]
