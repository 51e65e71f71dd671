"""What VQAScore accepts before any model work: a single pair without lists, and texts within the tokenizer's limit
(refused with the count and the limit, or cut to fit with truncate_texts)."""

import numpy as np
import pytest
import torch

from transformers_clipflant5 import VQAScore
from transformers_clipflant5.scoring.prompts import fit_text, token_limit
from transformers_clipflant5.scoring.vqascore import DEFAULT_ANSWER_TEMPLATE, DEFAULT_QUESTION_TEMPLATE


class ModelWork(Exception):
    """Raised by a hook on the vision tower: the call reached the model."""


@pytest.fixture
def scorer(tiny):
    model, processor = tiny
    return VQAScore(model=model, processor=processor)


@pytest.fixture
def limit(tiny, monkeypatch):
    """A model_max_length that leaves the tiny tokenizer about 40 tokens for the text itself."""
    _, processor = tiny
    overhead = len(processor.encode_prompt(processor.chat_prompt(DEFAULT_QUESTION_TEMPLATE.format("")))) - (
        processor.image_seq_length
    )
    monkeypatch.setattr(processor.tokenizer, "model_max_length", overhead + 40)
    return overhead + 40


def test_a_single_pair_needs_no_lists(scorer, images):
    single = scorer(images[0], "a red circle")
    assert single.shape == (1,)
    assert torch.equal(single, scorer([images[0]], ["a red circle"]))
    matrix = scorer.score_matrix(images[0], ["a red circle", "a cat"])
    assert matrix.shape == (1, 2)
    assert torch.equal(matrix[0, :1], single)


def test_wrong_container_is_named(scorer, images):
    with pytest.raises(TypeError, match="texts must be a list"):
        scorer([images[0]], {"text": "a cat"})
    with pytest.raises(ValueError, match="Got 1 images and 2 texts"):
        scorer(images[0], ["a", "b"])


def image_pixels(image) -> torch.Tensor:
    """A PIL image as the float (1, 3, H, W) tensor in [0, 1] that score_pixels takes."""
    return torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1)[None].float() / 255


def test_generate_and_score_pixels_take_one_item_without_lists(scorer, images):
    """A bare string is one prompt or text, as in __call__ (it was taken character by character)."""
    question = "What is in the image?"
    assert scorer.generate(images[0], question, max_new_tokens=3) == scorer.generate(
        [images[0]], [question], max_new_tokens=3
    )
    pixels = image_pixels(images[0])
    with torch.no_grad():
        single = scorer.score_pixels(pixels, "ab")
        assert single.shape == (1,)
        assert torch.equal(single, scorer.score_pixels(pixels, ["ab"]))
        with pytest.raises(ValueError, match="2 images"):
            scorer.score_pixels(torch.cat([pixels, pixels]), "ab")


def test_generate_and_score_pixels_refuse_over_long_texts_or_cut_them(scorer, tiny, images, limit):
    _, processor = tiny
    long_text = "a red circle on the left " * 40
    with pytest.raises(ValueError, match=r"prompts\[0\] makes a prompt of \d+ text tokens, more than the limit"):
        scorer.generate([images[0]], [long_text], max_new_tokens=2)
    cut_prompt = fit_text(processor, long_text, "p", "{}", None, truncate=True)
    assert long_text.startswith(cut_prompt) and len(cut_prompt) < len(long_text)
    assert scorer.generate([images[0]], [long_text], max_new_tokens=2, truncate_prompts=True) == scorer.generate(
        [images[0]], [cut_prompt], max_new_tokens=2
    )
    pixels = image_pixels(images[0])
    with torch.no_grad():
        with pytest.raises(ValueError, match=r"texts\[0\] makes a prompt of \d+ text tokens, more than the limit"):
            scorer.score_pixels(pixels, [long_text])
        cut = fit_text(processor, long_text, "t", DEFAULT_QUESTION_TEMPLATE, DEFAULT_ANSWER_TEMPLATE, truncate=True)
        assert torch.equal(
            scorer.score_pixels(pixels, [long_text], truncate_texts=True), scorer.score_pixels(pixels, [cut])
        )


def test_a_question_template_over_the_limit_is_blamed_not_the_text(scorer, images, limit):
    template = "Is this " + "really " * limit + '"{}" here?'
    with pytest.raises(ValueError, match="The question template alone makes a prompt of"):
        scorer([images[0]], ["a cat"], question_template=template)


def test_unset_limit_is_no_limit(tiny):
    _, processor = tiny
    # The tiny tokenizer declares no model_max_length (transformers' placeholder for "none").
    assert token_limit(processor) is None
    text = "word " * 3000
    assert fit_text(processor, text, "t", DEFAULT_QUESTION_TEMPLATE, DEFAULT_ANSWER_TEMPLATE) == text


def test_over_long_text_is_refused_before_model_work(scorer, images, limit):
    def refuse(*args):
        raise ModelWork

    handle = scorer.model.model.vision_tower.register_forward_pre_hook(refuse)
    try:
        long_text = "a red circle on the left " * 40
        with pytest.raises(
            ValueError, match=rf"texts\[1\] makes a prompt of \d+ text tokens, more than the limit of {limit}"
        ):
            scorer([images[0], images[1]], ["a cat", long_text])
        # The same pair within the limit does reach the model.
        with pytest.raises(ModelWork):
            scorer([images[0]], ["a cat"])
    finally:
        handle.remove()


