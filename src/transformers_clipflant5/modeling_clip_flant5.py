# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""PyTorch CLIP-FlanT5: a CLIP vision tower, an MLP projector and a FlanT5 encoder-decoder.

The projected patch features of each image replace `config.image_seq_length` placeholder tokens
(`config.image_token_id`) in the T5 encoder input, as the original LLaVA-fork code spliced them in; the decoder then
generates or scores text. The checks of the inputs live beside this file (`input_checks_clip_flant5.py`); with
`TRANSFORMERS_DISABLE_TORCH_CHECK=1` a training step never waits on the device. This file imports only torch,
transformers and its sibling files, so that a Hub folder can carry it as remote code.
"""

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import AutoModel, GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.cache_utils import Cache
from transformers.masking_utils import create_bidirectional_mask
from transformers.modeling_outputs import (
    BaseModelOutput,
    BaseModelOutputWithPooling,
    Seq2SeqLMOutput,
    Seq2SeqModelOutput,
)
from transformers.utils.deprecation import deprecate_kwarg
from transformers.utils.generic import can_return_tuple

from .configuration_clip_flant5 import CLIPFlanT5Config
from .input_checks_clip_flant5 import (
    check_attention_mask,
    check_inputs,
    check_labels,
    check_no_placeholders,
    check_pixel_values,
    check_placeholders,
    checked_image_index,
)


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
    _supports_sdpa = True
    # T5's relative position bias needs eager, sdpa or flex attention; the vision tower alone can still be given
    # flash attention: attn_implementation={"vision_config": "flash_attention_2", "text_config": "sdpa", "": "sdpa"}.
    _supports_flash_attn = False
    _supports_flex_attn = True
    _supports_attention_backend = False
    _can_compile_fullgraph = True

    # Every Auto class a saved folder answers to through remote code, as the pip package registers them: saving
    # records only the class that was registered for export, so the others are added to the config here.
    _remote_code_auto_map = {
        "AutoConfig": "configuration_clip_flant5.CLIPFlanT5Config",
        "AutoModel": "modeling_clip_flant5.CLIPFlanT5Model",
        "AutoModelForImageTextToText": "modeling_clip_flant5.CLIPFlanT5ForConditionalGeneration",
        "AutoModelForSeq2SeqLM": "modeling_clip_flant5.CLIPFlanT5ForConditionalGeneration",
    }

    # Hooks the pip package installs (remote code has none): `from_pretrained` tries each checkpoint loader in turn,
    # `loader(cls, name_or_path, *model_args, **kwargs)` -> the model, or None for a layout not its own, and
    # `save_pretrained` ends with `hook(save_directory)` for each save hook.
    checkpoint_loaders: list[Callable[..., Any]] = []
    save_hooks: list[Callable[[str | os.PathLike], None]] = []

    @classmethod
    def is_custom_code(cls) -> bool:
        # As custom code, transformers would skip `_init_weights` on modules without parameters of their own (the CLIP
        # and T5 blocks, whose inits set their children), guarding against inits that ignore its "already initialised"
        # flags. Every init here goes through `transformers.initialization`, which honours them.
        return False

    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, CLIPFlanT5MultiModalProjector):
            # LeCun normal, so that a fresh projector hands T5 image tokens on the scale of its text embeddings
            # (transformers' default std of 0.02 makes them ~70x smaller, and a model trained without a stage-1
            # projector then takes hundreds of steps to start looking at the image).
            for linear in (module.linear_1, module.linear_2):
                std = self.config.text_config.initializer_factor * linear.in_features**-0.5
                init.normal_(linear.weight, mean=0.0, std=std)
                init.zeros_(linear.bias)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        for loader in CLIPFlanT5PreTrainedModel.checkpoint_loaders:
            model = loader(cls, pretrained_model_name_or_path, *model_args, **kwargs)
            if model is not None:
                return model
        return super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)

    def save_pretrained(self, save_directory, *args, **kwargs):
        if self._auto_class is not None:
            self.config.auto_map = {**(getattr(self.config, "auto_map", None) or {}), **self._remote_code_auto_map}
        result = super().save_pretrained(save_directory, *args, **kwargs)
        if kwargs.get("is_main_process", True):
            for hook in CLIPFlanT5PreTrainedModel.save_hooks:
                hook(save_directory)
        return result


class CLIPFlanT5Model(CLIPFlanT5PreTrainedModel):
    """Vision tower + projector + T5 encoder-decoder, without the LM head."""

    # A saved CLIPFlanT5ForConditionalGeneration holds the LM head, which the base model has no place for: loading
    # one into AutoModel drops it by design (as T5Model does T5ForConditionalGeneration's), without a report.
    _keys_to_ignore_on_load_unexpected = [r"^lm_head\."]

    def __init__(self, config: CLIPFlanT5Config):
        super().__init__(config)
        self.vision_tower = AutoModel.from_config(config.vision_config)
        self.multi_modal_projector = CLIPFlanT5MultiModalProjector(config)
        self.language_model = AutoModel.from_config(config.text_config)
        self.post_init()

    def get_encoder(self, modality: str | None = None):
        if modality is None:
            return self.language_model.get_encoder()
        return super().get_encoder(modality=modality)

    @can_return_tuple
    def get_image_features(
        self,
        pixel_values: torch.FloatTensor,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPooling:
        """
        Project processed images `(num_images, 3, height, width)` to T5 input embeddings: `pooler_output` holds the
        projected features `(num_images, image_seq_length, d_model)`, `last_hidden_state` (and `hidden_states`,
        `attentions` when asked for) the vision tower's.
        """
        check_pixel_values(pixel_values, self.vision_tower, bool(kwargs.get("interpolate_pos_encoding")))
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        input_dtype, num_images = pixel_values.dtype, pixel_values.shape[0]
        if num_images == 0:
            # A batch without images still runs the tower and projector, on one blank image whose features are then
            # dropped: every DeepSpeed ZeRO-3 rank must gather the same parameters at every step, or ranks hang.
            pixel_values = pixel_values.new_zeros((1, *pixel_values.shape[1:]))
        tower_outputs = self.vision_tower(
            _to_module(pixel_values, self.vision_tower),
            output_hidden_states=True,
            output_attentions=self.config.output_attentions if output_attentions is None else output_attentions,
            return_dict=True,
            **kwargs,
        )
        selected = tower_outputs.hidden_states[self.config.vision_feature_layer]
        if self.config.vision_feature_select_strategy == "default":
            selected = selected[:, 1:]
        # The original casts the tower output back to the input dtype before projecting.
        features = self.multi_modal_projector(_to_module(selected.to(input_dtype), self.multi_modal_projector))
        return BaseModelOutputWithPooling(
            last_hidden_state=tower_outputs.last_hidden_state[:num_images],
            pooler_output=features[:num_images],
            hidden_states=tower_outputs.hidden_states if output_hidden_states else None,
            attentions=tower_outputs.attentions,
        )

    def get_placeholder_mask(
        self,
        input_ids: torch.LongTensor | None,
        inputs_embeds: torch.Tensor,
        image_features: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """
        Boolean mask `(batch, seq)` of the image placeholder positions, found from `input_ids` or, without them, from
        `inputs_embeds` rows equal to the placeholder's embedding (as LLaVA does). With `image_features`, checks that
        the placeholders make whole images, as many as there are features.
        """
        if input_ids is not None:
            mask = input_ids == self.config.image_token_id
        else:
            placeholder = self.get_input_embeddings()(
                torch.tensor(self.config.image_token_id, dtype=torch.long, device=inputs_embeds.device)
            )
            mask = (inputs_embeds == placeholder.to(inputs_embeds.dtype)).all(-1)
        if image_features is not None:
            check_placeholders(mask, image_features, self.config)
        return mask

    def embed_inputs(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        image_embeds: torch.Tensor | None = None,
        image_index: torch.LongTensor | None = None,
        images_already_encoded: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """
        Token embeddings with the image features at the placeholder positions, and the features. `image_index` picks,
        for each image slot in prompt order, its row of `pixel_values`/`image_embeds`. Placeholders without images are
        an error, unless `images_already_encoded` (a decoding cache holds what the encoder made of them).
        """
        embeddings = self.get_input_embeddings()
        check_inputs(input_ids, inputs_embeds, pixel_values, image_embeds, embeddings, self.config)
        if input_ids is not None:
            inputs_embeds = embeddings(input_ids)
        image_features = image_embeds
        if pixel_values is not None:
            image_features = self.get_image_features(pixel_values, return_dict=True).pooler_output
        if image_index is not None:
            image_features = image_features[checked_image_index(image_index, image_features)]

        if image_features is not None:
            mask = self.get_placeholder_mask(input_ids, inputs_embeds, image_features)
            inputs_embeds = _place_image_features(inputs_embeds, mask, image_features)
        elif not images_already_encoded and input_ids is not None:
            check_no_placeholders(input_ids, self.config.image_token_id)
        return inputs_embeds, image_features

    @can_return_tuple
    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
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
        r"""
        image_embeds (`torch.FloatTensor` of shape `(num_images, image_seq_length, d_model)`, *optional*):
            Precomputed `get_image_features(...).pooler_output`, instead of `pixel_values` (lets a caller encode
            each distinct image once and reuse it across prompts).
        image_index (`torch.LongTensor` of shape `(num_image_slots,)`, *optional*):
            For each `<image>` slot in prompt order, the row of `pixel_values`/`image_embeds` it shows.

        With `encoder_outputs`, images and prompt are not read again (the encoder has already seen them).
        """
        image_features = None
        if encoder_outputs is None:
            inputs_embeds, image_features = self.embed_inputs(
                input_ids, pixel_values, inputs_embeds, image_embeds, image_index, _cross_attention_is_cached(cache)
            )
        # Also with encoder_outputs (generation's decoding steps): the mask masks cross-attention too.
        encoder_input = inputs_embeds if encoder_outputs is None else encoder_outputs[0]
        check_attention_mask(attention_mask, encoder_input)
        attention_mask = _padding_attention_mask(self.config.text_config, attention_mask, encoder_input)
        if decoder_input_ids is None and decoder_inputs_embeds is None:
            start = self.config.text_config.decoder_start_token_id
            decoder_input_ids = torch.full((encoder_input.shape[0], 1), start, device=encoder_input.device)
        outputs = self.language_model(
            attention_mask=attention_mask,
            decoder_input_ids=decoder_input_ids,
            decoder_attention_mask=decoder_attention_mask,
            encoder_outputs=encoder_outputs,
            cache=cache,
            inputs_embeds=inputs_embeds,
            decoder_inputs_embeds=decoder_inputs_embeds,
            use_cache=use_cache,
            return_dict=True,
            **kwargs,
        )
        return CLIPFlanT5Seq2SeqModelOutput(**outputs, image_hidden_states=image_features)


class CLIPFlanT5ForConditionalGeneration(CLIPFlanT5PreTrainedModel, GenerationMixin):
    """CLIP-FlanT5 with its LM head: seq2seq loss, `generate`, and VQAScore-style answer likelihoods."""

    _tied_weights_keys = {"lm_head.weight": "model.language_model.shared.weight"}

    def __init__(self, config: CLIPFlanT5Config):
        super().__init__(config)
        self.model = CLIPFlanT5Model(config)
        self.lm_head = nn.Linear(config.text_config.d_model, config.text_config.vocab_size, bias=False)
        self.post_init()

    def get_decoder(self):
        return self.model.language_model.get_decoder()

    def get_image_features(self, pixel_values: torch.FloatTensor, **kwargs) -> BaseModelOutputWithPooling:
        """Projected image features in `pooler_output`; see [`CLIPFlanT5Model.get_image_features`]."""
        return self.model.get_image_features(pixel_values, **kwargs)

    def prepare_decoder_input_ids_from_labels(self, labels: torch.Tensor) -> torch.Tensor:
        return shift_tokens_right(labels, self.config.pad_token_id, self.config.decoder_start_token_id)

    @can_return_tuple
    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
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
        image_index: torch.LongTensor | None = None,
        **kwargs,
    ) -> CLIPFlanT5Seq2SeqLMOutput:
        r"""
        labels (`torch.LongTensor` of shape `(batch_size, target_length)`, *optional*):
            Target token ids, -100 where ignored; the decoder input is them shifted right (standard T5). The loss is
            averaged over the target tokens, or summed and divided by `num_items_in_batch` when given.
        image_embeds, image_index: see [`CLIPFlanT5Model.forward`].

        Example:

        ```python
        >>> from PIL import Image
        >>> from transformers import AutoModelForImageTextToText, AutoProcessor

        >>> model = AutoModelForImageTextToText.from_pretrained("clip-flant5/clip-flant5-xxl", trust_remote_code=True)
        >>> processor = AutoProcessor.from_pretrained("clip-flant5/clip-flant5-xxl", trust_remote_code=True)

        >>> question = 'Does this figure show "a cat on a mat"? Please answer yes or no.'
        >>> messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
        >>> prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
        >>> inputs = processor(images=Image.open("cat.png"), text=prompt, text_target="Yes")

        >>> # The loss is the mean negative log-likelihood of the answer's tokens, "</s>" included.
        >>> likelihood = model(**inputs).loss.neg().exp()

        >>> # Generate
        >>> output = model.generate(**{k: v for k, v in inputs.items() if k != "labels"}, max_new_tokens=10)
        >>> processor.batch_decode(output, skip_special_tokens=True)[0]
        ```"""
        num_items_in_batch = kwargs.pop("num_items_in_batch", None)
        if labels is not None:
            check_labels(labels, input_ids, inputs_embeds, encoder_outputs, self.config.text_config.vocab_size)
            if decoder_input_ids is None and decoder_inputs_embeds is None:
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
            return_dict=True,
            **kwargs,
        )
        sequence_output = outputs.last_hidden_state
        if self.config.text_config.scale_decoder_outputs:
            # Original T5 (v1.0, tied embeddings) rescales before the tied head; FlanT5 does not.
            sequence_output = sequence_output * (self.config.text_config.d_model**-0.5)
        logits = self.lm_head(sequence_output)

        loss = None
        if labels is not None:
            # The labels are the decoder's targets position by position already (the decoder input is them shifted
            # right), so they are passed as `shift_labels` and not shifted again, as Florence2 does.
            loss = self.loss_function(
                logits=logits,
                labels=labels,
                vocab_size=self.config.text_config.vocab_size,
                shift_labels=labels.to(logits.device),
                num_items_in_batch=num_items_in_batch,
            )
        # Everything the base model returned but its last hidden state, which the head turned into logits.
        rest = {name: value for name, value in outputs.items() if name != "last_hidden_state"}
        return CLIPFlanT5Seq2SeqLMOutput(loss=loss, logits=logits, **rest)

    def _maybe_prepare_encoder_kwargs_for_generation(
        self,
        inputs_tensor: torch.Tensor,
        model_kwargs: dict[str, Any],
        model_input_name: str | None,
        generation_config,
    ) -> dict[str, Any]:
        # Encode once, before decoding: merge image features into the encoder input and run the T5 encoder. The
        # decoding steps then pass `encoder_outputs`, with which `forward` never reads the images again; the images
        # stay in `model_kwargs` for an assistant model (assisted decoding), which runs its own encoder on them.
        if model_kwargs.get("encoder_outputs") is not None:
            return model_kwargs
        inputs_embeds, _ = self.model.embed_inputs(
            input_ids=inputs_tensor if model_kwargs.get("inputs_embeds") is None else None,
            pixel_values=model_kwargs.get("pixel_values"),
            inputs_embeds=model_kwargs.pop("inputs_embeds", None),
            image_embeds=model_kwargs.get("image_embeds"),
            image_index=model_kwargs.get("image_index"),
            images_already_encoded=_cross_attention_is_cached(model_kwargs.get("cache")),
        )
        check_attention_mask(model_kwargs.get("attention_mask"), inputs_embeds)
        model_kwargs["inputs_embeds"] = inputs_embeds
        model_kwargs = self._prepare_text_encoder_decoder_kwargs_for_generation(
            inputs_tensor=None,
            model_kwargs=model_kwargs,
            model_input_name=model_input_name,
            generation_config=generation_config,
        )
        model_kwargs.pop("inputs_embeds", None)
        return model_kwargs


def _place_image_features(inputs_embeds: torch.Tensor, mask: torch.Tensor, image_features: torch.Tensor):
    """`inputs_embeds` with the image features, in reading order, at the `mask` positions. A gather rather than
    `masked_scatter`, whose backward (a `masked_select`) waits on the device for the number of positions."""
    features = image_features.reshape(-1, image_features.shape[-1]).to(inputs_embeds.device, inputs_embeds.dtype)
    if features.shape[0] == 0:
        # Gather from a zero row: the projector stays in the autograd graph (zero gradients) for a batch without
        # images, so that every DeepSpeed rank runs and reduces the same parameters each step.
        features = torch.cat([features, features.new_zeros(1, features.shape[1])])
    mask = mask.to(inputs_embeds.device)
    index = (mask.flatten().cumsum(0) - 1).clamp(0, features.shape[0] - 1)
    gathered = features.index_select(0, index).view_as(inputs_embeds)
    return torch.where(mask.unsqueeze(-1), gathered, inputs_embeds)


def _padding_attention_mask(text_config, attention_mask: torch.Tensor | None, encoder_input: torch.Tensor):
    """T5's 4-D padding mask for eager and sdpa attention. T5 would build the same, but first reads the mask back to
    the host to skip it when nothing is padded, which makes every training step wait on the device. One query row
    broadcasts over the encoder's self-attention and the decoder's cross-attention alike; flex attention is left to
    build its block mask."""
    eager_or_sdpa = text_config._attn_implementation in ("eager", "sdpa")
    if attention_mask is None or attention_mask.dim() != 2 or not eager_or_sdpa:
        return attention_mask
    return create_bidirectional_mask(
        text_config, encoder_input[:, :1], attention_mask, allow_is_bidirectional_skip=False
    )


def _cross_attention_is_cached(cache: Cache | None) -> bool:
    """Whether a decoding cache already holds the cross-attention keys and values, i.e. the encoder has run: a
    generation continued from it needs the prompt's images no more."""
    cross_attention_cache = getattr(cache, "cross_attention_cache", None)
    return cross_attention_cache is not None and cross_attention_cache.get_seq_length() > 0


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


__all__ = ["CLIPFlanT5ForConditionalGeneration", "CLIPFlanT5Model", "CLIPFlanT5PreTrainedModel"]
