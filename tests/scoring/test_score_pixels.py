"""VQAScore as a differentiable reward: `score_pixels` keeps the graph to the pixels (checked against finite
differences in fp64), equals `__call__` where no resize is needed and stays within a measured distance of the PIL path
elsewhere; frozen weights and gradient checkpointing; `rank` for best-of-N."""

import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from tests.support.models import randomize
from transformers_clipflant5 import VQAScore
from transformers_clipflant5.scoring.pixel_preprocessing import preprocess_pixels, resize
from transformers_clipflant5.testing.tiny import build_tiny_model, tiny_config, tiny_processor


TEXTS = ["a red circle on the left", "a blue square", "a green triangle on the top"]


def random_uint8(height: int, width: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def as_pixels(array: np.ndarray, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(3, H, W) floats in [0, 1] holding exactly the 8-bit values of `array`."""
    return torch.from_numpy(array).permute(2, 0, 1).to(dtype) / 255


@pytest.fixture(scope="module")
def scorer(tiny):
    model, processor = tiny
    return VQAScore(model=model, processor=processor)


def fresh_scorer(dtype: torch.dtype = torch.float32) -> VQAScore:
    """A scorer of its own (prepare_for_reward changes the model), with the `tiny` fixture's weights."""
    model, processor = build_tiny_model(seed=0)
    return VQAScore(randomize(model).eval().to(dtype), processor)


@pytest.mark.parametrize("size", [(32, 32), (32, 20), (20, 32), (32, 1)])
def test_equals_call_where_no_resize_is_needed(scorer, size):
    # The tower takes 32 x 32: a square image of that size, or one padded to it, is not resized.
    arrays = [random_uint8(*size, seed) for seed in range(len(TEXTS))]
    expected = scorer([Image.fromarray(array) for array in arrays], TEXTS)
    pixels = torch.stack([as_pixels(array) for array in arrays])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the shared fixture's weights are not frozen
        scores = scorer.score_pixels(pixels, TEXTS)
    assert scores.shape == (len(TEXTS),) and scores.requires_grad
    torch.testing.assert_close(scores.detach().log(), expected.log(), rtol=0, atol=1e-4)
    # The three images score differently by far more than the tolerance: a mix-up would show.
    assert (expected.log()[:, None] - expected.log()[None]).abs().sum() > 1e-2
    processed = preprocess_pixels(pixels, scorer.processor)
    torch.testing.assert_close(
        processed, scorer.processor.image_processor(arrays, return_tensors="pt")["pixel_values"], rtol=0, atol=1e-6
    )


@pytest.mark.parametrize("size", [(20, 40), (50, 30), (64, 64), (33, 33), (3, 5), (300, 200)])
def test_resized_inputs_stay_within_a_rounding_of_the_pil_path(tiny, size):
    """Where a resize is needed, the PIL path rounds each pass to 8 bits and the float path does not: at most about
    half a level per pass apart. With quantize=True the float path rounds too and matches PIL up to rare pixels."""
    _, processor = tiny
    arrays = [random_uint8(*size, seed) for seed in range(2)]
    expected = processor.image_processor(arrays, return_tensors="pt")["pixel_values"]
    std = torch.tensor(processor.image_processor.image_std).view(1, 3, 1, 1)
    pixels = [as_pixels(array) for array in arrays]
    smooth = (preprocess_pixels(pixels, processor) - expected) * std * 255  # in 8-bit levels
    assert smooth.abs().max() < 1.1 and smooth.abs().mean() < 0.35
    rounded = (preprocess_pixels(pixels, processor, quantize=True) - expected) * std * 255
    assert rounded.abs().max() < 1.01 and rounded.abs().mean() < 0.01


def test_resize_follows_pil_passes_clipping_and_order():
    """PIL resizes one axis, clips and rounds to 8 bits, then the other; which axis goes first depends on the sizes
    (and the Pillow version). Random noise overshoots a lot under bicubic, so a wrong order or clipping shows."""
    rng = np.random.default_rng(0)
    shapes = [(70, 33, 67, 32), (33, 70, 32, 67), (60, 50, 30, 40), (50, 60, 40, 30), (61, 191, 21, 171)]
    shapes += [tuple(int(v) for v in rng.integers(8, 120, 4)) for _ in range(20)]
    for height, width, new_height, new_width in shapes:
        array = random_uint8(height, width, seed=height * width)
        expected = np.asarray(Image.fromarray(array).resize((new_width, new_height), Image.BICUBIC), dtype=np.float64)
        # Unquantized, PIL's rounding after the first pass (half a level) is carried through the second pass's kernel,
        # whose absolute weights sum to up to ~1.25 for bicubic, plus the second rounding: 1.1 levels was exceeded
        # (1.101) with Pillow 12 on one shape.
        for quantize, max_levels, mean_levels in [(False, 1.2, 0.35), (True, 1.01, 0.01)]:
            resized = resize(as_pixels(array, torch.float64)[None], new_height, new_width, quantize=quantize)
            levels = np.abs(resized[0].permute(1, 2, 0).numpy() * 255 - expected)
            assert levels.max() < max_levels and levels.mean() < mean_levels, (height, width, new_height, quantize)


def test_stage_1_square_mode_resizes_the_shortest_edge_and_crops_as_pil(tiny):
    _, processor = tiny
    square = tiny_processor(processor.tokenizer, tiny_config(processor.tokenizer), do_pad=False)
    std = torch.tensor(square.image_processor.image_std).view(1, 3, 1, 1)
    for size in [(20, 45), (70, 33), (32, 32)]:
        arrays = [random_uint8(*size, seed=5)]
        processed = preprocess_pixels([as_pixels(arrays[0])], square, quantize=True)
        assert processed.shape == (1, 3, 32, 32)
        torch.testing.assert_close(
            processed,
            square.image_processor(arrays, return_tensors="pt")["pixel_values"],
            rtol=0,
            atol=1.01 / 255 / std.min(),
        )


def test_gradient_matches_finite_differences_in_fp64():
    scorer = fresh_scorer(torch.float64).prepare_for_reward()
    # A wide image: padded to 40 x 40, then resized to 32 x 32. Values away from 0 and 1, so that no clipping is hit.
    generator = torch.Generator().manual_seed(0)
    pixels = (0.3 + 0.4 * torch.rand(1, 3, 20, 40, generator=generator, dtype=torch.float64)).requires_grad_()

    def objective(values: torch.Tensor) -> torch.Tensor:
        return scorer.score_pixels(values, TEXTS[:1]).log().sum()

    objective(pixels).backward()
    gradient = pixels.grad
    assert torch.isfinite(gradient).all() and gradient.abs().max() > 0
    assert (gradient != 0).float().mean() > 0.9  # every pixel reaches the tower through the pad and resize
    assert all(param.grad is None for param in scorer.model.parameters())
    # transformers' T5LayerNorm computes its variance in fp32 even in an fp64 model: the objective carries ~1e-7
    # relative noise, so steps below ~1e-4 measure noise. Central differences with a step of 1e-2 on one pixel and
    # 1e-3 on all pixels at once (measured errors ~2e-4 and ~1e-3 relative) check the gradient well above the noise.
    rng = np.random.default_rng(0)
    points = [tuple(int(i) for i in np.unravel_index(int(gradient.abs().argmax()), gradient.shape))]
    points += [(0, int(rng.integers(3)), int(rng.integers(20)), int(rng.integers(40))) for _ in range(3)]
    steps = []
    for point in points:
        direction = torch.zeros_like(pixels)
        direction[point] = 1e-2
        steps.append(direction)
    steps.append(torch.from_numpy(rng.choice([-1e-3, 1e-3], size=pixels.shape)))
    with torch.no_grad():
        for step in steps:
            analytic = (gradient * step).sum() / step.abs().max()
            numeric = (objective(pixels + step) - objective(pixels - step)) / (2 * step.abs().max())
            assert abs(analytic) > 1e-6
            torch.testing.assert_close(analytic, numeric, rtol=5e-3, atol=1e-3 * gradient.abs().max())


def test_preprocessing_passes_gradcheck(tiny):
    _, processor = tiny
    generator = torch.Generator().manual_seed(0)
    for height, width in [(7, 11), (45, 38), (32, 32)]:
        pixels = 0.3 + 0.4 * torch.rand(1, 3, height, width, generator=generator, dtype=torch.float64)
        assert torch.autograd.gradcheck(
            lambda values: preprocess_pixels(values, processor), (pixels.requires_grad_(),), fast_mode=True
        )


def test_quantize_passes_gradients_straight_through(tiny):
    """quantize=True rounds the forward pass to 8-bit levels and leaves the backward pass as if it did not: away from
    clipping the preprocessing is linear, so its gradient equals the unrounded path's (rounding itself has none)."""
    _, processor = tiny
    generator = torch.Generator().manual_seed(1)
    pixels = 0.3 + 0.4 * torch.rand(1, 3, 20, 45, generator=generator, dtype=torch.float64)
    weights = None
    outputs, gradients = [], []
    for quantize in (False, True):
        values = pixels.clone().requires_grad_()
        output = preprocess_pixels(values, processor, quantize=quantize)
        if weights is None:
            weights = torch.randn(output.shape, generator=generator, dtype=output.dtype)
        (output * weights).sum().backward()
        outputs.append(output.detach())
        gradients.append(values.grad)
    assert not torch.equal(outputs[0], outputs[1])  # the forward pass is rounded
    assert gradients[1].abs().max() > 0
    torch.testing.assert_close(gradients[1], gradients[0], rtol=1e-9, atol=1e-12)


def test_a_list_of_mixed_sizes_scores_each_image_as_alone(scorer):
    sizes = [(20, 40), (32, 32), (50, 30)]
    pixels = [as_pixels(random_uint8(*size, seed)) for seed, size in enumerate(sizes)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        together = scorer.score_pixels(pixels, TEXTS).detach()
        alone = torch.cat([scorer.score_pixels([image], [text]).detach() for image, text in zip(pixels, TEXTS)])
        # The same tensor twice in a list (encoded once) with two texts.
        repeated = scorer.score_pixels([pixels[0], pixels[0]], TEXTS[:2]).detach()
        batched = scorer.score_pixels(torch.stack([pixels[1]] * 2), TEXTS[1:]).detach()
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=0)
    torch.testing.assert_close(repeated[0], together[0], rtol=1e-5, atol=0)
    torch.testing.assert_close(batched[0], together[1], rtol=1e-5, atol=0)
    assert abs(repeated[1] - together[0]) > 1e-7  # another text, another score


def test_frozen_weights_checkpointing_and_autocast():
    scorer = fresh_scorer()
    pixels = torch.stack([as_pixels(random_uint8(40, 40, seed)) for seed in range(2)])
    with pytest.warns(UserWarning, match="prepare_for_reward"):
        scorer.score_pixels(pixels, TEXTS[:2])
    vision_mlp = scorer.model.model.vision_tower.encoder.layers[0].mlp
    text_ff = scorer.model.model.language_model.encoder.block[0].layer[-1]
    # Pre-hooks: a checkpointed recomputation stops once it has rebuilt the tensors backward needs, which can be
    # before a sub-module returns (its forward hook would not fire).
    calls = {"vision": 0, "text": 0}
    vision_mlp.register_forward_pre_hook(lambda *_: calls.__setitem__("vision", calls["vision"] + 1))
    text_ff.register_forward_pre_hook(lambda *_: calls.__setitem__("text", calls["text"] + 1))

    def gradient(checkpointing, autocast_dtype=None):
        scorer.prepare_for_reward(checkpointing)
        leaf = pixels.clone().requires_grad_()
        calls.update(vision=0, text=0)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # frozen: no warning about weight gradients
            scores = scorer.score_pixels(leaf, TEXTS[:2], autocast_dtype=autocast_dtype)
        scores.log().sum().backward()
        return scores.detach(), leaf.grad, dict(calls)

    reference, reference_grad, reference_calls = gradient(False)
    assert reference_calls == {"vision": 1, "text": 1}  # no recomputation without checkpointing
    for checkpointing, recomputed in [(True, {"vision": 2, "text": 2}), ("vision", {"vision": 2, "text": 1})]:
        scores, grad, counted = gradient(checkpointing)
        assert counted == recomputed  # the checkpointed layers run again in the backward pass
        torch.testing.assert_close(scores, reference, rtol=1e-6, atol=0)
        torch.testing.assert_close(grad, reference_grad, rtol=1e-4, atol=1e-6 * reference_grad.abs().max())
    assert not any(module.training for module in scorer.model.modules())  # checkpointed layers marked back
    assert all(not param.requires_grad and param.grad is None for param in scorer.model.parameters())

    scores, grad, _ = gradient(True, torch.bfloat16)
    assert scores.dtype == torch.float32 and torch.isfinite(grad).all() and grad.abs().max() > 0
    torch.testing.assert_close(scores.log(), reference.log(), rtol=0, atol=0.05)
    # Cosine similarity of the bf16 and fp32 gradients: the same direction, up to bf16's precision.
    assert torch.nn.functional.cosine_similarity(grad.flatten(), reference_grad.flatten(), dim=0) > 0.9
    by_name, grad_by_name, _ = gradient(True, "bfloat16")  # the dtype's name, as from_pretrained takes it
    assert torch.equal(by_name, scores) and torch.equal(grad_by_name, grad)


def test_rank_orders_images_best_first(scorer):
    arrays = [random_uint8(24, 36, seed) for seed in range(4)]
    images = [Image.fromarray(array) for array in arrays] + [Image.fromarray(arrays[1])]
    ranking = scorer.rank(images, TEXTS[0])
    expected = scorer(images, [TEXTS[0]] * len(images))
    torch.testing.assert_close(ranking.scores, expected, rtol=0, atol=0)
    assert sorted(ranking.order.tolist()) == list(range(5))
    assert (ranking.scores[ranking.order].diff() <= 0).all()
    # Images 1 and 4 are the same picture: equal scores keep their input order.
    order = ranking.order.tolist()
    assert ranking.scores[1] == ranking.scores[4] and order.index(1) < order.index(4)
    # A float batch tensor ranks as its 8-bit images do.
    from_tensor = scorer.rank(torch.stack([as_pixels(array) for array in arrays]), TEXTS[0])
    assert from_tensor.order.tolist() == [i for i in order if i != 4]


def test_bad_pixels_raise_with_a_message_that_names_the_problem(scorer):
    image = torch.rand(3, 32, 32)
    cases = [
        ((image, TEXTS[:1]), ValueError, r"\(N, 3, H, W\)"),
        (((image * 255).byte()[None], TEXTS[:1]), TypeError, "floats in \\[0, 1\\]"),
        ((image[None] * 2, TEXTS[:1]), ValueError, "must lie in \\[0, 1\\]"),
        ((torch.full((1, 3, 4, 4), float("nan")), TEXTS[:1]), ValueError, "must lie in \\[0, 1\\]"),
        ((torch.rand(1, 4, 32, 32), TEXTS[:1]), ValueError, r"shape \(3, H, W\)"),
        (([image, image[None]], TEXTS[:2]), ValueError, r"pixels\[1\] must be a \(3, H, W\) tensor"),
        ((image[None], TEXTS[:2]), ValueError, "one text per image"),
        ((image[None], ["<image> here"]), ValueError, "<image>"),
        (("cat.png", TEXTS[:1]), TypeError, "tensor or a list of tensors"),
    ]
    for arguments, error, message in cases:
        with pytest.raises(error, match=message):
            scorer.score_pixels(*arguments)
    with pytest.raises(ValueError, match="gradient_checkpointing"):
        scorer.prepare_for_reward("both")
    with pytest.raises(TypeError, match="one text"):
        scorer.rank([image], TEXTS)
