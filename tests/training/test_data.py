"""Training data: reading, flattening and validating LLaVA JSON."""

import json
import re

import pytest

from tests.support.cli import run_command
from tests.support.llava import gpt, human
from transformers_clipflant5.training.data import (
    DataValidationError,
    flatten_conversations,
    load_llava_dataset,
    validate_llava_samples,
)


def test_flatten_reproduces_the_original_and_fixes_text_only_rows(tmp_path):
    samples = [
        {"id": "1", "image": "a.png", "conversations": [human("<image>\nQ1"), gpt("A1")]},
        {
            "id": "2",
            "image": "b.png",
            "conversations": [human("<image>\nQ1"), gpt("A1"), human("Q2"), gpt("A2"), human("Q3"), gpt("A3")],
        },
        {"id": "3", "conversations": [human("T1"), gpt("R1"), human("T2"), gpt("R2")]},
    ]
    flattened, counts, source_rows = flatten_conversations(samples)
    assert counts == {"samples": 3, "single_turn": 1, "multi_turn": 2, "flattened": 6}
    assert source_rows == [0, 1, 1, 1, 2, 2]
    assert flattened[0] == samples[0]
    assert [row["conversations"] for row in flattened[1:4]] == [
        [human("<image>\nQ1"), gpt("A1")],
        [human("<image>\nQ2"), gpt("A2")],
        [human("<image>\nQ3"), gpt("A3")],
    ]
    assert all(row["image"] == "b.png" and row["id"] == "2" for row in flattened[1:4])
    # The original prepended "<image>\n" to text-only pairs too; we do not.
    assert [row["conversations"] for row in flattened[4:]] == [[human("T1"), gpt("R1")], [human("T2"), gpt("R2")]]
    assert "image" not in flattened[4]
    assert samples[1]["conversations"][2] == human("Q2")  # the input is left untouched

    source, output = tmp_path / "in.json", tmp_path / "out.jsonl"
    source.write_text(json.dumps(samples))
    assert run_command(["flatten", str(source), str(output)]) == 0
    assert [json.loads(line) for line in output.read_text().splitlines()] == flattened
    assert run_command(["flatten", str(source), str(output)]) == 2  # refuses to overwrite without --force


def test_flatten_skips_a_leading_gpt_turn_as_training_does():
    # Valid unflattened (training drops the leading turn, see `stage2_messages`): its pairs must stay question/answer.
    sample = {"id": "s", "conversations": [gpt("System."), human("Q1"), gpt("A1"), human("Q2"), gpt("A2")]}
    validate_llava_samples([sample], "t5_v1", check_images=False)
    flattened, counts, _ = flatten_conversations([sample])
    assert [row["conversations"] for row in flattened] == [[human("Q1"), gpt("A1")], [human("Q2"), gpt("A2")]]
    assert counts["multi_turn"] == 1
    kept, _ = validate_llava_samples(flattened, "t5_v1", check_images=False)
    assert len(kept) == 2
    # One pair after the leading turn is a single-turn conversation, kept as it is.
    single = {"id": "t", "conversations": [gpt("System."), human("Q"), gpt("A")]}
    assert flatten_conversations([single])[:2] == (
        [single],
        {"samples": 1, "single_turn": 1, "multi_turn": 0, "flattened": 1},
    )


def test_flatten_adds_no_second_placeholder_to_a_question_that_has_one():
    sample = {
        "id": "i",
        "image": "img0.png",
        "conversations": [human("Q1"), gpt("A1"), human("<image>\nQ2"), gpt("A2")],
    }
    validate_llava_samples([sample], "t5_v1", check_images=False)
    flattened, _, _ = flatten_conversations([sample])
    assert flattened[1]["conversations"][0] == human("<image>\nQ2")
    kept, _ = validate_llava_samples(flattened, "t5_v1", check_images=False)
    assert len(kept) == 2


