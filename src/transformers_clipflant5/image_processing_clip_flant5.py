# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""Image processor for CLIP-FlanT5: the original model's image path, exactly.

1. Every input (a path, a PIL image, an array or a tensor) is opened as an 8-bit RGB PIL image, with a clear error
   when it cannot be: missing, empty, unreadable, too large to decode safely, or of an unusable shape.
2. With `do_pad` (stage 2, VQAScore) the image is centred on a square canvas of the CLIP mean colour
   (`int(mean * 255)` per channel, offsets `(side - w) // 2`, `(side - h) // 2`), as LLaVA-1.5's `expand2square`.
3. CLIP preprocessing with PIL: resize the shortest edge (bicubic), centre crop, rescale, normalise. The original
   resized with PIL; torchvision's bicubic differs by a few intensity levels, which moves scores.

This file imports only numpy, PIL, torch and transformers so that a Hub folder can carry it as remote code.
"""

import os
from pathlib import Path
from typing import Union

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, PILImageResampling
from transformers.image_utils import load_image as load_url_image
from transformers.models.llava.image_processing_pil_llava import LlavaImageProcessorPil
from transformers.processing_utils import ImagesKwargs, Unpack


ImageInput = Union[str, os.PathLike, Image.Image, np.ndarray, torch.Tensor]
# PIL's own decompression-bomb limit is 89,478,485 pixels (a warning) and twice that an error; ours is the error.
DEFAULT_MAX_IMAGE_PIXELS = 178956970


class CLIPFlanT5ImageProcessorKwargs(ImagesKwargs, total=False):
    r"""
    max_image_pixels (`int`, *optional*, defaults to 178956970):
        Refuse images with more pixels than this before decoding them (a guard against decompression bombs).
    """

    max_image_pixels: int | None


class CLIPFlanT5ImageProcessor(LlavaImageProcessorPil):
    r"""
    CLIP ViT-L/14-336 preprocessing, padded to square with the CLIP mean colour when `do_pad` is set (the stage-2
    checkpoints and VQAScore), on the PIL backend. Accepts paths as well as images, arrays and tensors.
    """

    valid_kwargs = CLIPFlanT5ImageProcessorKwargs
    model_input_names = ["pixel_values"]
    resample = PILImageResampling.BICUBIC
    image_mean = OPENAI_CLIP_MEAN
    image_std = OPENAI_CLIP_STD
    size = {"shortest_edge": 336}
    crop_size = {"height": 336, "width": 336}
    do_pad = True
    max_image_pixels = DEFAULT_MAX_IMAGE_PIXELS

    def __init__(self, **kwargs: Unpack[CLIPFlanT5ImageProcessorKwargs]):
        super().__init__(**kwargs)

    def _prepare_images_structure(self, images, expected_ndims: int = 3) -> list[Image.Image]:
        # Every image is opened here, so that a bad one is reported by its path or position before any work.
        loaded = [load_image(image, self.max_image_pixels) for image in flatten_images(images)]
        shortest_edge = self.size.get("shortest_edge") if self.do_resize else None
        for image in loaded:
            _check_working_pixels(image, self.max_image_pixels, self.do_pad, shortest_edge)
        return loaded


def flatten_images(images) -> list:
    """One image, a list of images, or a list of lists (one per prompt), as one flat list in prompt order."""
    if images is None:
        return []
    if isinstance(images, (str, os.PathLike, Image.Image, np.ndarray, torch.Tensor)):
        if isinstance(images, (np.ndarray, torch.Tensor)) and images.ndim == 4:
            return list(images)
        return [images]
    flat = []
    for item in images:
        flat.extend(flatten_images(item) if isinstance(item, (list, tuple)) else [item])
    return flat


def load_image(image: ImageInput, max_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS) -> Image.Image:
    """
    Open a path, PIL image, array or tensor as an 8-bit RGB PIL image; raise with the reason when it cannot be read.
    Arrays and tensors may be HWC or CHW, uint8 (0-255), uint16 (0-65535) or float in [0, 1]. `max_pixels` bounds
    the decoded size (a guard against decompression bombs); None keeps PIL's.
    """
    if isinstance(image, (str, os.PathLike)):
        image = _open_file(image, max_pixels)
    elif isinstance(image, torch.Tensor):
        if image.is_meta:
            raise ValueError("Image tensor is on the meta device: it has a shape but no values to read.")
        tensor = image.detach().cpu()
        # numpy has no bfloat16: read every floating-point tensor as float32 (exact for bf16/fp16 values).
        image = _array_to_pil((tensor.float() if tensor.is_floating_point() else tensor).numpy())
    elif isinstance(image, np.ndarray):
        image = _array_to_pil(image)
    elif not isinstance(image, Image.Image):
        raise TypeError(
            f"Unsupported image type {type(image).__name__}: pass a file path, a PIL image, a numpy array or a torch "
            "tensor."
        )
    if image.width == 0 or image.height == 0:
        raise ValueError(f"Image has zero size ({image.width}x{image.height}).")
    _check_pixels(image, max_pixels, "image")
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # PIL's convert("RGB") clips 16/32-bit grey values at 255 instead of scaling them: scale to 8 bits first.
        image = _array_to_pil(np.asarray(image), sixteen_bit=True)
    elif image.mode == "F" and _is_unit_scaled(np.asarray(image)):
        # A float image in [0, 1] (a float TIFF, say) would be clipped to 0 or 1 of 255, i.e. black; one whose values
        # are whole numbers is on the 0-255 scale and converts as PIL (and the original) converts it.
        image = _array_to_pil(np.asarray(image))
    # The original opened every image with .convert("RGB"): RGBA drops alpha, L/P/CMYK are mapped by PIL.
    return image.convert("RGB")


def _open_file(path: str | os.PathLike, max_pixels: int | None) -> Image.Image:
    name = os.fspath(path)
    if name.startswith(("http://", "https://")):
        # As transformers' processors do; a failed download names the URL instead of a missing local file.
        try:
            return load_url_image(name)
        except Exception as error:
            raise ValueError(
                f"Could not download image {name} ({type(error).__name__}: {error}). Download it yourself and pass "
                "the local file, or check the network."
            ) from error
    path = Path(name)
    if path.is_dir():
        raise IsADirectoryError(f"Image path is a folder, not an image file: {path}")
    if not path.exists():
        raise FileNotFoundError(f"Image file not found: {path}")
    if not path.is_file():
        raise ValueError(f"Image path is not a regular file (a device, a pipe or a socket): {path}")
    if path.stat().st_size == 0:
        raise ValueError(f"Image file is empty (0 bytes): {path}")
    try:
        with Image.open(path) as opened:
            _check_pixels(opened, max_pixels, str(path))
            opened.load()
            return opened.copy()
    except Image.DecompressionBombError as error:
        raise ValueError(f"Image {path} is too large to decode safely: {error}") from error
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise ValueError(f"Image {path} is not a readable image ({type(error).__name__}: {error}).") from error


def _check_pixels(image: Image.Image, max_pixels: int | None, name: str) -> None:
    if max_pixels is not None and image.width * image.height > max_pixels:
        raise ValueError(
            f"{name} has {image.width}x{image.height} = {image.width * image.height} pixels, more than the limit of "
            f"{max_pixels}; refusing to decode it (a possible decompression bomb). Raise max_image_pixels if it is "
            "genuine."
        )


def _check_working_pixels(image: Image.Image, max_pixels: int | None, do_pad: bool, shortest_edge: int | None) -> None:
    """Refuse an image whose square canvas (`do_pad`) or resized copy (shortest edge to `shortest_edge`) would hold
    more than `max_pixels`: a 1 x 60,000 strip has 60k pixels but pads to 3.6 G and resizes to 6.8 G."""
    if max_pixels is None:
        return
    short, long = sorted(image.size)
    if do_pad:
        working, step = (long, long), "padded to a square of"
    elif shortest_edge:
        working, step = (shortest_edge, round(long * shortest_edge / short)), "resized to"
    else:
        return
    if working[0] * working[1] > max_pixels:
        raise ValueError(
            f"Image of {image.width}x{image.height} pixels would be {step} {working[0]}x{working[1]} = "
            f"{working[0] * working[1]} pixels before it is cut to the model's input, more than the limit of "
            f"{max_pixels} (max_image_pixels). An image this elongated cannot be processed as the model expects: "
            "crop it, or raise max_image_pixels if the memory is there."
        )


def _is_unit_scaled(array: np.ndarray) -> bool:
    """Whether float pixel values are on the [0, 1] scale: all within it, and not all whole numbers."""
    finite = array[np.isfinite(array)]
    return finite.size > 0 and finite.min() >= 0 and finite.max() <= 1 and not np.array_equal(finite, np.rint(finite))


def _array_to_pil(array: np.ndarray, sixteen_bit: bool = False) -> Image.Image:
    if array.size == 0:
        raise ValueError(f"Image array is empty (shape {array.shape}).")
    if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[-1] not in (1, 3, 4):
        array = array.transpose(1, 2, 0)  # channels first -> channels last
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)):
        raise ValueError(
            f"Image array has shape {array.shape}; expected (H, W), (H, W, C) or (C, H, W) with C in 1, 3, 4. For a "
            "batch, pass a list of images (or a 4-D array, one image per row)."
        )
    if array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    elif np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise ValueError("Image array holds NaN or infinite values.")
        if array.min() < 0 or array.max() > 1:
            raise ValueError(
                f"Float image array has values in [{array.min():.3g}, {array.max():.3g}]; floats must be in [0, 1] "
                "(or pass uint8 values 0-255)."
            )
        array = np.rint(array * 255).astype(np.uint8)
    elif array.dtype != np.uint8:
        if not np.issubdtype(array.dtype, np.integer) or array.min() < 0 or array.max() > 65535:
            raise ValueError(
                f"Image array of dtype {array.dtype} with values in [{array.min()}, {array.max()}] is not an image: "
                "pass uint8 (0-255), uint16 (0-65535) or float values in [0, 1]."
            )
        sixteen_bit = sixteen_bit or (array.dtype.kind == "u" and array.dtype.itemsize == 2)
        if not sixteen_bit and array.max() > 255:
            # An int32/int64 array is 8-bit or 16-bit data by its maker's word only: a stray 256 in 8-bit data
            # would otherwise darken the whole image 257 times.
            raise ValueError(
                f"Image array of dtype {array.dtype} has values up to {array.max()}: is it 8-bit (0-255) or 16-bit "
                "(0-65535) data? Cast it to uint8 or uint16 to say which."
            )
        if sixteen_bit:
            # 16-bit data is scaled to 8 bits, not clipped.
            array = np.rint(array.astype(np.float64) * (255 / 65535))
        array = array.astype(np.uint8)
    return Image.fromarray(array)


__all__ = ["CLIPFlanT5ImageProcessor", "load_image"]
