"""The processor by transformers' conventions: keyword arguments (flat, per modality, common, saved defaults),
`apply_chat_template` with images in the messages, decoding, the image-text-to-text pipeline, and errors."""

import copy

import pytest
import torch
from transformers import AutoProcessor, pipeline
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

from tests.support.images import make_images
from tests.support.original_reference import SYSTEM, _original_pixels, stage2_prompt
from transformers_clipflant5 import CLIPFlanT5ImageProcessor, CLIPFlanT5Processor


PROMPT = "<image>\nWhat is it?"


@pytest.fixture(scope="module")
def image():
    return make_images([(30, 50)])[0]


@pytest.fixture(scope="module")
def saved(tiny, tmp_path_factory):
    model, processor = tiny
    folder = tmp_path_factory.mktemp("ours")
    model.generation_config.max_new_tokens = 4
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def test_keyword_arguments_flat_per_modality_and_common_agree(tiny, image):
    _, processor = tiny
    reference = processor(images=[image], text=[PROMPT], padding="max_length", max_length=40, do_pad=False)
    assert reference["input_ids"].shape == (1, 40)
    assert reference["attention_mask"][0, -1] == 0
    nested = processor(
        images=[image],
        text=[PROMPT],
        text_kwargs={"padding": "max_length", "max_length": 40},
        images_kwargs={"do_pad": False},
    )
    common = processor(
        images=[image],
        text=[PROMPT],
        text_kwargs={"padding": "max_length", "max_length": 40},
        images_kwargs={"do_pad": False},
        common_kwargs={"return_tensors": "pt"},
    )
    for other in (nested, common):
        for key in ("input_ids", "attention_mask", "pixel_values"):
            assert torch.equal(other[key], reference[key]), key
    # do_pad changes the pixels of a non-square image (stage 2 pads it to a square, stage 1 does not).
    padded = processor(images=[image], text=[PROMPT])
    assert not torch.equal(padded["pixel_values"], reference["pixel_values"])
    with pytest.raises(ValueError, match="passed two times"):
        processor(images=[image], text=[PROMPT], padding="longest", text_kwargs={"padding": "longest"})


def test_defaults_are_saved_with_the_processor(tiny, tmp_path, image):
    _, processor = tiny
    image_processor = processor.image_processor
    custom = CLIPFlanT5Processor(
        image_processor=type(image_processor)(**{**image_processor.to_dict(), "do_pad": False}),
        tokenizer=processor.tokenizer,
        image_seq_length=processor.image_seq_length,
    )
    custom.save_pretrained(tmp_path)
    reloaded = AutoProcessor.from_pretrained(tmp_path)
    assert reloaded.image_processor.do_pad is False
    assert reloaded.image_seq_length == processor.image_seq_length
    assert reloaded.to_dict() == custom.to_dict()
    assert torch.equal(
        reloaded(images=[image], text=[PROMPT])["pixel_values"], custom(images=[image], text=[PROMPT])["pixel_values"]
    )
    # Lists come back when asked, as from a tokenizer.
    as_lists = processor(text=["a", "a b c"], return_tensors=None, padding=False)
    assert isinstance(as_lists["input_ids"], list) and len(as_lists["input_ids"][1]) > len(as_lists["input_ids"][0])


def test_padding_side_and_labels(tiny):
    _, processor = tiny
    right = processor(text=["a", "a b c d"], text_target=["Yes", "a b c d e f g"])
    left = processor(text=["a", "a b c d"], padding_side="left")
    assert right["attention_mask"][0, -1] == 0 and left["attention_mask"][0, 0] == 0
    assert torch.equal(right["input_ids"][0][right["attention_mask"][0].bool()], left["input_ids"][0][-2:])
    assert right["labels"][0].tolist()[-1] == -100
    assert right["labels"][0][right["labels"][0] != -100].tolist() == processor.tokenizer("Yes")["input_ids"]


def test_without_attention_mask_and_with_targets_alone(tiny):
    _, processor = tiny
    assert "attention_mask" not in processor(text=["a", "a b c"], return_attention_mask=False)
    yes, longer = processor.tokenizer("Yes")["input_ids"], processor.tokenizer("a b c d")["input_ids"]
    labels = processor(text_target=["Yes", "a b c d"])["labels"]
    assert isinstance(labels, torch.Tensor)
    assert labels.tolist() == [yes + [-100] * (len(longer) - len(yes)), longer]
    assert processor(text_target=["Yes"], return_tensors=None)["labels"] == [yes]