def test_flattened_data_is_reported_by_input_row(image_folder, tmp_path):
    samples = [
        {"id": "multi", "image": "img0.png", "conversations": [human("<image>\nQ1"), gpt("A1"), human("Q2"), gpt("A2")]},
        {"id": "odd", "image": "img0.png", "conversations": [human("<image>\nQ1"), gpt("A1"), human("Q2")]},
        {"id": "gone", "image": "missing.png", "conversations": [human("<image>\nQ"), gpt("A")]},
    ]  # fmt: skip
    path = tmp_path / "data.json"
    path.write_text(json.dumps(samples))
    with pytest.raises(DataValidationError) as error:
        load_llava_dataset(path, "t5_v1", image_folder, flatten=True)
    message = str(error.value)
    # The malformed row is refused whole, once, for what is wrong with it (not its pieces for what is wrong with them).
    assert "1 malformed" in message
    assert "row 1 (id 'odd'): the last message must be a gpt reply" in message
    assert "row 2 (id 'gone'): image 'missing.png' missing" in message


# ----------------------------------------------------------------------------------------------------------------------
# Validation


@pytest.mark.parametrize(
    "conversations, reason",
    [
        ([human(" "), gpt("")], "message 0 (human) is empty"),
        ([human("Q"), gpt(" \n")], "message 1 (gpt) is empty"),
        ([human("Q1"), gpt("A1"), human("\t"), gpt("A2")], "message 2 (human) is empty"),
    ],
)
def test_blank_messages_are_refused_with_the_row(conversations, reason):
    rows = [{"id": "ok", "conversations": [human("Q"), gpt("A")]}, {"id": "blank", "conversations": conversations}]
    with pytest.raises(DataValidationError, match=re.escape(f"row 1 (id 'blank'): {reason}")):
        validate_llava_samples(rows, "t5_v1", check_images=False)


def test_validation_fails_fast_listing_offenders(image_folder, tmp_path):
    samples = [
        {"id": "ok", "image": "img0.png", "conversations": [human("<image>\nQ"), gpt("A")]},
        {"id": "no-conv", "image": "img0.png"},
        {"id": "bad-role", "conversations": [{"from": "system", "value": "x"}, gpt("A")]},
        {"id": "no-reply", "conversations": [human("Q")]},
        {"id": "two-humans", "conversations": [human("Q"), human("Q"), gpt("A")]},
        {"id": "number", "conversations": [human("Q"), gpt(3)]},
        {"id": "gone", "image": "missing.png", "conversations": [human("<image>\nQ"), gpt("A")]},
        "not a row",
    ]
    with pytest.raises(DataValidationError) as error:
        validate_llava_samples(samples, "t5_v1", image_folder)
    message = str(error.value)
    assert "8 rows" in message and "6 malformed" in message and "1 with a missing or empty image" in message
    for sample_id in ("no-conv", "bad-role", "no-reply", "two-humans", "number", "gone"):
        assert repr(sample_id) in message
    assert "--skip_missing_images" in message

    valid = [samples[0], samples[6], {"id": "text", "conversations": [human("Is <image> here?"), gpt("No")]}]
    rows, report = validate_llava_samples(valid, "t5_v1", image_folder, skip_missing_images=True)
    assert [row["id"] for row in rows] == ["ok", "text"]
    assert report.skipped_missing_images == 1 and report.kept == 2
    assert report.stray_placeholder_removed == 1 and "<image>" not in rows[1]["conversations"][0]["value"]
    assert rows[0]["length"] == 3 and rows[1]["length"] == -3  # word counts (after the fix), negative for text-only
    assert "'gone'" in report.summary()

    with pytest.raises(DataValidationError, match="needs an image in every row"):
        validate_llava_samples([valid[2]], "t5_plain_split_text", image_folder)
    path = tmp_path / "data.json"
    path.write_text(json.dumps(valid))
    dataset, report = load_llava_dataset(path, "t5_v1", image_folder, skip_missing_images=True)
    assert dataset.column_names == ["id", "image_file", "conversations", "length"]
    assert dataset[0]["image_file"] == "img0.png" and dataset[1]["image_file"] is None
    (tmp_path / "broken.json").write_text("[{")
    with pytest.raises(DataValidationError, match="not valid JSON"):
        load_llava_dataset(tmp_path / "broken.json", "t5_v1", image_folder)
