"""VQAScore API: exact against the naive original procedure, invariant to batching/order/padding, each image encoded
once, and clear errors for bad input."""

import copy
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from tests.support.images import make_images
from tests.support.original_reference import QUESTION, NaiveOriginal, stage2_prompt, vqa_prompt
from transformers_clipflant5 import CLIPFlanT5Processor, VQAScore
from transformers_clipflant5.scoring.vqascore import DEFAULT_QUESTION_TEMPLATE, resolve_dtype


TEXTS = [
    "a red circle",
    "a blue square on the left of the image, next to a small green triangle and a yellow cross",
    "x",
    "  two  spaces\tand a tab  ",
    'a "quoted" {braced} word',
]


@pytest.fixture(scope="module")
def image_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    paths = []
    for index, image in enumerate(make_images([(20, 40), (50, 30), (33, 33), (3, 5)], seed=1)):
        paths.append(str(folder / f"{index}.png"))
        image.save(paths[-1])
    return paths


@pytest.fixture(scope="module")
def original(original_folder):
    return VQAScore.from_pretrained(original_folder, device="cpu"), NaiveOriginal(original_folder)


@pytest.fixture(scope="module")
def scorer(tiny):
    model, processor = tiny
    return VQAScore(model=model, processor=processor)


def naive_scores(naive, images, texts, question=QUESTION, answer="Yes"):
    prompts = [stage2_prompt(question.format(text)) for text in texts]
    return naive.score(images, prompts, [answer.format(text) for text in texts])


def test_matrix_and_pairs_equal_the_original_procedure(original, image_files):
    scorer, naive = original
    assert scorer.model.dtype == torch.float32  # "auto" on CPU
    # Paths, a PIL image and an array, of different aspect ratios.
    images = [image_files[0], Image.open(image_files[1]), np.asarray(Image.open(image_files[2]))]
    matrix = scorer.score_matrix(images, TEXTS, batch_size=4)
    assert matrix.shape == (3, len(TEXTS)) and matrix.dtype == torch.float32 and matrix.device.type == "cpu"
    pair_images = [image for image in images for _ in TEXTS]
    # The naive reference reads paths and PIL images only.
    naive_images = [Image.fromarray(image) if isinstance(image, np.ndarray) else image for image in pair_images]
    expected = naive_scores(naive, naive_images, TEXTS * len(images)).view(3, len(TEXTS))
    torch.testing.assert_close(matrix, expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(matrix.log(), expected.log(), rtol=0, atol=1e-4)
    # The scores depend on the image and on the text, by much more than the tolerance: a mix-up would show.
    assert (matrix[0] - matrix[1]).abs().max() > 5e-5 and (matrix[:, 0] - matrix[:, 1]).abs().min() > 5e-5

    rng = np.random.default_rng(0)
    rows = rng.permutation(len(pair_images))[:9]
    pairs = scorer([pair_images[i] for i in rows], [TEXTS[i % len(TEXTS)] for i in rows], batch_size=2)
    torch.testing.assert_close(pairs, expected.flatten()[torch.as_tensor(rows)], rtol=0, atol=1e-5)


def test_custom_templates_equal_the_original_procedure(original, image_files):
    scorer, naive = original
    question, answer = "Is {} visible here?", "Yes, {}"
    scores = scorer(image_files[:3], TEXTS[:3], question_template=question, answer_template=answer)
    torch.testing.assert_close(
        scores, naive_scores(naive, image_files[:3], TEXTS[:3], question, answer), atol=1e-5, rtol=0
    )
    assert (scores - scorer(image_files[:3], TEXTS[:3])).abs().max() > 1e-4


def test_prompt_is_the_stage_2_chat_format(tiny):
    _, processor = tiny
    question = DEFAULT_QUESTION_TEMPLATE.format("a dog")
    assert processor.chat_prompt(question) == vqa_prompt("a dog")
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
    assert processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False) == vqa_prompt("a dog")


