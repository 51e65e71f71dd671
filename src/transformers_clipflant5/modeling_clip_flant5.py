# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""PyTorch CLIP-FlanT5: a CLIP vision tower, an MLP projector and a FlanT5 encoder-decoder.

The projected patch features of each image replace `config.image_seq_length` placeholder tokens
(`config.image_token_id`) in the T5 encoder input; the decoder then generates or scores text. This is how the
original LLaVA-fork code behaved (it spliced the features where one `<image>` id stood and extended the attention
mask by the same amount), written as one vectorised `masked_scatter`.

This file imports only torch, transformers and its sibling configuration file so that a Hub folder can carry it as
remote code. It also reads checkpoints in the original layout (flat T5 config with `mm_*` fields, LLaVA-style keys).
"""

import json
import os
import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import AutoModel, AutoTokenizer, GenerationMixin, PreTrainedModel
from transformers.activations import ACT2FN
from transformers.cache_utils import Cache
from transformers.modeling_outputs import BaseModelOutput, Seq2SeqLMOutput, Seq2SeqModelOutput
from transformers.utils import cached_file

from .configuration_clip_flant5 import HUB_KWARGS, CLIPFlanT5Config, read_original_config


# Original key -> our key. Applied through transformers' own `key_mapping` loading mechanism. The original `.bin`
# stores the shared embedding four times (`shared`, `encoder.embed_tokens`, `decoder.embed_tokens` and a top-level
# `embed_tokens`); only `shared.weight` is loaded, the copies are set aside (see `_check_duplicate_embeddings`).
ORIGINAL_KEY_MAPPING = {
    r"^(encoder\.|decoder\.)?embed_tokens\.weight$": "original_duplicate_embedding.weight",
    # transformers 4's CLIPVisionModel nested its weights under `vision_model.`; transformers 5's does not.
    r"^vision_tower\.vision_tower\.(?:vision_model\.)?": "model.vision_tower.",
    r"^mm_projector\.0\.": "model.multi_modal_projector.linear_1.",
    r"^mm_projector\.2\.": "model.multi_modal_projector.linear_2.",
    r"^shared\.": "model.language_model.shared.",
    r"^encoder\.": "model.language_model.encoder.",
    r"^decoder\.": "model.language_model.decoder.",
}
_DUPLICATE_EMBEDDING_KEYS = ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight", "embed_tokens.weight")


@dataclass
class CLIPFlanT5Seq2SeqModelOutput(Seq2SeqModelOutput):
    """[`Seq2SeqModelOutput`] plus the projected image features used for this call (when images were given)."""

    image_hidden_states: torch.FloatTensor | None = None


@dataclass
class CLIPFlanT5Seq2SeqLMOutput(Seq2SeqLMOutput):
    """[`Seq2SeqLMOutput`] plus the projected image features used for this call (when images were given)."""

    image_hidden_states: torch.FloatTensor | None = None


class CLIPFlanT5MultiModalProjector(nn.Module):
    """Linear -> GELU -> Linear from the vision width to the T5 width (`mlp2x_gelu` in the original)."""

    def __init__(self, config: CLIPFlanT5Config):
        super().__init__()
        self.linear_1 = nn.Linear(config.vision_config.hidden_size, config.text_config.d_model)
        self.act = ACT2FN[config.projector_hidden_act]
        self.linear_2 = nn.Linear(config.text_config.d_model, config.text_config.d_model)
        # Read by `_init_weights`, which transformers calls on these linears but not on this parameterless container.
        for linear in (self.linear_1, self.linear_2):
            linear.is_clip_flant5_projector = True

    def forward(self, image_features: torch.Tensor) -> torch.Tensor:
        return self.linear_2(self.act(self.linear_1(image_features)))


class CLIPFlanT5PreTrainedModel(PreTrainedModel):
    config_class = CLIPFlanT5Config
    config: CLIPFlanT5Config
    base_model_prefix = "model"
    main_input_name = "input_ids"
    input_modalities = ("image", "text")
    supports_gradient_checkpointing = True
    _no_split_modules = ["CLIPEncoderLayer", "T5Block", "CLIPFlanT5MultiModalProjector"]
    _keys_to_ignore_on_load_unexpected = [r"^original_duplicate_embedding\."]
    _supports_sdpa = True
    _supports_flash_attn = True  # the vision tower can use it; T5's position bias needs eager/sdpa/flex
    _supports_flex_attn = True
    _supports_attention_backend = False

    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, nn.Linear) and getattr(module, "is_clip_flant5_projector", False):
            # LeCun normal, so that a fresh projector hands T5 image tokens on the scale of its text embeddings
            # (transformers' default std of 0.02 makes them ~70x smaller, and a model trained without a stage-1
            # projector then takes hundreds of steps to start looking at the image).
            std = self.config.text_config.initializer_factor * module.in_features**-0.5
            nn.init.normal_(module.weight, mean=0.0, std=std)
            nn.init.zeros_(module.bias)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        """
        Load a checkpoint in our format or in the original one (`zhiqiulin/clip-flant5-xxl`, `-xl`, or a folder laid
        out like them). Original checkpoints are recognised by their flat T5 `config.json` with `mm_*` fields; their
        config is translated and their keys renamed on the fly. `.bin` files are always read with `weights_only=True`.
        """
        if kwargs.get("config") is None and pretrained_model_name_or_path is not None:
            original = read_original_config(pretrained_model_name_or_path, **kwargs)
            if original is not None:
                kwargs["config"] = CLIPFlanT5Config.from_original_config(
                    original, image_token_id=_original_image_token_id(pretrained_model_name_or_path, original, kwargs)
                )
                key_mapping = dict(ORIGINAL_KEY_MAPPING)
                key_mapping.update(kwargs.pop("key_mapping", None) or {})
                kwargs["key_mapping"] = key_mapping
                kwargs["weights_only"] = True
                model = super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)
                _check_duplicate_embeddings(model, pretrained_model_name_or_path, kwargs)
                # save_pretrained would otherwise revert the key mapping and write original key names beside our
                # config, a folder that loads with random weights. The config is ours now, so the keys must be too.
                model._weight_conversions = []
                return model
        return super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)


def _hub_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {name: kwargs[name] for name in HUB_KWARGS if kwargs.get(name) is not None}


def _original_image_token_id(name_or_path, original: dict[str, Any], kwargs: dict[str, Any]) -> int:
    """The id `<image>` gets when added to the checkpoint's own tokenizer (32100 for FlanT5's), as the processor does."""
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(name_or_path), **_hub_kwargs(kwargs))
    except (OSError, ValueError):
        return 32100
    vocab = tokenizer.get_vocab()
    return vocab.get("<image>", len(tokenizer))


def _checkpoint_files(name_or_path: str | os.PathLike, kwargs: dict[str, Any]) -> list[str]:
    hub = _hub_kwargs(kwargs)
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        index_file = cached_file(str(name_or_path), index_name, _raise_exceptions_for_missing_entries=False, **hub)
        if index_file is not None:
            with open(index_file, encoding="utf-8") as handle:
                weight_map = json.load(handle)["weight_map"]
            return [cached_file(str(name_or_path), name, **hub) for name in sorted(set(weight_map.values()))]
    for single in ("model.safetensors", "pytorch_model.bin"):
        found = cached_file(str(name_or_path), single, _raise_exceptions_for_missing_entries=False, **hub)
        if found is not None:
            return [found]
    return []


def _check_duplicate_embeddings(model: PreTrainedModel, name_or_path, kwargs: dict[str, Any]) -> None:
    """Warn if an original checkpoint's embedding copies differ from `shared.weight` (which is the one loaded)."""
    from safetensors import safe_open

    shared = model.get_input_embeddings().weight
    for path in _checkpoint_files(name_or_path, kwargs):
        if path.endswith(".safetensors"):
            with safe_open(path, framework="pt") as handle:
                copies = {key: handle.get_tensor(key) for key in _DUPLICATE_EMBEDDING_KEYS if key in handle.keys()}
        else:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            copies = {key: state[key] for key in _DUPLICATE_EMBEDDING_KEYS if key in state}
            del state
        for key, tensor in copies.items():
            if tensor.shape != shared.shape or not torch.equal(
                tensor.to(shared.device, shared.dtype), shared.detach()
            ):
                warnings.warn(
                    f"The checkpoint's {key} differs from shared.weight; CLIP-FlanT5 uses shared.weight for the "
                    "encoder, the decoder and the input embedding, as the original model did at run time.",
                    stacklevel=3,
                )


