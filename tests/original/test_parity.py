"""Our model and processor, loaded from a checkpoint in the ORIGINAL layout, against a naive re-implementation of the
original procedure (tests/support/original_reference.py): same token ids, same pixels, same scores, same greedy
answers."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import T5Tokenizer

from tests.support.images import make_images
from tests.support.original_reference import (
    QUESTION,
    SYSTEM,
    NaiveOriginal,
    _original_pixels,
    save_original_checkpoint,
    vqa_prompt,
)
from tests.support.paths import REPO_ROOT
from transformers_clipflant5 import CLIPFlanT5ForConditionalGeneration, CLIPFlanT5Processor
from transformers_clipflant5.original import config_from_original
from transformers_clipflant5.scoring.vqascore import DEFAULT_QUESTION_TEMPLATE
from transformers_clipflant5.testing.tiny import train_tiny_sentencepiece


TEXTS = [
    "a red circle",
    "a blue square on the left of the image, next to a small green triangle",
    "x",
    "  two  spaces\tand a tab  ",
    "",
    # Beyond ASCII: curly quotes, accents, a dash, characters outside the tiny vocabulary (unknown pieces).
    "\u201ccurly\u201d caf\u00e9 na\u00efve \u2014 \u6f22\u5b57 \U0001f600",
]


@pytest.fixture(scope="module")
def loaded(original_folder):
    model = CLIPFlanT5ForConditionalGeneration.from_pretrained(original_folder)
    processor = CLIPFlanT5Processor.from_pretrained(original_folder)
    return model, processor, NaiveOriginal(original_folder)


def answer_scores(model, batch) -> torch.Tensor:
    """exp(-mean CE over the answer tokens) per row, from one batched forward of our model."""
    with torch.no_grad():
        logits = model(**batch).logits.float()
    labels = batch["labels"]
    mask = labels.ne(-100)
    token_logp = torch.log_softmax(logits, -1).gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return ((token_logp * mask).sum(1) / mask.sum(1)).exp()


def test_original_config_is_translated(loaded, tiny):
    model, processor, _ = loaded
    reference_model, _ = tiny
    assert model.config.model_type == "clip_flant5"
    assert model.config.image_seq_length == reference_model.config.image_seq_length
    assert processor.image_processor.do_pad is True  # the config says image_aspect_ratio "pad"
    assert not model.config.text_config.scale_decoder_outputs
    # <image> gets the first id after FlanT5's vocabulary and sentinels, for the model and the processor alike.
    assert model.config.image_token_id == processor.image_token_id == len(processor.tokenizer) - 1
    for name, tensor in reference_model.state_dict().items():
        assert torch.equal(model.state_dict()[name], tensor), name
    assert model.lm_head.weight.data_ptr() != model.get_input_embeddings().weight.data_ptr()


def test_token_ids_match_per_chunk_sentencepiece(loaded):
    _, processor, naive = loaded
    for text in TEXTS:
        prompt = vqa_prompt(text)
        before, after = prompt.split("<image>")
        expected = naive.tokenize(before) + [processor.image_token_id] * processor.image_seq_length
        expected += naive.tokenize(after)
        assert processor.encode_prompt(prompt) == expected
    assert processor.encode_target("Yes") == naive.tokenize("Yes")
    # An empty chunk is just </s>: "<image>" alone is [</s>] + placeholders + [</s>].
    assert processor.encode_prompt("<image>") == [1] + [processor.image_token_id] * processor.image_seq_length + [1]


ODD_SIZES = [(20, 40), (50, 30), (33, 33), (7, 90), (91, 3), (1, 1)]


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "LA", "P", "CMYK", "1", "F"])
@pytest.mark.parametrize("pad", [True, False])
def test_pixels_match_original(loaded, mode, pad):
    """The image processor (pad to square with the mean colour, PIL resize and crop) gives the original's pixels on
    odd sizes and every image mode PIL converts to RGB."""
    _, processor, naive = loaded
    image_processor = type(processor.image_processor)(**{**processor.image_processor.to_dict(), "do_pad": pad})
    for image in make_images(ODD_SIZES, seed=1):
        converted = image.convert(mode)
        ours = image_processor(converted, return_tensors="pt")["pixel_values"][0]
        theirs = _original_pixels(converted, naive.image_size, pad=pad)
        assert torch.allclose(ours, theirs, atol=1e-6), (mode, image.size)


def test_sixteen_bit_images_are_scaled_not_clipped(loaded):
    """The original's convert("RGB") clipped 16-bit greys at 255 (a bright image became white); we scale them to 8
    bits, so a 16-bit image gives the pixels of its 8-bit version."""
    _, processor, naive = loaded
    for image in make_images(ODD_SIZES[:3], seed=2):
        grey = np.asarray(image.convert("L"))
        sixteen = Image.fromarray(grey.astype("uint16") * 257)
        assert sixteen.mode == "I;16"
        ours = processor.image_processor(sixteen, return_tensors="pt")["pixel_values"][0]
        assert torch.allclose(ours, _original_pixels(Image.fromarray(grey), naive.image_size, pad=True), atol=1e-6)
        clipped = _original_pixels(sixteen, naive.image_size, pad=True)
        assert not torch.allclose(ours, clipped, atol=1e-3)


def test_scores_match_original_batched_with_padding(loaded, images):
    model, processor, naive = loaded
    chosen = [images[i % len(images)] for i in range(len(TEXTS))]
    prompts = [vqa_prompt(text) for text in TEXTS]
    answers = ["Yes", "Yes", "No", "Yes", "yes", "No"]
    expected = naive.score(chosen, prompts, answers)
    batch = processor(images=chosen, text=prompts, text_target=answers)
    assert batch["attention_mask"].sum(1).unique().numel() > 1, "the batch should need padding"
    ours = answer_scores(model, batch)
    assert torch.allclose(ours, expected, atol=1e-5, rtol=0), (ours, expected)
    # The scores are not degenerate: different pairs score differently.
    assert ours.unique().numel() == len(TEXTS)


def test_square_checkpoints_are_scored_unpadded_as_the_original(tiny, images, tmp_path):
    """A checkpoint whose config says image_aspect_ratio "square" (not the released "pad") is preprocessed without
    padding, as the original procedure does: same scores on wide and tall images, where padding changes the pixels."""
    model, _ = tiny
    save_original_checkpoint(model, train_tiny_sentencepiece(), tmp_path, image_aspect_ratio="square")
    T5Tokenizer.from_pretrained(tmp_path, extra_ids=100).save_pretrained(tmp_path)
    loaded = CLIPFlanT5ForConditionalGeneration.from_pretrained(tmp_path)
    processor = CLIPFlanT5Processor.from_pretrained(tmp_path)
    naive = NaiveOriginal(tmp_path)
    assert processor.image_processor.do_pad is False
    assert naive.pad is False
    chosen = images[:2]  # 20 x 40 and 50 x 30
    prompts = [vqa_prompt("a red circle"), vqa_prompt("a blue square on the left")]
    answers = ["Yes", "No"]
    expected = naive.score(chosen, prompts, answers)
    ours = answer_scores(loaded, processor(images=chosen, text=prompts, text_target=answers))
    assert torch.allclose(ours, expected, atol=1e-5, rtol=0), (ours, expected)


def test_greedy_generation_matches_original(loaded, images):
    model, processor, naive = loaded
    prompts = [SYSTEM + " USER: <image>\n" + q + " ASSISTANT: " for q in ["What is in the image?", "Describe it."]]
    prompts.append(vqa_prompt("a green cross"))
    chosen = images[:3]
    expected = naive.greedy(chosen, prompts, max_new_tokens=8)
    batch = processor(images=chosen, text=prompts)
    generated = model.generate(**batch, max_new_tokens=8, do_sample=False, num_beams=1)
    for row, tokens in enumerate(expected):
        assert generated[row, : len(tokens)].tolist() == tokens
    assert len({tuple(tokens) for tokens in expected}) > 1, "answers should depend on the input"


def test_default_question_is_the_original_evaluations(loaded):
    """Our default question, and the prompt VQAScore builds from it, are the original evaluation's."""
    _, processor, naive = loaded
    assert DEFAULT_QUESTION_TEMPLATE == QUESTION
    prompt = processor.chat_prompt(DEFAULT_QUESTION_TEMPLATE.format("a red circle"))
    assert prompt == vqa_prompt("a red circle")
    before, after = prompt.split("<image>")
    expected = naive.tokenize(before) + [processor.image_token_id] * processor.image_seq_length + naive.tokenize(after)
    assert processor.encode_prompt(prompt) == expected


