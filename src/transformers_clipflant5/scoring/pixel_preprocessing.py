# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""The image processor's steps in torch on float pixels, differentiably: what `VQAScore.score_pixels` feeds the model
so that a score can be back-propagated into the pixels (and from there into an image generator).

The PIL path of [`VQAScore`] reads 8-bit images: pad to square with the CLIP mean colour, resize (bicubic, PIL),
centre crop, rescale, normalise. [`preprocess_pixels`] does the same steps in torch on float tensors, so that a
score can be back-propagated into the pixels (and from there into an image generator):

- the pad colour is the 8-bit one the original pasted, `int(mean * 255) / 255`, at the original offsets;
- the resize is separable like PIL's: one pass per axis, in PIL's order, each antialiased bicubic (torch's
  antialiased kernel is PIL's, a = -0.5) and clipped to [0, 1] as PIL's 8-bit passes are;
- a pass whose size does not change is skipped, so an image already at the tower's size goes through untouched and
  scores as `VQAScore.__call__` scores the same 8-bit image.

What remains different from the PIL path is PIL's rounding to 8 bits after each pass (at most half an intensity
level per pass). `quantize=True` rounds there too, with straight-through gradients (the rounding is skipped in the
backward pass): its forward then matches PIL's output but for values within float error of a half level, which
PIL's fixed-point arithmetic rounds its own way (measured: 0.04% of pixels one level off on noise, ~1% on smooth,
piecewise-linear images, whose resized values often sit on half levels).
"""

from collections.abc import Sequence
from contextlib import contextmanager

import PIL
import torch
from torch.nn import functional
from transformers.modeling_layers import GradientCheckpointingLayer

from ..processing_clip_flant5 import CLIPFlanT5Processor


PixelInput = torch.Tensor | Sequence[torch.Tensor]
PILLOW_MAJOR = int(PIL.__version__.split(".")[0])
# PIL resampling filters that torch's antialiased interpolation reproduces.
RESAMPLE_MODES = {2: "bilinear", 3: "bicubic"}


def _straight_through_round(values: torch.Tensor) -> torch.Tensor:
    """Values rounded to 8-bit levels in the forward pass, unchanged gradients in the backward pass."""
    return values + (torch.round(values * 255) / 255 - values).detach()


def pad_to_square(image: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
    """Centre `image` (`(..., 3, H, W)`) on a square canvas of side max(H, W) filled with `fill` (one value per
    channel), at the offsets the original's PIL paste used: ((side - W) // 2, (side - H) // 2)."""
    height, width = image.shape[-2:]
    if height == width:
        return image
    side = max(height, width)
    top, left = (side - height) // 2, (side - width) // 2
    canvas = fill.to(image).view(-1, 1, 1).expand(*image.shape[:-2], side, side).clone()
    canvas[..., top : top + height, left : left + width] = image
    return canvas


def resize(images: torch.Tensor, height: int, width: int, mode: str = "bicubic", quantize: bool = False):
    """Resize `(N, C, H, W)` images in [0, 1] as PIL resizes 8-bit images: one pass per axis, each antialiased and
    clipped to [0, 1] (and rounded to 8 bits with `quantize`), in PIL's order; a pass that keeps its size is skipped."""
    in_height, in_width = images.shape[-2:]
    # Pillow 13 resizes vertically first when the height shrinks by more than twice what the width does (it is cheaper
    # there), earlier versions always horizontally first. The order matters because each pass clips and rounds.
    vertical_first = PILLOW_MAJOR >= 13 and height < in_height and in_height - height > 2 * (in_width - width)
    sizes = ((height, in_width), (height, width)) if vertical_first else ((in_height, width), (height, width))
    for size in sizes:
        if tuple(images.shape[-2:]) != size:
            images = functional.interpolate(images, size=size, mode=mode, antialias=True, align_corners=False)
            images = images.clamp(0, 1)
            if quantize:
                images = _straight_through_round(images)
    return images


def _output_size(height: int, width: int, size) -> tuple[int, int]:
    """The resize target of the processor's `size` setting, computed as transformers' PIL backend does."""
    if size.shortest_edge and not size.longest_edge:
        short, long = min(height, width), max(height, width)
        new_short, new_long = size.shortest_edge, int(size.shortest_edge * long / short)
        return (new_long, new_short) if width <= height else (new_short, new_long)
    if size.height and size.width:
        return size.height, size.width
    raise ValueError(
        f"score_pixels supports an image processor size of {{'shortest_edge'}} or {{'height', 'width'}}, got {size}."
    )


