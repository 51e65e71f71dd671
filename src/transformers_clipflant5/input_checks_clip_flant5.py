# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""The checks CLIP-FlanT5's forward makes of its inputs, each naming the problem and what to do.

Without them a wrong input fails deep inside the vision tower or T5 (a bare shape mismatch, "index out of range in
self", on a GPU a device-side assert that leaves the CUDA context unusable) or, worse, runs and gives a wrong answer.
Shape and dtype checks read only metadata. Checks of tensor values go through `torch_compilable_check`, which
`TRANSFORMERS_DISABLE_TORCH_CHECK=1` turns off, so that a training step then never waits on the device; their
messages are built only once a check has failed. This file imports only torch and transformers, and travels to the
Hub beside the model file as remote code.
"""

import torch
from torch import nn
from transformers import PreTrainedConfig
from transformers.utils import torch_compilable_check


def check_pixel_values(pixel_values: torch.Tensor, vision_tower: nn.Module, interpolate: bool) -> None:
    """Processed images `(num_images, channels, size, size)` in floating point, with data; other sizes only when the
    tower interpolates its position embeddings."""
    if not torch.is_floating_point(pixel_values):
        raise TypeError(
            f"pixel_values must be a floating-point tensor, got {pixel_values.dtype}: run the images through "
            "CLIPFlanT5Processor (it rescales and normalises them)."
        )
    channels, size = vision_tower.config.num_channels, vision_tower.config.image_size
    if (
        pixel_values.dim() != 4
        or pixel_values.shape[1] != channels
        or (not interpolate and tuple(pixel_values.shape[2:]) != (size, size))
    ):
        raise ValueError(
            f"pixel_values must have shape (num_images, {channels}, height, width) with height = width = {size} "
            f"(the vision tower's image_size), got {tuple(pixel_values.shape)}: run the images through "
            "CLIPFlanT5Processor (channels first, resized and cropped to the tower's size)."
        )
    check_has_data("pixel_values", pixel_values, vision_tower)


def check_has_data(name: str, tensor: torch.Tensor, module: nn.Module) -> None:
    """A meta tensor has a shape but no values: the model can only run on it when the model is on meta too."""
    if tensor.is_meta and next(module.parameters()).device.type != "meta":
        raise ValueError(f"{name} is on the meta device: it has a shape but no values. Pass a tensor with data.")


def check_inputs(
    input_ids: torch.Tensor | None,
    inputs_embeds: torch.Tensor | None,
    pixel_values: torch.Tensor | None,
    image_embeds: torch.Tensor | None,
    embeddings: nn.Embedding,
    config: PreTrainedConfig,
) -> None:
    """Exactly one of `input_ids` (batch, seq) of ids in the vocabulary or `inputs_embeds` (batch, seq, d_model); at
    most one of `pixel_values` or `image_embeds`, the features `get_image_features` returns."""
    if (input_ids is None) == (inputs_embeds is None):
        raise ValueError("Pass exactly one of input_ids or inputs_embeds.")
    if pixel_values is not None and image_embeds is not None:
        raise ValueError("Pass pixel_values or precomputed image_embeds, not both.")
    expected = (config.image_seq_length, config.text_config.d_model)
    if image_embeds is not None and (image_embeds.dim() != 3 or tuple(image_embeds.shape[1:]) != expected):
        raise ValueError(
            f"image_embeds must have shape (num_images, image_seq_length={expected[0]}, d_model={expected[1]}), "
            f"got {tuple(image_embeds.shape)}: pass get_image_features(pixel_values).pooler_output."
        )
    if inputs_embeds is not None:
        if inputs_embeds.dim() != 3:
            raise ValueError(
                "inputs_embeds must have shape (batch_size, sequence_length, d_model), got "
                f"{tuple(inputs_embeds.shape)}."
            )
        check_has_data("inputs_embeds", inputs_embeds, embeddings)
        return
    if input_ids.dtype not in (torch.int32, torch.int64):
        raise TypeError(f"input_ids must be an integer tensor, got {input_ids.dtype}.")
    if input_ids.dim() != 2:  # T5 would fail with "tuple index out of range"
        raise ValueError(
            f"input_ids must have shape (batch_size, sequence_length), got {tuple(input_ids.shape)}: for one "
            "prompt, use input_ids[None]."
        )
    check_has_data("input_ids", input_ids, embeddings)
    check_token_ids("input_ids", input_ids, embeddings.num_embeddings)


def checked_image_index(image_index, image_features: torch.Tensor | None) -> torch.Tensor:
    """`image_index` as a tensor, refused unless it is 1-D and each entry is a row of `image_features` (a negative
    entry would silently count from the end)."""
    if image_features is None:
        raise ValueError("image_index selects rows of pixel_values or image_embeds; pass one of them.")
    image_index, num_images = torch.as_tensor(image_index, device=image_features.device), len(image_features)
    if image_index.dim() != 1 or image_index.is_floating_point() or image_index.dtype == torch.bool:
        raise ValueError(
            f"image_index must be a 1-D integer tensor (one row per <image> slot), got shape "
            f"{tuple(image_index.shape)} and dtype {image_index.dtype}."
        )
    torch_compilable_check(
        ((image_index >= 0) & (image_index < num_images)).all(),
        lambda: (
            f"image_index holds {image_index.tolist()} but only images 0 to {num_images - 1} were given: each "
            "entry must be a row of pixel_values/image_embeds."
        ),
    )
    return image_index


def check_placeholders(mask: torch.Tensor, image_features: torch.Tensor, config: PreTrainedConfig) -> None:
    """The placeholders (`mask`) make whole images, as many as there are features. Features fill them in reading
    order: a run of another length than `image_seq_length` (even with the right total) would silently split an image
    across rows or positions."""
    run_lengths = _placeholder_run_lengths(mask)
    torch_compilable_check(
        (run_lengths % config.image_seq_length == 0).all() & (mask.sum() == image_features.shape[:2].numel()),
        lambda: _placeholder_mismatch(mask, run_lengths, image_features.shape, config),
    )


def check_no_placeholders(input_ids: torch.Tensor, image_token_id: int) -> None:
    torch_compilable_check(
        ~(input_ids == image_token_id).any(),
        "The input holds image placeholder tokens but no pixel_values (or image_embeds) were given.",
    )


def check_attention_mask(attention_mask: torch.Tensor | None, encoder_input: torch.Tensor) -> None:
    """The attention mask must be (batch_size, sequence_length) of the encoder input (`inputs_embeds` or the
    encoder's output): T5 broadcasts a one-row mask, pads a short one, or fails inside attention with a bare size
    mismatch. Custom 4-D masks are left to transformers."""
    shape = tuple(encoder_input.shape[:2])
    if attention_mask is not None and attention_mask.dim() != 4 and tuple(attention_mask.shape) != shape:
        raise ValueError(
            f"attention_mask has shape {tuple(attention_mask.shape)} but the encoder input is {shape} "
            "(batch_size, sequence_length): pass the attention_mask that came with these input_ids."
        )


def check_labels(labels: torch.Tensor, input_ids, inputs_embeds, encoder_outputs, vocab_size: int) -> None:
    """Labels must be (batch_size, target_length) ids in the vocabulary, or -100 where ignored, for the encoder's
    batch; T5 otherwise fails deep inside (tuple index out of range, a shape mismatch in attention)."""
    encoder_input = next(t for t in (input_ids, inputs_embeds, encoder_outputs) if t is not None)
    batch_size = len(encoder_input[0] if encoder_input is encoder_outputs else encoder_input)
    if labels.dim() != 2 or labels.shape[0] != batch_size or labels.is_floating_point():
        raise ValueError(
            f"labels must be an integer tensor of shape (batch_size={batch_size}, target_length), got shape "
            f"{tuple(labels.shape)} and dtype {labels.dtype}: one row of target ids per prompt, -100 where ignored."
        )
    check_token_ids("labels", labels, vocab_size, ignore_index=-100)


def check_token_ids(name: str, ids: torch.Tensor, vocab_size: int, ignore_index: int | None = None) -> None:
    """Ids outside the vocabulary are typically a token added to the tokenizer without `resize_token_embeddings`."""
    if ids.is_meta:
        return
    valid = (ids >= 0) & (ids < vocab_size)
    if ignore_index is not None:
        valid |= ids == ignore_index
    torch_compilable_check(
        valid.all(),
        lambda: (
            f"{name} holds ids {ids[~valid].unique()[:5].tolist()} outside the model's vocabulary (0 to "
            f"{vocab_size - 1}{'' if ignore_index is None else f', or {ignore_index} where ignored'}): a tokenizer "
            "with added tokens needs model.resize_token_embeddings(len(tokenizer))."
        ),
    )


def _placeholder_run_lengths(mask: torch.Tensor) -> torch.Tensor:
    """For each row's last placeholder of a run of consecutive placeholders, the run's length; 0 elsewhere. Found
    with `cummax` rather than `nonzero`, whose output size makes the host wait on the device."""
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    last_other = torch.where(mask, -1, positions).cummax(1).values
    run_ends = mask & ~torch.nn.functional.pad(mask[:, 1:], (0, 1))
    return torch.where(run_ends, positions - last_other, 0)


def _placeholder_mismatch(mask: torch.Tensor, run_lengths: torch.Tensor, features_shape, config) -> str:
    length = config.image_seq_length
    for row, end in (run_lengths % length).nonzero().tolist()[:1]:
        run = int(run_lengths[row, end])
        return (
            f"Row {row} holds a run of {run} image placeholder tokens at position {end - run + 1}, not a multiple of "
            f"image_seq_length={length}: each image takes exactly that many consecutive placeholders. Build inputs "
            "with CLIPFlanT5Processor, and do not truncate inside them."
        )
    return (
        f"The input holds {int(mask.sum())} image placeholder tokens (id {config.image_token_id}) but "
        f"{features_shape[0]} image(s) x {features_shape[1]} features = {features_shape[:2].numel()} image features "
        f"were given. Each image needs exactly image_seq_length={length} placeholders, one '<image>' per image in "
        "the prompt: build inputs with CLIPFlanT5Processor."
    )
