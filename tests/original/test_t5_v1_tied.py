"""The T5 v1.0 checkpoint of the original release (`clip-t5-xxl`): head tied to the embedding and the decoder output
rescaled by d_model^-0.5 before it. Loaded directly, converted alone and through `--all-original`, it must score as
the naive original procedure does."""

import json

import pytest
import torch
from safetensors import safe_open
from transformers import T5Config, T5Tokenizer

from tests.support.cli import run_convert
from tests.support.images import make_images
from tests.support.models import randomize
from tests.support.original_reference import NaiveOriginal, save_original_checkpoint, stage2_prompt, vqa_prompt
from transformers_clipflant5 import CLIPFlanT5Config, CLIPFlanT5ForConditionalGeneration, VQAScore
from transformers_clipflant5.hub.folder_checks import check_model_folder
from transformers_clipflant5.testing.tiny import build_tiny_model, train_tiny_sentencepiece


TEXTS = ["a red circle", "a blue square on the left", "x"]


def tiny_t5_v1_model() -> CLIPFlanT5ForConditionalGeneration:
    """A tiny CLIP-T5: FlanT5's tiny config turned into T5 v1.0's (ReLU feed-forward, tied head). Its weights are
    large enough that the scores vary by tens of percent between pairs (with the rescale, logits are small)."""
    flan, _ = build_tiny_model(seed=4)
    text = flan.config.text_config.to_dict()
    text.update(feed_forward_proj="relu", tie_word_embeddings=True)
    for derived in ("dense_act_fn", "is_gated_act", "scale_decoder_outputs"):
        text.pop(derived, None)
    config = CLIPFlanT5Config(
        vision_config=flan.config.vision_config,
        text_config=T5Config(**text),
        image_token_id=flan.config.image_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(4)
    return randomize(CLIPFlanT5ForConditionalGeneration(config), std=1.0, seed=4).eval()


@pytest.fixture(scope="module", params=["head stored", "head omitted"])
def t5_v1_folder(request, tmp_path_factory):
    """The tiny CLIP-T5 in the original layout, at `<root>/clip-t5-xxl`, as `--all-original --source-root` reads it."""
    folder = tmp_path_factory.mktemp("t5-v1") / "clip-t5-xxl"
    save_original_checkpoint(
        tiny_t5_v1_model(), train_tiny_sentencepiece(), folder, store_lm_head=request.param == "head stored"
    )
    T5Tokenizer.from_pretrained(folder, extra_ids=100).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def image_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("t5-v1-images")
    paths = []
    for index, image in enumerate(make_images([(20, 40), (33, 33), (50, 30)], seed=7)):
        paths.append(folder / f"{index}.png")
        image.save(paths[-1])
    return paths


def naive_scores(naive, images, texts):
    return naive.score(images, [vqa_prompt(text) for text in texts], ["Yes"] * len(texts))


def test_config_of_a_t5_v1_checkpoint_says_tied_and_rescaled(t5_v1_folder):
    flat = json.loads((t5_v1_folder / "config.json").read_text())
    assert "tie_word_embeddings" not in flat and flat["feed_forward_proj"] == "relu"
    model = CLIPFlanT5ForConditionalGeneration.from_pretrained(t5_v1_folder)
    assert model.config.tie_word_embeddings and model.config.text_config.scale_decoder_outputs
    assert model.lm_head.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()


def test_scores_and_greedy_answers_equal_the_naive_original(t5_v1_folder, image_files):
    naive = NaiveOriginal(t5_v1_folder)
    assert naive.tied
    scorer = VQAScore.from_pretrained(t5_v1_folder, device="cpu")
    images = [image for image in image_files for _ in TEXTS]
    texts = TEXTS * len(image_files)
    expected = naive_scores(naive, images, texts)
    torch.testing.assert_close(scorer(images, texts, batch_size=4), expected, rtol=1e-4, atol=0)
    assert expected.max() / expected.min() > 1.2, "the scores must depend on the pair for a mix-up to show"
    # Without the rescale (or with the head untied) the scores would be far off: the comparison above can tell.
    scale = naive.logit_scale
    naive.logit_scale = 1.0
    try:
        assert ((naive_scores(naive, images, texts) - expected).abs() / expected).min() > 0.5
    finally:
        naive.logit_scale = scale

    prompts = ["What is in the image?", "Describe the image."]
    expected_ids = naive.greedy(image_files[:2], [stage2_prompt(prompt) for prompt in prompts], max_new_tokens=6)
    expected_answers = [scorer.processor.decode(ids, skip_special_tokens=True).strip() for ids in expected_ids]
    assert scorer.generate(image_files[:2], prompts, max_new_tokens=6) == expected_answers


def test_logits_are_the_rescaled_decoder_output_through_the_tied_embedding():
    """T5 v1.0's head: logits = (decoder output * d_model^-0.5) @ embedding^T. Scoring takes another path and greedy
    answers do not change with the scale, so the model's own logits are checked against the formula."""
    model = tiny_t5_v1_model()
    _, processor = build_tiny_model(seed=4)
    inputs = processor(images=make_images([(20, 40), (33, 33)], seed=7), text=[vqa_prompt(t) for t in TEXTS[:2]])
    decoder_input_ids = torch.tensor([[0, 5, 9], [0, 7, 3]])
    with torch.no_grad():
        logits = model(**inputs, decoder_input_ids=decoder_input_ids).logits
        hidden = model.model(**inputs, decoder_input_ids=decoder_input_ids).last_hidden_state
    embedding = model.get_input_embeddings().weight
    expected = (hidden * model.config.text_config.d_model**-0.5) @ embedding.T
    torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-6)


def test_converted_alone_and_through_all_original(t5_v1_folder, image_files, tmp_path, capsys):
    expected = naive_scores(NaiveOriginal(t5_v1_folder), image_files, TEXTS)
    alone = tmp_path / "alone"
    assert run_convert([str(t5_v1_folder), str(alone)]) == 0
    zoo = tmp_path / "zoo"
    argv = ["--all-original", "--source-root", str(t5_v1_folder.parent), "--only", "clip-t5-xxl", "--output-dir"]
    assert run_convert([*argv, str(zoo)]) == 0
    assert "1 converted, 0 failed" in capsys.readouterr().out
    for folder in (alone, zoo / "clip-t5-xxl"):
        check_model_folder(folder)
        with safe_open(folder / "model.safetensors", framework="pt") as handle:
            assert "lm_head.weight" not in handle.keys()  # tied: stored once, as the embedding
        config = json.loads((folder / "config.json").read_text())
        assert config["tie_word_embeddings"] is True
        scores = VQAScore.from_pretrained(folder, device="cpu")(image_files, TEXTS)
        torch.testing.assert_close(scores, expected, rtol=1e-4, atol=0)
    assert "T5-11B" in (zoo / "clip-t5-xxl" / "README.md").read_text()