def preprocess_pixels(
    images: PixelInput, processor: CLIPFlanT5Processor, quantize: bool = False, device: torch.device | None = None
) -> torch.Tensor:
    """
    Differentiable counterpart of the processor's image processor for float pixels in [0, 1].

    Args:
        images: a `(N, 3, H, W)` tensor, or a list of `(3, H, W)` tensors of any sizes.
        processor: the scorer's processor (its aspect-ratio mode and CLIP settings are followed).
        quantize: round to 8-bit levels where the PIL path does (input, padded image, each resize pass), with
            straight-through gradients.
        device: where to compute (the pixels are moved there, differentiably); default: where they are.

    Returns:
        `(N, 3, crop_height, crop_width)` normalised pixel values, in float32 (float64 for float64 input).
    """
    settings = processor.image_processor
    mode = RESAMPLE_MODES.get(int(settings.resample) if settings.do_resize else 3)
    if mode is None:
        raise ValueError(f"score_pixels reproduces bicubic or bilinear resizing, not PIL filter {settings.resample}.")
    batch = [images] if isinstance(images, torch.Tensor) else list(images)
    dtype = torch.promote_types(batch[0].dtype, torch.float32)
    mean = torch.tensor(settings.image_mean, dtype=dtype, device=device or batch[0].device)
    std = torch.tensor(settings.image_std, dtype=dtype, device=mean.device)
    # The PIL path pastes onto a canvas of the 8-bit mean colour and rescales with rescale_factor.
    fill = torch.tensor([int(m * 255) for m in settings.image_mean], dtype=dtype, device=mean.device) / 255
    scale = 255 * settings.rescale_factor if settings.do_rescale else 255.0
    processed = []
    for pixels in batch:
        pixels = pixels.to(device=mean.device, dtype=dtype)
        if pixels.dim() == 3:
            pixels = pixels.unsqueeze(0)
        if quantize:
            pixels = _straight_through_round(pixels)
        if _pads_to_square(processor):
            pixels = pad_to_square(pixels, fill)
        if settings.do_resize:
            pixels = resize(pixels, *_output_size(*pixels.shape[-2:], settings.size), mode, quantize)
        if settings.do_center_crop:
            pixels = _center_crop(pixels, settings.crop_size.height, settings.crop_size.width)
        pixels = pixels * scale
        if settings.do_normalize:
            pixels = (pixels - mean.view(-1, 1, 1)) / std.view(-1, 1, 1)
        processed.append(pixels)
    return torch.cat(processed)


def _pads_to_square(processor: CLIPFlanT5Processor) -> bool:
    return bool(processor.image_processor.do_pad)


def _center_crop(images: torch.Tensor, height: int, width: int) -> torch.Tensor:
    image_height, image_width = images.shape[-2:]
    if image_height < height or image_width < width:
        raise ValueError(
            f"The image processor crops {height}x{width} from a {image_height}x{image_width} image; score_pixels "
            "does not reproduce the zero padding transformers adds then. Use a size of at least the crop size."
        )
    top, left = (image_height - height) // 2, (image_width - width) // 2
    return images[..., top : top + height, left : left + width]


def check_pixels(pixels: PixelInput, num_texts: int) -> list[torch.Tensor]:
    """The images as a list of `(3, H, W)` float tensors, or an error naming what is wrong."""
    if isinstance(pixels, torch.Tensor):
        if pixels.dim() != 4:
            raise ValueError(
                f"pixels must be a (N, 3, H, W) tensor or a list of (3, H, W) tensors, got shape {tuple(pixels.shape)}."
            )
        images = list(pixels.unbind(0))
    elif isinstance(pixels, (list, tuple)):
        images = list(pixels)
        for index, image in enumerate(images):
            if not isinstance(image, torch.Tensor) or image.dim() != 3:
                shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
                raise ValueError(f"pixels[{index}] must be a (3, H, W) tensor, got {shape}.")
    else:
        raise TypeError(f"pixels must be a tensor or a list of tensors, got {type(pixels).__name__}.")
    if len(images) != num_texts:
        raise ValueError(f"Got {len(images)} images and {num_texts} texts; score_pixels needs one text per image.")
    for index, image in enumerate(images):
        if not torch.is_floating_point(image):
            raise TypeError(
                f"pixels[{index}] has dtype {image.dtype}; pass floats in [0, 1] (e.g. uint8_image.float() / 255)."
            )
        if image.shape[0] != 3 or image.shape[1] == 0 or image.shape[2] == 0:
            raise ValueError(f"pixels[{index}] must have shape (3, H, W) with H, W > 0, got {tuple(image.shape)}.")
    for index, image in enumerate(images):
        low, high = (float(value) for value in torch.aminmax(image.detach()))
        if not 0 <= low <= high <= 1:  # NaN fails too
            raise ValueError(
                f"pixels[{index}] must lie in [0, 1], got values in [{low:.4g}, {high:.4g}]: clamp them or map "
                "unbounded parameters through a sigmoid first."
            )
    return images


@contextmanager
def checkpoint_in_eval_mode(model: torch.nn.Module):
    """transformers checkpoints a layer only in training mode; a reward model runs in eval mode (no dropout). Mark
    the checkpointed layers themselves (not their dropout children) as training for the forward pass."""
    layers = [
        module
        for module in model.modules()
        if isinstance(module, GradientCheckpointingLayer) and module.gradient_checkpointing and not module.training
    ]
    for layer in layers:
        layer.training = True
    try:
        yield
    finally:
        for layer in layers:
            layer.training = False


__all__ = ["check_pixels", "checkpoint_in_eval_mode", "pad_to_square", "preprocess_pixels", "resize"]