def test_truncation_that_would_cut_the_last_placeholder_is_refused(tiny, image):
    """Cutting at the last placeholder drops one of them: refused, as any cut inside the image is."""
    _, processor = tiny
    ids = processor.encode_prompt(PROMPT)
    last = max(position for position, token in enumerate(ids) if token == processor.image_token_id)
    with pytest.raises(ValueError, match="would cut image placeholder"):
        processor(images=[image], text=[PROMPT], truncation=True, max_length=last)
    kept = processor(images=[image], text=[PROMPT], truncation=True, max_length=last + 1)["input_ids"][0]
    assert kept.tolist() == ids[: last + 1]


@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_offsets_point_into_each_prompt_on_either_padding_side(tiny, image, padding_side):
    """Each token's character span in its own prompt (the image placeholders span their `<image>`), (0, 0) on the
    padding, wherever the tokenizer put it."""
    _, processor = tiny
    prompts = ["Hi <image> a red circle", "<image>\nWhat color is the shape on the left of the image?"]
    batch = processor(images=[image, image], text=prompts, return_offsets_mapping=True, padding_side=padding_side)
    for row, prompt in enumerate(prompts):
        real = batch["attention_mask"][row].bool()
        offsets, ids = batch["offset_mapping"][row], batch["input_ids"][row]
        assert (offsets[~real] == 0).all()
        start = prompt.index("<image>")
        placeholders = offsets[ids == processor.image_token_id]
        assert len(placeholders) == processor.image_seq_length
        assert placeholders.tolist() == [[start, start + len("<image>")]] * processor.image_seq_length
        # The text tokens span characters of the prompt outside the `<image>`, and as in the prompt encoded alone.
        text = offsets[real & (ids != processor.image_token_id)]
        assert ((text[:, 1] <= start) | (text[:, 0] >= start + len("<image>"))).all() and text.max() <= len(prompt)
        alone = processor(images=[image], text=[prompt], return_offsets_mapping=True)["offset_mapping"][0]
        assert torch.equal(offsets[real], alone)


def test_chat_template_renders_the_stage2_prompt(tiny):
    _, processor = tiny
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is in the image?"}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
    assert prompt == stage2_prompt("What is in the image?")
    assert processor.chat_prompt("What is in the image?") == prompt
    text_only = processor.apply_chat_template([{"role": "user", "content": "Hi"}], add_generation_prompt=True)
    assert text_only == SYSTEM + " USER: Hi ASSISTANT: "
    multi = processor.apply_chat_template(
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Q1"},
            {"role": "assistant", "content": "A1"},
            {"role": "user", "content": "Q2"},
        ],
        add_generation_prompt=True,
    )
    assert multi == "Be brief. USER: Q1 ASSISTANT: A1 USER: Q2 ASSISTANT: "


@pytest.mark.parametrize("given_as", ["pil", "path"])
def test_apply_chat_template_tokenizes_with_images_from_the_messages(tiny, image, tmp_path, given_as):
    _, processor = tiny
    image.save(tmp_path / "image.png")
    content = {
        "pil": {"type": "image", "image": image},
        "path": {"type": "image", "path": str(tmp_path / "image.png")},
    }
    messages = [{"role": "user", "content": [content[given_as], {"type": "text", "text": "What is it?"}]}]
    inputs = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)
    expected = processor(images=[image], text=[stage2_prompt("What is it?")])
    for key in ("input_ids", "attention_mask", "pixel_values"):
        assert torch.equal(inputs[key], expected[key]), key