def test_batch_size_order_and_padding_do_not_change_scores(scorer, image_files):
    images = [image_files[i % 4] for i in range(12)]
    texts = [TEXTS[i % len(TEXTS)] for i in range(12)]
    reference = scorer(images, texts, batch_size=1)
    for batch_size in (2, 5, 64):
        torch.testing.assert_close(scorer(images, texts, batch_size=batch_size), reference, rtol=0, atol=1e-5)
    order = torch.randperm(12, generator=torch.Generator().manual_seed(0))
    shuffled = scorer([images[i] for i in order], [texts[i] for i in order], batch_size=5)
    torch.testing.assert_close(shuffled, reference[order], rtol=0, atol=1e-5)
    # In one batch, the short text is padded to the long one and its answer ("Yes, x") to the long answer.
    short, long = TEXTS[2], TEXTS[1] * 3
    alone = scorer([image_files[0]], [short], answer_template="Yes, {}")
    together = scorer([image_files[0], image_files[1]], [short, long], answer_template="Yes, {}", batch_size=2)
    torch.testing.assert_close(together[:1], alone, rtol=0, atol=1e-5)


def test_more_distinct_images_than_one_chunk_are_all_scored(scorer):
    """Distinct images are encoded a chunk of max(batch_size, 32) at a time: with more than a chunk holds, every pair
    is still scored with its own image, as it is in calls small enough for one chunk."""
    images = make_images([(6 + index % 5, 7 + index % 3) for index in range(35)], seed=9)
    texts = ["a red circle", "a cat", "x"] * 11 + ["a cat", "x"]
    scores = scorer(images, texts, batch_size=4)
    expected = torch.cat([scorer(images[start : start + 7], texts[start : start + 7]) for start in range(0, 35, 7)])
    assert torch.isfinite(scores).all()
    torch.testing.assert_close(scores, expected, rtol=1e-5, atol=0)


def test_each_image_is_encoded_once_and_only_answer_logits_are_computed(scorer, image_files):
    model = scorer.model
    seen = {"images": 0, "logit_rows": 0}
    hooks = [
        model.model.vision_tower.register_forward_hook(
            lambda module, args, kwargs, output: seen.__setitem__("images", seen["images"] + len(args[0])),
            with_kwargs=True,
        ),
        model.lm_head.register_forward_hook(
            lambda module, args, output: seen.__setitem__("logit_rows", seen["logit_rows"] + args[0].shape[0])
        ),
    ]
    try:
        matrix = scorer.score_matrix(image_files, TEXTS, batch_size=3)
        assert seen["images"] == len(image_files)
        answer_tokens = len(scorer.processor.encode_target("Yes"))
        assert seen["logit_rows"] == len(image_files) * len(TEXTS) * answer_tokens
        # The same file named twice, as a path and as the same path again, is still one image.
        seen["images"] = 0
        pairs = scorer([image_files[0], image_files[1], image_files[0]], [TEXTS[0], TEXTS[0], TEXTS[1]])
        assert seen["images"] == 2
    finally:
        for hook in hooks:
            hook.remove()
    torch.testing.assert_close(pairs, torch.stack([matrix[0, 0], matrix[1, 0], matrix[0, 1]]), rtol=0, atol=1e-5)


def test_generate_equals_the_original_greedy_decoding(original, image_files):
    scorer, naive = original
    prompts = ["What is in the image?", "Describe the image.", "What color is the shape?"]
    answers = scorer.generate(image_files[:3], prompts, max_new_tokens=6, batch_size=2)
    expected_ids = naive.greedy(image_files[:3], [stage2_prompt(prompt) for prompt in prompts], max_new_tokens=6)
    expected = [scorer.processor.decode(ids, skip_special_tokens=True).strip() for ids in expected_ids]
    assert answers == expected
    assert all(isinstance(answer, str) for answer in answers)


def test_generate_with_several_sequences_returns_each_prompt_its_own(scorer, image_files):
    """num_return_sequences=n: n answers per prompt, each prompt's own, as model.generate gives them prompt by prompt."""
    model, processor = scorer.model, scorer.processor
    prompts = ["What is in the image?", "Describe the image in detail, please."]
    settings = dict(max_new_tokens=5, num_beams=3, num_return_sequences=2)
    expected = []
    for image, prompt in zip(image_files[:2], prompts):
        # One prompt at a time, in the original's prompt format: nothing to pair up.
        inputs = processor(images=[Image.open(image)], text=[stage2_prompt(prompt)], return_tensors="pt")
        with torch.no_grad():
            output_ids = model.generate(**inputs, **settings)
        expected.append([text.strip() for text in processor.batch_decode(output_ids, skip_special_tokens=True)])
    assert expected[0] != expected[1], "the two prompts must get different answers for a mix-up to show"
    assert scorer.generate(image_files[:2], prompts, batch_size=2, **settings) == expected
    assert scorer.generate(image_files[:2], prompts, batch_size=1, **settings) == expected  # one batch after another
    assert scorer.generate(image_files[:1], prompts[:1], **settings) == expected[:1]
    # One sequence per prompt stays a plain string per prompt.
    single = scorer.generate(image_files[:2], prompts, max_new_tokens=5, num_beams=3)
    assert single == [answers[0] for answers in expected]


