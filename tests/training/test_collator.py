"""The collator: the batches the processor would build, images encoded once, safe truncation, resumable cuts."""

import logging

import pytest
import torch

from tests.support.llava import gpt, human
from transformers_clipflant5.training.collator import CLIPFlanT5DataCollator
from transformers_clipflant5.training.templates import build_prompt_and_target


def rows_for(image_files):
    return [
        {
            "id": str(index),
            "image_file": image_file,
            "conversations": [
                human(("<image>\n" if image_file else "") + f"question {index}?"),
                gpt("yes" * (index + 1)),
            ],
        }
        for index, image_file in enumerate(image_files)
    ]


def test_collator_builds_what_the_processor_builds(tiny, image_folder):
    _, processor = tiny
    collator = CLIPFlanT5DataCollator(processor, "t5_v1", image_folder)
    rows = rows_for(["img0.png", None, "img1.png"])
    batch = collator(rows)
    prompts = [
        build_prompt_and_target(row["conversations"], "t5_v1", row["image_file"] is not None, processor=processor)[0]
        for row in rows
    ]
    targets = [row["conversations"][1]["value"] for row in rows]
    expected = processor(
        images=[image_folder / "img0.png", image_folder / "img1.png"], text=prompts, text_target=targets
    )
    for key in ("input_ids", "attention_mask", "labels", "pixel_values"):
        assert torch.equal(batch[key], expected[key]), key
    assert torch.equal(batch["decoder_attention_mask"], (expected["labels"] != -100).long())
    assert "image_index" not in batch

    text_only = collator(rows_for([None, None]))
    assert text_only["pixel_values"].shape == (0, 3, 32, 32)


def test_collator_encodes_a_repeated_image_once(tiny, image_folder):
    model, processor = tiny
    rows = rows_for(["img2.png", "img0.png", "img2.png"])
    deduplicated = CLIPFlanT5DataCollator(processor, "t5_v1", image_folder)(rows)
    repeated = CLIPFlanT5DataCollator(processor, "t5_v1", image_folder, deduplicate_images=False)(rows)
    assert deduplicated["pixel_values"].shape[0] == 2 and repeated["pixel_values"].shape[0] == 3
    assert deduplicated["image_index"].tolist() == [0, 1, 0]
    with torch.no_grad():
        assert torch.allclose(model(**deduplicated).logits, model(**repeated).logits, atol=1e-6)


def test_collator_truncation_never_cuts_image_placeholders(tiny, image_folder):
    _, processor = tiny
    long_row = rows_for(["img0.png"])
    long_row[0]["conversations"][0]["value"] = "<image>\n" + "word " * 200
    full = CLIPFlanT5DataCollator(processor, "t5_v1", image_folder)(long_row)["input_ids"]
    cut = CLIPFlanT5DataCollator(processor, "t5_v1", image_folder, max_length=150)(long_row)["input_ids"]
    assert cut.shape[1] == 150 and torch.equal(cut[0], full[0, :150])
    # A max_length that could cut the image is refused before any row (see the test below).
    with pytest.raises(ValueError, match="cannot hold"):
        CLIPFlanT5DataCollator(processor, "t5_v1", image_folder, max_length=40)
    with pytest.raises(ValueError, match="empty batch"):
        CLIPFlanT5DataCollator(processor, "t5_v1", image_folder)([])


def test_split_text_cut_depends_only_on_seed_and_row(tiny, image_folder):
    _, processor = tiny
    rows = [
        {
            "id": str(i),
            "image_file": "img0.png",
            "conversations": [human("<image>"), gpt(f"a long caption number {i}")],
        }
        for i in range(6)
    ]
    collator = CLIPFlanT5DataCollator(processor, "t5_plain_split_text", image_folder, seed=3)
    first = collator(rows)
    again = CLIPFlanT5DataCollator(processor, "t5_plain_split_text", image_folder, seed=3)(rows[3:])
    assert torch.equal(first["labels"][3:, : again["labels"].shape[1]], again["labels"])
    other_seed = CLIPFlanT5DataCollator(processor, "t5_plain_split_text", image_folder, seed=4)(rows)
    assert not torch.equal(first["input_ids"], other_seed["input_ids"])


@pytest.mark.parametrize("template", ["t5_v1", "t5_plain", "t5_plain_split_text"])
def test_a_max_length_shorter_than_the_template_with_an_image_is_refused(tiny, image_folder, template):
    _, processor = tiny
    row = rows_for(["img0.png"])
    scaffold, _ = build_prompt_and_target([human("<image>"), gpt("x")], template, True, processor=processor)
    shortest = len(processor.encode_prompt(scaffold))
    assert shortest > processor.image_seq_length
    for max_length in (0, shortest - 1):
        with pytest.raises(ValueError, match=f"max_length={max_length} cannot hold a '{template}' prompt.*{shortest}"):
            CLIPFlanT5DataCollator(processor, template, image_folder, max_length=max_length)
    batch = CLIPFlanT5DataCollator(processor, template, image_folder, max_length=shortest)(row)
    assert (batch["input_ids"] == processor.image_token_id).sum() == processor.image_seq_length
    assert (batch["labels"] != -100).sum() > 0


def test_cut_rows_are_counted_and_warned_about_at_the_1st_10th_100th(tiny, image_folder, caplog):
    _, processor = tiny
    scaffold, _ = build_prompt_and_target([human("<image>"), gpt("x")], "t5_v1", True, processor=processor)
    max_length = len(processor.encode_prompt(scaffold)) + 30  # room for the short rows' questions
    collator = CLIPFlanT5DataCollator(processor, "t5_v1", image_folder, max_length=max_length)
    long_question = rows_for([None] * 11)
    for row in long_question:
        row["conversations"][0]["value"] = "word " * 100
    long_answer = rows_for([None])
    long_answer[0]["conversations"][1]["value"] = "yes " * max_length
    short = rows_for([None, "img0.png"])
    with caplog.at_level(logging.WARNING, logger="transformers_clipflant5.training.collator"):
        for start in range(0, 11, 4):
            collator(long_question[start : start + 4] + short)
        collator(long_answer)
    assert (collator.rows_collated, collator.rows_cut) == (18, 12)
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert warnings[0].startswith(f"1 of 1 rows collated so far were cut to max_length={max_length} tokens")
    assert "'0': a prompt of" in warnings[0] and "Warned again at 10 cut rows" in warnings[0]
    assert warnings[1].startswith("10 of 14 rows collated so far were cut")