def test_a_prompt_of_exactly_the_limit_fits_and_one_token_more_does_not(tiny, limit):
    _, processor = tiny

    def text_tokens(text: str) -> int:  # the prompt's tokens but the image placeholders, as the limit counts them
        ids = processor.encode_prompt(processor.chat_prompt(DEFAULT_QUESTION_TEMPLATE.format(text)))
        return len(ids) - processor.image_seq_length

    candidates = [" ".join(["red"] * words) + tail for words in range(1, 80) for tail in ("", " a", " x y")]
    exact = next(text for text in candidates if text_tokens(text) == limit)
    over = next(text for text in candidates if text_tokens(text) == limit + 1)
    assert fit_text(processor, exact, "t", DEFAULT_QUESTION_TEMPLATE, DEFAULT_ANSWER_TEMPLATE) == exact
    with pytest.raises(
        ValueError, match=rf"t makes a prompt of {limit + 1} text tokens, more than the limit of {limit}"
    ):
        fit_text(processor, over, "t", DEFAULT_QUESTION_TEMPLATE, DEFAULT_ANSWER_TEMPLATE)


def test_truncate_texts_cuts_only_the_text(scorer, tiny, images, limit):
    _, processor = tiny
    long_text = "a red circle on the left " * 40
    cut = fit_text(processor, long_text, "t", DEFAULT_QUESTION_TEMPLATE, DEFAULT_ANSWER_TEMPLATE, truncate=True)
    assert long_text.startswith(cut) and len(cut) < len(long_text)
    prompt_ids = processor.encode_prompt(processor.chat_prompt(DEFAULT_QUESTION_TEMPLATE.format(cut)))
    text_tokens = len(prompt_ids) - prompt_ids.count(processor.image_token_id)
    assert limit - 3 <= text_tokens <= limit
    # Scoring with truncate_texts scores the cut text, not something else.
    truncated = scorer([images[0]], [long_text], truncate_texts=True)
    assert torch.equal(truncated, scorer([images[0]], [cut]))
    assert torch.equal(scorer.score_matrix(images[0], long_text, truncate_texts=True), truncated.view(1, 1))


def test_an_answer_longer_than_the_limit_is_refused(scorer, tiny, images, limit):
    # The prompt check alone would let through an answer_template that makes the decoder target longer than the
    # limit: the text fits the question, but the answer repeats it after a long preamble. The preamble is sized so
    # that the answer with a short text fits and the one with the longer text does not.
    _, processor = tiny
    text = "a red circle on the left " * 3

    def answer_template(words: int) -> str:
        return "Yes, " + "indeed " * words + "{}"

    words = next(w for w in range(400) if len(processor.encode_target(answer_template(w).format(text))) > limit)
    template = answer_template(words)
    target_tokens = len(processor.encode_target(template.format(text)))
    assert len(processor.encode_target(template.format("a cat"))) <= limit
    assert scorer([images[0]], ["a cat"], answer_template=template).shape == (1,)
    with pytest.raises(ValueError, match=rf"The answer for texts\[1\] is {target_tokens} tokens long, .* {limit} "):
        scorer([images[0], images[1]], ["a cat", text], answer_template=template)


def test_a_question_template_longer_than_the_limit_cannot_be_cut_to_fit(tiny, limit):
    # With truncate=True only the text is cut; a question whose fixed words alone pass the limit leaves nothing to
    # keep, and must be refused rather than scored as an empty text.
    _, processor = tiny
    question_template = "Look closely at every part of the figure before you answer. " * 6 + '"{}"?'
    with pytest.raises(ValueError, match=r"texts\[2\] cannot be cut to fit: the question template alone takes"):
        fit_text(processor, "a red circle", "texts[2]", question_template, DEFAULT_ANSWER_TEMPLATE, truncate=True)
    # A long text under the default question is cut, not refused: the refusal is the template's doing.
    cut = fit_text(
        processor, "a red circle " * 40, "t", DEFAULT_QUESTION_TEMPLATE, DEFAULT_ANSWER_TEMPLATE, truncate=True
    )
    assert cut


def test_refusing_an_over_long_text_leaves_no_tokenizer_warning(caplog):
    from transformers.utils import logging as transformers_logging

    from transformers_clipflant5.testing.demo import DEMO_MODEL, FLANT5_MAX_LENGTH, build_demo_tokenizer
    from transformers_clipflant5.testing.tiny import tiny_config, tiny_processor

    tokenizer = build_demo_tokenizer()
    processor = tiny_processor(tokenizer, tiny_config(tokenizer, **DEMO_MODEL))
    # The demo model declares FlanT5's limit (it declared none: no text was ever refused).
    assert token_limit(processor) == FLANT5_MAX_LENGTH
    text = "a red circle on the left " * 1100  # 27,500 characters
    transformers_logging.enable_propagation()
    try:
        with caplog.at_level("WARNING"):
            with pytest.raises(ValueError, match="more than the limit of 512"):
                fit_text(processor, text, "the text", DEFAULT_QUESTION_TEMPLATE, DEFAULT_ANSWER_TEMPLATE)
            cut = fit_text(processor, text, "t", DEFAULT_QUESTION_TEMPLATE, DEFAULT_ANSWER_TEMPLATE, truncate=True)
    finally:
        transformers_logging.disable_propagation()
    assert text.startswith(cut) and len(cut) < len(text)
    # Our refusal (or cut) is the message: transformers' "Token indices sequence length is longer" is not repeated.
    assert not [record for record in caplog.records if "Token indices" in record.getMessage()]