def test_generate_follows_a_generation_config_and_max_length(scorer, image_files):
    """Settings in a `generation_config` count as keyword arguments do (n answers per prompt), and `max_length`
    (which counts the decoder's start token) bounds the answer instead of the 128 new tokens of the default."""
    prompts = ["What is in the image?", "Describe the image in detail, please."]
    settings = dict(max_new_tokens=5, num_beams=3, num_return_sequences=2)
    config = copy.deepcopy(scorer.model.generation_config)
    config.update(**settings)
    by_config = scorer.generate(image_files[:2], prompts, generation_config=config)
    assert by_config == scorer.generate(image_files[:2], prompts, **settings)
    assert [len(answers) for answers in by_config] == [2, 2]
    # A generation_config that sets no length gets the default of 128 new tokens, not transformers' max_length of 20.
    unbounded = copy.deepcopy(scorer.model.generation_config)
    assert unbounded.max_new_tokens is None and unbounded.max_length in (None, 20)
    assert scorer.generate(image_files[:2], prompts, generation_config=unbounded) == scorer.generate(
        image_files[:2], prompts
    )
    short = scorer.generate(image_files[:2], prompts, max_new_tokens=2)
    assert scorer.generate(image_files[:2], prompts, max_length=3) == short
    assert scorer.generate(image_files[:2], prompts, max_new_tokens=8) != short  # the limit shows in the answers


def test_from_pretrained_our_format_and_dtypes(tiny, tmp_path, image_files):
    model, processor = tiny
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    loaded = VQAScore.from_pretrained(tmp_path, device="cpu")
    direct = VQAScore(model=model, processor=processor)
    torch.testing.assert_close(
        loaded(image_files[:2], TEXTS[:2]), direct(image_files[:2], TEXTS[:2]), rtol=0, atol=1e-6
    )

    bf16 = VQAScore.from_pretrained(tmp_path, dtype="bfloat16", device="cpu", attn_implementation="eager")
    assert bf16.model.dtype == torch.bfloat16
    scores = bf16.score_matrix(image_files, TEXTS)
    assert scores.dtype == torch.float32 and scores.device.type == "cpu"
    fp32 = direct.score_matrix(image_files, TEXTS)
    # Measured on these 20 pairs: bf16 is at most 1.1% off fp32 (eager; 1.3% with SDPA), while the scores of two
    # texts differ by up to 20%. 3% keeps room for other CPUs and still catches a mixed-up or mis-scaled row.
    torch.testing.assert_close(scores, fp32, rtol=0.03, atol=0)
    assert (scores - fp32).abs().max() > 0, "the bf16 scorer must really compute in bf16"
    assert (fp32.max(dim=1).values / fp32.min(dim=1).values).min() > 1.06

    # fp64, a numerical reference: through our T5 path and transformers' alike, float32 scores as documented.
    for fused in (None, False):
        fp64 = VQAScore.from_pretrained(tmp_path, dtype="float64", device="cpu", fused=fused)
        assert fp64.model.dtype == torch.float64 and fp64.forward.use_fused() is (fused is None)
        scores = fp64.score_matrix(image_files, TEXTS)
        assert scores.dtype == torch.float32
        torch.testing.assert_close(scores, fp32, rtol=1e-5, atol=0)

    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    with pytest.raises(ValueError, match="dtype"):
        resolve_dtype("int8", torch.device("cpu"))


