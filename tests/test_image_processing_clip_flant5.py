"""CLIPFlanT5ImageProcessor and its image loader."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from tests.support.images import make_images
from tests.support.original_reference import _original_pixels
from transformers_clipflant5.image_processing_clip_flant5 import CLIPFlanT5ImageProcessor, flatten_images, load_image


# ====================================================================================================================
# Reliability (issue 11): every input is opened as the right 8-bit RGB image or refused with a clear error. The
# loader's parity with the original image path is tested in its own block.


def test_16_bit_grey_png_is_scaled_not_clipped(tmp_path):
    ramp = np.linspace(0, 65535, 64 * 32).reshape(32, 64).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "grey16.png")
    with Image.open(tmp_path / "grey16.png") as opened:
        assert opened.mode.startswith("I")  # PIL reads 16-bit PNGs as I;16 (or I)
    pixels = np.asarray(load_image(tmp_path / "grey16.png"))
    expected = np.rint(ramp * (255 / 65535)).astype(np.uint8)
    assert pixels.shape == (32, 64, 3)
    assert np.array_equal(pixels[..., 0], expected) and np.array_equal(pixels[..., 2], expected)
    # Clipping would have made almost every pixel 255.
    assert (pixels == 255).mean() < 0.01


def test_channels_first_arrays_and_tensors_are_transposed():
    rng = np.random.default_rng(0)
    hwc = rng.integers(0, 256, (12, 20, 3), dtype=np.uint8)
    expected = np.asarray(load_image(hwc))
    assert np.array_equal(np.asarray(load_image(hwc.transpose(2, 0, 1))), expected)
    assert np.array_equal(np.asarray(load_image(torch.from_numpy(hwc).permute(2, 0, 1))), expected)
    assert np.array_equal(np.asarray(load_image(hwc.astype(np.float32) / 255)), expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_float_tensors_of_every_precision_load(dtype):
    chw = torch.linspace(0, 1, 3 * 4 * 6).reshape(3, 4, 6)
    expected = np.asarray(load_image(chw))
    assert np.abs(np.asarray(load_image(chw.to(dtype))).astype(int) - expected).max() <= 2


def test_four_d_arrays_are_split_into_images():
    batch = np.random.default_rng(1).integers(0, 256, (3, 10, 14, 3), dtype=np.uint8)
    images = flatten_images(batch)
    assert len(images) == 3
    assert all(np.array_equal(np.asarray(load_image(image)), batch[index]) for index, image in enumerate(images))


@pytest.mark.parametrize(
    "array, message",
    [
        (np.zeros(10, dtype=np.uint8), r"shape \(10,\)"),
        (np.zeros((5, 6, 2), dtype=np.uint8), r"shape \(5, 6, 2\)"),
        (np.zeros((0, 5, 3), dtype=np.uint8), "empty"),
        (np.full((4, 4, 3), 2.0), r"floats must be in \[0, 1\]"),
        (np.full((4, 4), np.nan, dtype=np.float32), "NaN"),
        (np.full((4, 4), -3, dtype=np.int16), "is not an image"),
        (torch.empty(3, 4, 4, device="meta"), "meta device"),
    ],
)
def test_unusable_arrays_are_refused(array, message):
    with pytest.raises(ValueError, match=message):
        load_image(array)


def test_wide_integer_arrays_are_8_bit_unless_their_values_say_otherwise():
    """int32/int64 arrays (numpy's default for Python ints) up to 255 are 8-bit data; a value above 255 makes the
    bit depth ambiguous (a stray 256 read as 16-bit would darken the image 257 times), so it is refused."""
    eight_bit = np.random.default_rng(2).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    for dtype in (np.int32, np.int64):
        assert np.array_equal(np.asarray(load_image(eight_bit.astype(dtype))), eight_bit)
        stray = eight_bit.astype(dtype)
        stray[0, 0, 0] = 256
        with pytest.raises(ValueError, match="Cast it to uint8 or uint16"):
            load_image(stray)
    sixteen_bit = (eight_bit.astype(np.uint16) * 257).astype(np.uint16)
    assert np.array_equal(np.asarray(load_image(sixteen_bit)), eight_bit)


def test_float_images_in_the_unit_range_are_not_turned_black(tmp_path):
    """A mode-F image (a float TIFF, say) with values in [0, 1] loads as the same values in an array do; PIL's own
    conversion would clip them to 0 or 1 of 255. One with whole-number values is on the 0-255 scale (as a converted
    8-bit image is) and converts as PIL converts it."""
    unit = np.random.default_rng(3).random((10, 12), dtype=np.float32)
    Image.fromarray(unit, mode="F").save(tmp_path / "unit.tif")
    expected = np.rint(unit * 255).astype(np.uint8)
    for image in (tmp_path / "unit.tif", Image.fromarray(unit, mode="F")):
        pixels = np.asarray(load_image(image))
        assert np.array_equal(pixels[..., 0], expected) and np.array_equal(pixels[..., 1], expected)
    grey = np.random.default_rng(4).integers(0, 256, (10, 12), dtype=np.uint8)
    as_float = Image.fromarray(grey).convert("F")
    assert np.array_equal(np.asarray(load_image(as_float)), np.asarray(as_float.convert("RGB")))
    assert np.array_equal(np.asarray(load_image(as_float))[..., 0], grey)


@pytest.mark.parametrize("do_pad", [True, False])
def test_elongated_images_are_refused_before_they_take_the_memory(do_pad):
    """A 1 x 60,000 strip has 60k pixels, far under the decompression-bomb limit, but padding it to square takes
    3.6 G pixels (10 GiB) and resizing its short side to 336 takes 6.8 G: refused, naming the size. A less extreme
    strip is processed."""
    processor = CLIPFlanT5ImageProcessor(do_pad=do_pad)
    step = "padded to a square of 60000x60000" if do_pad else "resized to 336x20160000"
    with pytest.raises(ValueError, match=f"Image of 1x60000 pixels would be {step}"):
        processor(Image.new("RGB", (1, 60000)), return_tensors="pt")
    pixels = processor(Image.new("RGB", (40, 4000)), return_tensors="pt")["pixel_values"]
    assert pixels.shape == (1, 3, 336, 336)


def test_a_url_that_cannot_be_downloaded_is_named():
    # The .invalid top-level domain never resolves (RFC 2606), with or without a network.
    url = "https://images.example.invalid/cat.png"
    with pytest.raises(ValueError, match=f"Could not download image {url}"):
        load_image(url)


def test_files_that_are_not_images_are_named(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(ValueError, match="empty.png"):
        load_image(tmp_path / "empty.png")
    with pytest.raises(ValueError, match="text.png is not a readable image"):
        load_image(tmp_path / "text.png")
    with pytest.raises(FileNotFoundError, match="missing.png"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(ValueError, match="not a regular file .*: /dev/null"):
        load_image("/dev/null")


# Fuzzing: arrays of any dtype and small shape, and random bytes as files. Each becomes an 8-bit RGB image or is
# refused with a ValueError or TypeError naming the problem; nothing else escapes.

array_dtypes = st.sampled_from(["uint8", "uint16", "int32", "int64", "float16", "float32", "float64", "bool", ">u2"])
arrays = array_dtypes.flatmap(
    lambda dtype: hnp.arrays(
        np.dtype(dtype),
        hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=6),
        elements=None if dtype == "bool" else {"allow_nan": True} if dtype.startswith("float") else None,
    )
)


@settings(max_examples=60, deadline=None)
@given(
    hnp.arrays(np.uint8, st.tuples(st.integers(1, 6), st.integers(1, 6), st.sampled_from([1, 3, 4]))),
    st.sampled_from(["hwc", "chw", "float"]),
)
def test_fuzzed_valid_arrays_load_as_their_pixels(hwc, layout):
    """The fuzz tests below accept any clear refusal; valid arrays must load, with their own pixels."""
    array = {"hwc": hwc, "chw": hwc.transpose(2, 0, 1), "float": hwc.astype(np.float64) / 255}[layout]
    if layout == "chw" and hwc.shape[1] in (1, 3, 4):
        return  # (C, H, W) with W in 1, 3, 4 reads as (H, W, C): ambiguous, not a valid input to check here
    image = np.asarray(load_image(array))
    expected = {1: np.repeat(hwc, 3, axis=2), 3: hwc, 4: hwc[..., :3]}[hwc.shape[2]]
    assert np.array_equal(image, expected)


@settings(max_examples=150, deadline=None)
@given(arrays)
def test_fuzzed_arrays_load_or_are_refused(array):
    try:
        image = load_image(array)
    except (ValueError, TypeError) as error:
        assert str(error)
        return
    assert image.mode == "RGB" and image.width > 0 and image.height > 0


@settings(max_examples=60, deadline=None)
@given(arrays.filter(lambda a: a.ndim in (2, 3)), st.sampled_from([torch.float32, torch.bfloat16, torch.float16]))
def test_fuzzed_tensors_load_or_are_refused(array, dtype):
    try:
        tensor = torch.from_numpy(np.ascontiguousarray(array).astype(np.float32)).to(dtype)
    except (TypeError, ValueError):
        return
    try:
        image = load_image(tensor)
    except (ValueError, TypeError) as error:
        assert str(error)
        return
    assert image.mode == "RGB"


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=200), st.sampled_from([".png", ".jpg", ".gif", ".tif", ".webp", ""]))
def test_fuzzed_files_load_or_are_refused_by_name(tmp_path_factory, data, suffix):
    path = tmp_path_factory.mktemp("fuzz") / f"image{suffix}"
    path.write_bytes(data)
    try:
        image = load_image(path)
    except ValueError as error:
        assert str(path) in str(error) or "pixels" in str(error)
        return
    assert image.mode == "RGB"


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(["I;16", "I;16B", "I", "F", "L", "LA", "P", "1", "CMYK", "YCbCr", "HSV", "RGBA"]))
def test_every_pil_mode_becomes_8_bit_rgb(mode):
    image = Image.new(mode, (5, 4))
    loaded = load_image(image)
    assert loaded.mode == "RGB" and loaded.size == (5, 4)


# ====================================================================================================================
# Defaults: a processor built without settings preprocesses as the released checkpoints did.


def test_the_default_settings_are_the_released_checkpoints_preprocessing():
    """No settings: CLIP ViT-L/14-336 preprocessing padded to square (what the stage-2 checkpoints and VQAScore use,
    and what `original_image_processor` builds for `openai/clip-vit-large-patch14-336`), pixel for pixel."""
    processor = CLIPFlanT5ImageProcessor()
    assert processor.do_pad is True
    for image in make_images([(20, 40), (50, 30)], seed=6):
        pixels = processor(image, return_tensors="pt")["pixel_values"][0]
        torch.testing.assert_close(pixels, _original_pixels(image, 336, pad=True), rtol=0, atol=1e-6)
