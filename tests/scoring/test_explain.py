"""`VQAScore.explain`: every part of an explanation recomputed from `VQAScore.__call__` (word attributions,
sub-questions, occlusion cells), the trace's probabilities against the score, and heatmaps on the original pixel grid
(the crop undone: pixels the model never sees get exactly nothing)."""

import math

import numpy as np
import pytest
from PIL import Image

from tests.support.models import randomize
from transformers_clipflant5 import VQAScore
from transformers_clipflant5.scoring.explain import SUB_QUESTION_TEMPLATE, grid_cells, leave_one_out
from transformers_clipflant5.testing.tiny import build_tiny_model


TEXT = "a red  circle on\tthe left"


def random_image(height: int, width: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def scorer(tiny):
    model, processor = tiny
    return VQAScore(model=model, processor=processor)


@pytest.fixture(scope="module")
def explanation(scorer):
    return scorer.explain(
        random_image(30, 50),
        TEXT,
        top_k=4,
        sub_questions=["Is there a circle?", "Is the circle red?"],
        sub_captions=["a red circle", "a circle on the left"],
        grid=4,
    )


def test_every_word_attribution_is_the_log_score_without_that_word(scorer, explanation):
    image = random_image(30, 50)
    words = TEXT.split()
    assert [word for word, _ in explanation.word_attributions] == words
    full = float(scorer(image, TEXT).double().log())
    for index, (_, value) in enumerate(explanation.word_attributions):
        without = " ".join(words[:index] + words[index + 1 :])
        assert math.isclose(value, full - float(scorer(image, without).double().log()), rel_tol=0, abs_tol=1e-5)
    values = [value for _, value in explanation.word_attributions]
    # Words matter differently, by far more than the tolerance: a shifted or swapped entry would show.
    assert max(values) - min(values) > 1e-3


def test_leave_one_out_joins_the_other_words_by_single_spaces():
    assert leave_one_out(" a  big\tdog ") == ["big dog", "a dog", "a big"]


def test_one_word_text_has_nothing_left_to_score(scorer):
    result = scorer.explain(random_image(20, 20), "circle", heatmap=None)
    assert len(result.word_attributions) == 1 and math.isnan(result.word_attributions[0][1])
    assert result.heatmap is None and result.heatmap_method is None


def test_trace_gives_the_score(scorer, explanation):
    direct = float(scorer(random_image(30, 50), TEXT))
    assert math.isclose(explanation.score, direct, rel_tol=1e-5)
    # The trace is a separate forward pass (transformers' forward with labels): same score.
    assert math.isclose(explanation.trace_score, direct, rel_tol=1e-5)
    product = math.prod(token.probability for token in explanation.answer_tokens)
    assert math.isclose(product ** (1 / len(explanation.answer_tokens)), direct, rel_tol=1e-5)


def test_trace_lists_the_answer_tokens_and_their_alternatives(scorer, explanation):
    tokenizer = scorer.processor.tokenizer
    expected_ids = scorer.processor.encode_target(scorer.answer_template)
    assert [token.token_id for token in explanation.answer_tokens] == expected_ids
    assert [token.token for token in explanation.answer_tokens] == tokenizer.convert_ids_to_tokens(expected_ids)
    for token in explanation.answer_tokens:
        probabilities = [probability for _, probability in token.alternatives]
        assert len(token.alternatives) == 4 and probabilities == sorted(probabilities, reverse=True)
        assert 0 < token.probability <= probabilities[0] <= 1
        if token.token in dict(token.alternatives):
            assert math.isclose(dict(token.alternatives)[token.token], token.probability, rel_tol=1e-6)
        else:
            assert token.probability <= probabilities[-1]


def test_sub_questions_and_captions_score_as_direct_calls(scorer, explanation):
    image = random_image(30, 50)
    questions = [question for question, _ in explanation.sub_questions]
    direct = scorer([image] * 2, questions, question_template=SUB_QUESTION_TEMPLATE)
    assert np.allclose([score for _, score in explanation.sub_questions], direct.numpy(), rtol=1e-5, atol=0)
    captions = [caption for caption, _ in explanation.sub_captions]
    direct = scorer([image] * 2, captions)
    assert np.allclose([score for _, score in explanation.sub_captions], direct.numpy(), rtol=1e-5, atol=0)
    assert abs(explanation.sub_questions[0][1] - explanation.sub_questions[1][1]) > 1e-6


def test_occlusion_heatmap_covers_the_original_image_cell_by_cell(scorer, explanation):
    image = random_image(30, 50)
    assert explanation.heatmap_method == "occlusion"
    assert explanation.heatmap.shape == (30, 50) and explanation.heatmap.dtype == np.float32
    cells = grid_cells(30, 50, 4)
    assert len(cells) == 16
    full = float(scorer(image, TEXT).double().log())
    for top, bottom, left, right in cells[:3]:
        occluded = image.copy()
        occluded.paste((122, 116, 104), (left, top, right, bottom))  # the CLIP mean in 8 bits
        value = full - float(scorer(occluded, TEXT).double().log())
        cell = explanation.heatmap[top:bottom, left:right]
        assert np.allclose(cell, value, rtol=0, atol=1e-5)
    assert len({float(explanation.heatmap[top, left]) for top, _, left, _ in cells}) > 8


def test_grid_cells_partition_the_image():
    for height, width, grid in [(30, 50, 4), (3, 100, 8), (7, 7, 8)]:
        covered = np.zeros((height, width), dtype=int)
        for top, bottom, left, right in grid_cells(height, width, grid):
            assert bottom > top and right > left
            covered[top:bottom, left:right] += 1
        assert (covered == 1).all()


@pytest.mark.parametrize("method", ["occlusion", "gradient"])
def test_heatmap_undoes_the_crop(method):
    """Without padding, a 32 x 128 image is cut to its middle 32 x 32 columns (48 to 80): the heatmap over the
    original image is exactly 0 where the model never looks and not 0 where it does."""
    model, processor = build_tiny_model(seed=0, do_pad=False)
    scorer = VQAScore(randomize(model).eval(), processor)
    result = scorer.explain(random_image(32, 128, seed=1), "a red circle", heatmap=method, grid=8)
    assert result.heatmap.shape == (32, 128)
    outside = np.concatenate([result.heatmap[:, :40], result.heatmap[:, 88:]], axis=1)
    inside = result.heatmap[:, 48:80]
    assert np.abs(outside).max() < 1e-6
    assert (np.abs(inside) > 1e-6).mean() > 0.9


def test_gradient_heatmap_is_the_first_order_change_of_greying_out(scorer):
    """Greying out a small patch changes the log score by about the heatmap's sum over that patch."""
    image = random_image(30, 50, seed=2)
    result = scorer.explain(image, "a red circle", heatmap="gradient")
    assert result.heatmap.shape == (30, 50)
    assert not any(param.requires_grad is False for param in scorer.model.parameters())  # left as it was
    full = float(scorer(image, "a red circle").double().log())
    checked = 0
    for top, left in [(0, 0), (10, 20), (20, 40)]:
        occluded = image.copy()
        occluded.paste((122, 116, 104), (left, top, left + 2, top + 2))
        change = full - float(scorer(occluded, "a red circle").double().log())
        estimate = float(result.heatmap[top : top + 2, left : left + 2].sum())
        if abs(estimate) > 1e-4:
            checked += 1
            assert math.isclose(change, estimate, rel_tol=0.5, abs_tol=2e-4)
    assert checked >= 2


def test_bad_arguments_are_refused_with_a_reason(scorer):
    image = random_image(20, 20)
    with pytest.raises(ValueError, match="heatmap must be one of"):
        scorer.explain(image, "a dog", heatmap="saliency")
    with pytest.raises(ValueError, match="top_k must be a positive integer"):
        scorer.explain(image, "a dog", top_k=0)
    with pytest.raises(TypeError, match="sub_questions must be a list of strings"):
        scorer.explain(image, "a dog", sub_questions="Is there a dog?")
    with pytest.raises(ValueError, match="text is empty"):
        scorer.explain(image, "   ")