class CLIPFlanT5Model(CLIPFlanT5PreTrainedModel):
    """Vision tower + projector + T5 encoder-decoder, without the LM head."""

    def __init__(self, config: CLIPFlanT5Config):
        super().__init__(config)
        self.vision_tower = AutoModel.from_config(config.vision_config)
        self.multi_modal_projector = CLIPFlanT5MultiModalProjector(config)
        self.language_model = AutoModel.from_config(config.text_config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_input_embeddings(value)

    def get_encoder(self, modality: str | None = None):
        if modality is None:
            return self.language_model.get_encoder()
        return super().get_encoder(modality=modality)

    def get_image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """
        Project images to T5 input embeddings.

        Args:
            pixel_values (`torch.FloatTensor` of shape `(num_images, 3, height, width)`): processed images.

        Returns:
            `torch.FloatTensor` of shape `(num_images, image_seq_length, d_model)`.
        """
        if not torch.is_floating_point(pixel_values):
            raise TypeError(
                f"pixel_values must be a floating-point tensor, got {pixel_values.dtype}: run the images through "
                "CLIPFlanT5Processor (it rescales and normalises them)."
            )
        if pixel_values.dim() != 4:
            raise ValueError(
                f"pixel_values must have shape (num_images, 3, height, width), got {tuple(pixel_values.shape)}."
            )
        input_dtype = pixel_values.dtype
        num_images = pixel_values.shape[0]
        if num_images == 0:
            # A batch without images still runs the tower and projector, on one blank image whose features are then
            # dropped: every DeepSpeed ZeRO-3 rank must gather the same parameters at every step, or ranks hang.
            pixel_values = pixel_values.new_zeros((1, *pixel_values.shape[1:]))
        pixel_values = _to_module(pixel_values, self.vision_tower)
        outputs = self.vision_tower(pixel_values, output_hidden_states=True, return_dict=True)
        selected = outputs.hidden_states[self.config.vision_feature_layer]
        if self.config.vision_feature_select_strategy == "default":
            selected = selected[:, 1:]
        # The original casts the tower output back to the input dtype before projecting.
        features = self.multi_modal_projector(_to_module(selected.to(input_dtype), self.multi_modal_projector))
        return features[:num_images]

    def get_placeholder_mask(self, input_ids: torch.LongTensor, image_features: torch.Tensor) -> torch.Tensor:
        """Boolean mask of the image placeholder positions; checks it matches the number of image features."""
        mask = input_ids == self.config.image_token_id
        n_tokens = int(mask.sum())
        n_features = image_features.shape[0] * image_features.shape[1]
        if n_tokens != n_features:
            raise ValueError(
                f"The input holds {n_tokens} image placeholder tokens (id {self.config.image_token_id}) but "
                f"{image_features.shape[0]} image(s) x {image_features.shape[1]} features = {n_features} image "
                f"features were given. Each image needs exactly image_seq_length={self.config.image_seq_length} "
                "placeholders, one '<image>' per image in the prompt: build inputs with CLIPFlanT5Processor."
            )
        return mask

    def embed_inputs(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        image_embeds: torch.Tensor | None = None,
        image_index: torch.LongTensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """
        Token embeddings with image features scattered into the placeholder positions. `image_index` (optional)
        gives, for each image slot in prompt order, the row of `pixel_values`/`image_embeds` it shows: a batch
        then encodes each distinct image once, and an empty index with one dummy image keeps the vision tower and
        projector running for a batch without images (every DeepSpeed rank must run the same modules each step).
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of input_ids or inputs_embeds.")
        if pixel_values is not None and image_embeds is not None:
            raise ValueError("Pass pixel_values or precomputed image_embeds, not both.")
        if input_ids is not None and input_ids.dtype not in (torch.int32, torch.int64):
            raise TypeError(f"input_ids must be an integer tensor, got {input_ids.dtype}.")
        if inputs_embeds is None:
            inputs_embeds = self.get_input_embeddings()(input_ids)
        image_features = image_embeds if image_embeds is not None else None
        if pixel_values is not None:
            image_features = self.get_image_features(pixel_values)
        if image_index is not None:
            if image_features is None:
                raise ValueError("image_index selects rows of pixel_values or image_embeds; pass one of them.")
            image_features = image_features[image_index.to(image_features.device)]
        if image_features is not None:
            if input_ids is None:
                raise ValueError("Images need input_ids to locate their placeholder tokens.")
            mask = self.get_placeholder_mask(input_ids, image_features)
            image_features = image_features.to(inputs_embeds.device, inputs_embeds.dtype)
            # masked_scatter keeps the projector in the graph even for a batch without placeholders (zero
            # gradients), so that every DeepSpeed rank runs and reduces the same parameters each step.
            inputs_embeds = inputs_embeds.masked_scatter(mask.unsqueeze(-1).to(inputs_embeds.device), image_features)
        elif input_ids is not None and bool((input_ids == self.config.image_token_id).any()):
            raise ValueError(
                "The input holds image placeholder tokens but no pixel_values (or image_embeds) were given."
            )
        return inputs_embeds, image_features

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.FloatTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.LongTensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        encoder_outputs: tuple | BaseModelOutput | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        decoder_inputs_embeds: torch.FloatTensor | None = None,
        image_embeds: torch.FloatTensor | None = None,
        use_cache: bool | None = None,
        image_index: torch.LongTensor | None = None,
        **kwargs,
    ) -> CLIPFlanT5Seq2SeqModelOutput:
        # Older callers (and GenerationMixin before the rename) say past_key_values.
        cache = kwargs.pop("past_key_values", cache)
        image_features = None
        if encoder_outputs is None:
            inputs_embeds, image_features = self.embed_inputs(
                input_ids, pixel_values, inputs_embeds, image_embeds, image_index
            )
            encoder_outputs = self.language_model.encoder(
                attention_mask=attention_mask, inputs_embeds=inputs_embeds, return_dict=True, **kwargs
            )
        elif not isinstance(encoder_outputs, BaseModelOutput):
            encoder_outputs = BaseModelOutput(
                last_hidden_state=encoder_outputs[0],
                hidden_states=encoder_outputs[1] if len(encoder_outputs) > 1 else None,
                attentions=encoder_outputs[2] if len(encoder_outputs) > 2 else None,
            )
        if decoder_input_ids is None and decoder_inputs_embeds is None:
            batch_size = encoder_outputs.last_hidden_state.shape[0]
            decoder_input_ids = torch.full(
                (batch_size, 1),
                self.config.text_config.decoder_start_token_id,
                dtype=torch.long,
                device=encoder_outputs.last_hidden_state.device,
            )
        decoder_outputs = self.language_model.decoder(
            input_ids=decoder_input_ids,
            attention_mask=decoder_attention_mask,
            inputs_embeds=decoder_inputs_embeds,
            encoder_hidden_states=encoder_outputs.last_hidden_state,
            encoder_attention_mask=attention_mask,
            cache=cache,
            use_cache=use_cache,
            return_dict=True,
            **kwargs,
        )
        return CLIPFlanT5Seq2SeqModelOutput(
            last_hidden_state=decoder_outputs.last_hidden_state,
            cache=decoder_outputs.cache,
            decoder_hidden_states=decoder_outputs.hidden_states,
            decoder_attentions=decoder_outputs.attentions,
            cross_attentions=decoder_outputs.cross_attentions,
            encoder_last_hidden_state=encoder_outputs.last_hidden_state,
            encoder_hidden_states=encoder_outputs.hidden_states,
            encoder_attentions=encoder_outputs.attentions,
            image_hidden_states=image_features,
        )


class CLIPFlanT5ForConditionalGeneration(CLIPFlanT5PreTrainedModel, GenerationMixin):
    """CLIP-FlanT5 with its LM head: seq2seq loss, `generate`, and VQAScore-style answer likelihoods."""

    _tied_weights_keys = {"lm_head.weight": "model.language_model.shared.weight"}

    def __init__(self, config: CLIPFlanT5Config):
        super().__init__(config)
        self.model = CLIPFlanT5Model(config)
        self.lm_head = nn.Linear(config.text_config.d_model, config.text_config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module:
        return self.lm_head

    def set_output_embeddings(self, value: nn.Module) -> None:
        self.lm_head = value

    def get_encoder(self, modality: str | None = None):
        return self.model.get_encoder(modality=modality)

    def get_decoder(self):
        return self.model.language_model.get_decoder()

    def get_image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Projected image features, `(num_images, image_seq_length, d_model)`; see [`CLIPFlanT5Model.get_image_features`]."""
        return self.model.get_image_features(pixel_values)

    def prepare_decoder_input_ids_from_labels(self, labels: torch.Tensor) -> torch.Tensor:
        return shift_tokens_right(labels, self.config.pad_token_id, self.config.decoder_start_token_id)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.FloatTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.LongTensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        encoder_outputs: tuple | BaseModelOutput | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        decoder_inputs_embeds: torch.FloatTensor | None = None,
        image_embeds: torch.FloatTensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        return_dict: bool | None = None,
        image_index: torch.LongTensor | None = None,
        **kwargs,
    ) -> CLIPFlanT5Seq2SeqLMOutput:
        r"""
        labels (`torch.LongTensor` of shape `(batch_size, target_length)`, *optional*):
            Target token ids, -100 where ignored. The decoder input is `labels` shifted right with
            `decoder_start_token_id` (standard T5); the loss is the mean cross-entropy over non-ignored tokens.
        image_embeds (`torch.FloatTensor` of shape `(num_images, image_seq_length, d_model)`, *optional*):
            Precomputed [`get_image_features`] output, instead of `pixel_values` (lets a caller encode each distinct
            image once and reuse it across prompts).
        image_index (`torch.LongTensor` of shape `(num_image_slots,)`, *optional*):
            For each `<image>` slot in prompt order, the row of `pixel_values`/`image_embeds` it shows.
        """
        kwargs.pop("num_items_in_batch", None)
        if labels is not None and decoder_input_ids is None and decoder_inputs_embeds is None:
            decoder_input_ids = self.prepare_decoder_input_ids_from_labels(labels)
            use_cache = False
        outputs = self.model(
            input_ids=input_ids,
            pixel_values=pixel_values,
            attention_mask=attention_mask,
            decoder_input_ids=decoder_input_ids,
            decoder_attention_mask=decoder_attention_mask,
            encoder_outputs=encoder_outputs,
            cache=cache,
            inputs_embeds=inputs_embeds,
            decoder_inputs_embeds=decoder_inputs_embeds,
            image_embeds=image_embeds,
            use_cache=use_cache,
            image_index=image_index,
            **kwargs,
        )
        sequence_output = outputs.last_hidden_state
        if self.config.text_config.scale_decoder_outputs:
            # Original T5 (v1.0, tied embeddings) rescales before the tied head; FlanT5 does not.
            sequence_output = sequence_output * (self.config.text_config.d_model**-0.5)
        logits = self.lm_head(sequence_output)

        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(
                logits.float().view(-1, logits.size(-1)), labels.to(logits.device).view(-1), ignore_index=-100
            )
        return CLIPFlanT5Seq2SeqLMOutput(
            loss=loss,
            logits=logits,
            cache=outputs.cache,
            decoder_hidden_states=outputs.decoder_hidden_states,
            decoder_attentions=outputs.decoder_attentions,
            cross_attentions=outputs.cross_attentions,
            encoder_last_hidden_state=outputs.encoder_last_hidden_state,
            encoder_hidden_states=outputs.encoder_hidden_states,
            encoder_attentions=outputs.encoder_attentions,
            image_hidden_states=outputs.image_hidden_states,
        )

    def _maybe_prepare_encoder_kwargs_for_generation(
        self,
        inputs_tensor: torch.Tensor,
        model_kwargs: dict[str, Any],
        model_input_name: str | None,
        generation_config,
    ) -> dict[str, Any]:
        # Encode once, before decoding: merge image features into the encoder input, run the T5 encoder, and drop
        # the pixels so that beam expansion and decoding steps never touch the vision tower again.
        if model_kwargs.get("encoder_outputs") is not None:
            model_kwargs.pop("pixel_values", None)
            model_kwargs.pop("image_embeds", None)
            model_kwargs.pop("image_index", None)
            return model_kwargs
        inputs_embeds, _ = self.model.embed_inputs(
            input_ids=inputs_tensor if model_kwargs.get("inputs_embeds") is None else None,
            pixel_values=model_kwargs.pop("pixel_values", None),
            inputs_embeds=model_kwargs.pop("inputs_embeds", None),
            image_embeds=model_kwargs.pop("image_embeds", None),
            image_index=model_kwargs.pop("image_index", None),
        )
        model_kwargs["inputs_embeds"] = inputs_embeds
        model_kwargs = self._prepare_text_encoder_decoder_kwargs_for_generation(
            inputs_tensor=None,
            model_kwargs=model_kwargs,
            model_input_name=model_input_name,
            generation_config=generation_config,
        )
        model_kwargs.pop("inputs_embeds", None)
        return model_kwargs


def _to_module(tensor: torch.Tensor, module: nn.Module) -> torch.Tensor:
    """Cast to the module's dtype and move to its device (unless offloaded: accelerate's hooks move inputs then)."""
    # The first floating-point parameter: a quantized weight (e.g. bitsandbytes' packed uint8) is not the compute dtype.
    param = next((p for p in module.parameters() if p.is_floating_point()), next(module.parameters()))
    if param.device.type == "meta":
        return tensor.to(dtype=param.dtype)
    return tensor.to(device=param.device, dtype=param.dtype)


def shift_tokens_right(labels: torch.Tensor, pad_token_id: int, decoder_start_token_id: int) -> torch.Tensor:
    """T5's decoder input: labels shifted one to the right, starting with `decoder_start_token_id`, -100 -> pad."""
    shifted = labels.new_zeros(labels.shape)
    shifted[..., 1:] = labels[..., :-1].clone()
    shifted[..., 0] = decoder_start_token_id
    return shifted.masked_fill_(shifted == -100, pad_token_id)


def load_original_projector(
    model: CLIPFlanT5PreTrainedModel, path_or_repo: str | os.PathLike, filename: str = "mm_projector.bin", **hub_kwargs
) -> None:
    """
    Load a stage-1 `mm_projector.bin` (from a file, a folder or a Hub repo such as
    `zhiqiulin/clip-flant5-xxl-stage-1`) into `model`'s projector. Any key prefix before `mm_projector.` is accepted.
    """
    path = str(path_or_repo)
    if not os.path.isfile(path):
        path = cached_file(path, filename, **hub_kwargs)
    state = torch.load(path, map_location="cpu", weights_only=True)
    renamed = {}
    for key, tensor in state.items():
        if "mm_projector." not in key:
            continue
        suffix = key.split("mm_projector.", 1)[1]
        index, _, param = suffix.partition(".")
        names = {"0": "linear_1", "2": "linear_2"}
        if index not in names:
            raise ValueError(
                f"Unexpected projector key {key!r} in {path}: expected mm_projector.{{0,2}}.{{weight,bias}}."
            )
        renamed[f"{names[index]}.{param}"] = tensor
    if not renamed:
        raise ValueError(f"{path} holds no 'mm_projector.' tensors; is it a stage-1 projector file?")
    projector = model.model.multi_modal_projector if hasattr(model, "model") else model.multi_modal_projector
    expected = {name: param.shape for name, param in projector.state_dict().items()}
    for name, tensor in renamed.items():
        if name in expected and tuple(tensor.shape) != tuple(expected[name]):
            raise ValueError(
                f"Projector tensor {name} in {path} has shape {tuple(tensor.shape)}, the model expects "
                f"{tuple(expected[name])}: the projector was trained for another vision tower or T5 size."
            )
    projector.load_state_dict(renamed, strict=True)


__all__ = [
    "CLIPFlanT5ForConditionalGeneration",
    "CLIPFlanT5Model",
    "CLIPFlanT5PreTrainedModel",
    "load_original_projector",
    "ORIGINAL_KEY_MAPPING",
]