def write_bomb_png(path, width=30000, height=30000):
    """A PNG whose header declares a huge image (a decompression bomb as far as PIL can tell without decoding)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    )


def test_bad_input_raises_with_a_message_that_names_it(scorer, image_files, tmp_path):
    image = image_files[0]
    with pytest.raises(ValueError, match="2 images and 1 texts"):
        scorer([image, image], ["a"])
    with pytest.raises(ValueError, match=r"texts\[1\] is empty"):
        scorer([image, image], ["a", ""])
    with pytest.raises(ValueError, match=r"texts\[0\] is empty"):
        scorer([image], ["  \n"])
    with pytest.raises(TypeError, match=r"texts\[0\] must be a string"):
        scorer([image], [None])
    with pytest.raises(ValueError, match="<image>"):
        scorer([image], ["a <image> here"])
    with pytest.raises(ValueError, match="must contain '\\{\\}'"):
        scorer([image], ["a"], question_template="Does this figure show it?")
    with pytest.raises(ValueError, match="one '\\{\\}' slot"):
        scorer([image], ["a"], question_template="Is {} or {} shown?")
    with pytest.raises(ValueError, match="one '\\{\\}' slot"):
        scorer([image], ["a"], question_template="Is {} a {name}?")
    with pytest.raises(ValueError, match="answer_template is empty"):
        scorer([image], ["a"], answer_template=" ")
    with pytest.raises(ValueError, match="batch_size"):
        scorer([image], ["a"], batch_size=0)

    missing = tmp_path / "missing.png"
    with pytest.raises(FileNotFoundError, match=r"images\[1\].*missing.png"):
        scorer([image, missing], ["a", "b"])
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match=r"images\[0\].*empty \(0 bytes\)"):
        scorer([empty], ["a"])
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    with pytest.raises(ValueError, match="corrupt.png is not a readable image"):
        scorer([corrupt], ["a"])
    with pytest.raises(ValueError, match="empty"):
        scorer([np.zeros((0, 4, 3), dtype=np.uint8)], ["a"])
    bomb = tmp_path / "bomb.png"
    write_bomb_png(bomb)
    with pytest.raises(ValueError, match="bomb.png is too large to decode safely"):
        scorer([bomb], ["a"])
    # Below PIL's own limit, the image processor's max_image_pixels still applies.
    limit = scorer.processor.image_processor.max_image_pixels
    scorer.processor.image_processor.max_image_pixels = 100
    try:
        with pytest.raises(ValueError, match="more than the limit of 100"):
            scorer([image], ["a"])
    finally:
        scorer.processor.image_processor.max_image_pixels = limit


def test_mismatched_model_and_processor_are_refused(tiny):
    from transformers_clipflant5.testing.tiny import build_tiny_model

    model, _ = tiny
    _, other_processor = build_tiny_model(image_size=48)
    with pytest.raises(ValueError, match="different checkpoints"):
        VQAScore(model=model, processor=other_processor)


def test_a_processor_with_another_image_token_is_refused(tiny):
    # The same number of placeholders but another token for them (a processor from another checkpoint): the model
    # would look for its own image token id in the prompts and find none, so no image features would be used.
    model, processor = tiny
    other_processor = CLIPFlanT5Processor(
        image_processor=copy.deepcopy(processor.image_processor),
        tokenizer=copy.deepcopy(processor.tokenizer),  # the shared tokenizer must not get the new token
        image_token="<img>",
        image_seq_length=processor.image_seq_length,
    )
    assert other_processor.image_token_id != model.config.image_token_id
    with pytest.raises(
        ValueError,
        match=rf"image token id \({other_processor.image_token_id}\) differs from the model's "
        rf"\({model.config.image_token_id}\)",
    ):
        VQAScore(model=model, processor=other_processor)


def test_empty_input_gives_empty_scores(scorer):
    assert scorer([], []).shape == (0,)
    assert scorer.score_matrix([], ["a"]).shape == (0, 1)


def test_a_model_in_training_mode_is_scored_without_dropout_and_left_in_training_mode(image_files):
    from transformers_clipflant5.testing.tiny import build_tiny_model

    model, processor = build_tiny_model(seed=1)
    dropouts = [module for module in model.modules() if isinstance(module, torch.nn.Dropout)]
    assert dropouts
    for module in dropouts:
        module.p = 0.5
    scorer = VQAScore(model=model.eval(), processor=processor)
    expected = scorer(image_files[:2], TEXTS[:2])
    expected_answers = scorer.generate(image_files[:2], TEXTS[:2], max_new_tokens=4)
    model.train()
    torch.testing.assert_close(scorer(image_files[:2], TEXTS[:2]), expected, rtol=0, atol=1e-6)
    assert scorer.generate(image_files[:2], TEXTS[:2], max_new_tokens=4) == expected_answers
    assert model.training
