"""The collator: the batches the processor would build, images encoded once, safe truncation, resumable cuts."""

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
    with pytest.raises(ValueError, match="would drop image placeholders"):
        CLIPFlanT5DataCollator(processor, "t5_v1", image_folder, max_length=40)(long_row)
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