@pytest.mark.parametrize(
    ("size", "expected"),
    [("xl", 3_093_762_048 + 32128 * 2048), ("xxl", 11_328_223_232 + 32128 * 4096)],
)
def test_parameter_counts_on_meta_device(size, expected):
    """XL: 3,159,560,192 = 3,093,762,048 + 32128 x 2048; XXL: 11,459,819,520 = 11,328,223,232 + 32128 x 4096.

    The brief's figures count the LM head as if it were tied to the embedding (what transformers 5's
    T5ForConditionalGeneration does when instantiated from a config). FlanT5's head is a separate, trained matrix:
    the original .bin stores it (2 bytes x 3,159,560,192 = 6.32 GB, the XL .bin's size), so it is counted here.
    """
    with open(REPO_ROOT / "tests" / "fixtures" / f"clip-flant5-{size}-config.json") as handle:
        config = config_from_original(json.load(handle))
    with torch.device("meta"):
        model = CLIPFlanT5ForConditionalGeneration(config)
    assert model.num_parameters() == expected
    assert sum(p.numel() for p in model.model.vision_tower.parameters()) == 303_507_456
    projector = sum(p.numel() for p in model.model.multi_modal_projector.parameters())
    assert projector == {"xl": 6_295_552, "xxl": 20_979_712}[size]
    assert config.image_seq_length == 576 and config.image_token_id == 32100