def test_assistant_mask_marks_the_answers(tiny, image):
    _, processor = tiny
    messages = [
        {"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": "Color?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Red circle."}]},
    ]
    template = (
        "{% for message in messages %}{% if message['role'] == 'user' %}USER: "
        "{% for c in message['content'] %}{{ '<image>' if c['type'] == 'image' else c['text'] }}{% endfor %} "
        "{% else %}ASSISTANT: {% generation %}{{ message['content'][0]['text'] }}{% endgeneration %}{% endif %}"
        "{% endfor %}"
    )
    inputs = processor.apply_chat_template(
        messages, chat_template=template, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    mask = torch.as_tensor(inputs["assistant_masks"][0]).bool()
    answer_ids = inputs["input_ids"][0][mask].tolist()
    assert answer_ids == processor.tokenizer("Red circle.", add_special_tokens=False)["input_ids"]


def test_decoding(tiny):
    _, processor = tiny
    ids = processor.tokenizer(["a red circle", "yes"], padding=True, return_tensors="pt")["input_ids"]
    assert processor.batch_decode(ids, skip_special_tokens=True) == ["a red circle", "yes"]
    assert processor.post_process_image_text_to_text(ids) == ["a red circle", "yes"]
    assert processor.decode(ids[1], skip_special_tokens=True) == "yes"


def test_pipeline_with_chat_messages_and_batches(saved, tiny, image):
    model, processor = tiny
    pipe = pipeline("image-text-to-text", model=str(saved))
    messages = [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": "Color?"}]}]
    # The answer alone, and the same answer as generate() on the processor's inputs.
    inputs = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)
    expected = processor.batch_decode(model.generate(**inputs, max_new_tokens=4), skip_special_tokens=True)[0]
    answer = pipe(text=messages, max_new_tokens=4, return_full_text=False)
    assert answer[0]["generated_text"] == expected
    full = pipe(text=messages, max_new_tokens=4)
    assert full[0]["generated_text"][-1] == {"role": "assistant", "content": expected}
    batch = pipe(text=[messages, messages], max_new_tokens=4, return_full_text=False)
    assert [out[0]["generated_text"] for out in batch] == [expected, expected]
    # A plain prompt (no chat messages) is passed to the processor as it is, without the chat template.
    plain_inputs = processor(images=[image], text=[PROMPT])
    plain_expected = processor.batch_decode(model.generate(**plain_inputs, max_new_tokens=4), skip_special_tokens=True)
    plain = pipe(images=image, text=PROMPT, max_new_tokens=4, return_full_text=False)
    assert plain[0]["generated_text"] == plain_expected[0]


def test_processor_errors_name_the_problem(tiny, tmp_path, image):
    _, processor = tiny
    with pytest.raises(ValueError, match="1 '<image>' placeholder.* 2 image"):
        processor(images=[image, image], text=["<image> hi"])
    with pytest.raises(ValueError, match="2 '<image>' placeholder.* 1 image"):
        processor(images=[image], text=["<image> <image>"])
    with pytest.raises(ValueError, match="Images per prompt"):
        processor(images=[[image, image], []], text=["<image>", "<image>"])
    # A mix of single images and lists used to fail with "object of type 'Image' has no len()", or be flattened.
    for mixed in ([[image], image], [image, [image]]):
        with pytest.raises(ValueError, match="mixes single images and lists of images"):
            processor(images=mixed, text=["<image>", "<image>"])
    with pytest.raises(ValueError, match="would cut image placeholder"):
        processor(images=[image], text=["a b c <image>"], truncation=True, max_length=5)
    truncated = processor(images=[image], text=["<image> " + "word " * 50], truncation=True, max_length=30)
    assert truncated["input_ids"].shape[1] == 30
    with pytest.raises(ValueError, match="different lengths"):
        processor(text=["a", "a b c"], padding=False)
    with pytest.raises(ValueError, match="videos or audio"):
        processor(text=["a"], videos=[torch.zeros(2, 3, 8, 8)])
    with pytest.raises(FileNotFoundError, match="not found"):
        processor(images=[tmp_path / "missing.png"], text=["<image>"])
    with pytest.raises(ValueError, match="must not contain"):
        processor(text=["<image>"], images=[image], text_target=["<image>"])


def test_an_image_aspect_ratio_other_than_pad_or_square_is_refused(tiny):
    # Processor folders written before the image processor existed carry the original's image_aspect_ratio; only
    # the two values the original knows map to do_pad, any other would silently preprocess as one of them.
    _, processor = tiny

    def with_aspect_ratio(aspect_ratio):
        return CLIPFlanT5Processor(
            image_processor=copy.deepcopy(processor.image_processor),  # the constructor sets do_pad on it
            tokenizer=processor.tokenizer,
            image_seq_length=processor.image_seq_length,
            image_aspect_ratio=aspect_ratio,
        )

    assert with_aspect_ratio("pad").image_processor.do_pad is True
    assert with_aspect_ratio("square").image_processor.do_pad is False
    with pytest.raises(ValueError, match="image_aspect_ratio must be 'pad' or 'square', got 'anyres'"):
        with_aspect_ratio("anyres")


def test_a_plain_clip_image_processor_gets_the_originals_padding(tiny):
    """A plain CLIP image processor keeps its settings and gains the original's pad to square (stage 2, VQAScore):
    its pixels are the original's padded ones."""
    _, processor = tiny
    plain = CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    wrapped = CLIPFlanT5Processor(
        image_processor=plain, tokenizer=processor.tokenizer, image_seq_length=processor.image_seq_length
    )
    assert isinstance(wrapped.image_processor, CLIPFlanT5ImageProcessor)
    assert wrapped.image_processor.do_pad is True
    for image in make_images([(20, 40), (50, 30)], seed=4):
        pixels = wrapped.image_processor(image, return_tensors="pt")["pixel_values"][0]
        torch.testing.assert_close(pixels, _original_pixels(image, 32, pad=True), rtol=0, atol=1e-6)
