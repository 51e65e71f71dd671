"""LLaVA rows that cannot be trained on as written: refused with the row and the field named, counted in the
validation report; and a fuzzed LLaVA reader and validator that never fail on a row with anything but that report."""

import json
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from transformers_clipflant5.training.data import (
    DataValidationError,
    flatten_conversations,
    read_llava_json,
    validate_llava_samples,
)
from transformers_clipflant5.training.templates import TEMPLATES


def test_two_image_placeholders_for_one_image_are_refused_and_counted():
    rows = [
        {"id": "two", "image": "a.png", "conversations": [{"from": "human", "value": "<image>\nA <image>?"}, {"from": "gpt", "value": "Yes"}]},
        {"id": "ok", "image": "a.png", "conversations": [{"from": "human", "value": "<image>\nA?"}, {"from": "gpt", "value": "Yes"}]},
    ]  # fmt: skip
    with pytest.raises(DataValidationError) as error:
        validate_llava_samples(rows, "t5_v1", check_images=False)
    message = str(error.value)
    assert "1 malformed" in message
    assert "row 0 (id 'two'): 2 '<image>' placeholders for one image" in message
    assert "'ok'" not in message


@pytest.mark.parametrize(
    "message, expected",
    [
        ({"from": "human"}, "message 0 has no 'value' field"),
        ({"value": "A?"}, "message 0 has no 'from' field"),
        ({}, "message 0 has no 'from' or 'value' field"),
        ({"from": ["human"], "value": "A?"}, "message 0 has 'from' ['human']"),
        ("A?", "message 0 must be an object with 'from' and 'value', got str"),
    ],
)
def test_missing_fields_are_named_with_the_row(message, expected):
    rows = [{"id": "r", "conversations": [message, {"from": "gpt", "value": "Yes"}]}]
    with pytest.raises(
        DataValidationError, match="row 0 \\(id 'r'\\): " + expected.replace("[", "\\[").replace("]", "\\]")
    ):
        validate_llava_samples(rows, "t5_v1", check_images=False)


# --------------------------------------------------------------------------------------------------------------------
# Fuzzing: rows built from random JSON values and near-valid conversations.

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
texts = st.sampled_from(["", "A?", "<image>", "<image>\nWhat?", "x <image> y", "Yes"]) | st.text(max_size=8)
messages = st.fixed_dictionaries(
    {}, optional={"from": st.sampled_from(["human", "gpt", "system"]) | json_values, "value": texts | json_values}
)
rows = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {},
        optional={
            "id": json_values,
            "image": st.just("a.png") | json_values,
            "conversations": st.lists(messages | json_values, max_size=4) | json_values,
        },
    ),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(rows, max_size=5), st.sampled_from(TEMPLATES))
def test_fuzzed_rows_are_kept_or_reported(samples, template):
    try:
        kept, report = validate_llava_samples(samples, template, check_images=False)
    except DataValidationError as error:
        # Every refused row is listed with its index (up to the report's limit) and counted.
        assert "malformed" in str(error) or "No training rows" in str(error)
        return
    assert report.total == len(samples) and report.kept == len(kept)
    for row in kept:
        assert all(isinstance(message["value"], str) for message in row["conversations"])
        if row["image_file"] is not None:
            # A kept image row never asks for a second image.
            assert sum(message["value"].count("<image>") for message in row["conversations"]) <= 1


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(rows, max_size=4), st.sampled_from([".json", ".jsonl"]), st.integers(0, 40))
def test_fuzzed_files_are_read_or_refused_with_their_name(tmp_path, samples, suffix, cut):
    path = tmp_path / f"data{suffix}"
    text = "\n".join(json.dumps(sample) for sample in samples) if suffix == ".jsonl" else json.dumps(samples)
    # Cut the file short some of the time, as an interrupted download would.
    path.write_text(text[: len(text) - cut] if cut < len(text) else text, encoding="utf-8")
    try:
        read = read_llava_json(path)
    except DataValidationError as error:
        assert str(path) in str(error)
        return
    assert isinstance(read, list)


# Rows that any template but stage 1's trains on: human/gpt turns (multi-turn rows are what `--flatten` splits), the
# image placeholder only in questions, at the start of the first one in image rows.
questions = st.sampled_from(["A?", "What is in the picture?", "x <b> y"]) | st.text(max_size=8)
answers = st.sampled_from(["Yes", "A red circle."]) | st.text(max_size=8)
trainable_rows = st.builds(
    lambda row_id, image, turns: {
        "id": row_id,
        **({"image": image} if image else {}),
        "conversations": [
            message
            for turn, (question, answer) in enumerate(turns)
            for message in (
                {"from": "human", "value": ("<image>\n" if image and turn == 0 else "") + question},
                {"from": "gpt", "value": answer},
            )
        ],
    },
    st.text(max_size=4),
    st.sampled_from([None, "a.png", "folder/b.jpg"]),
    st.lists(st.tuples(questions, answers), min_size=1, max_size=3),
).filter(lambda row: "<image>" not in json.dumps(row["conversations"]).replace("<image>\\n", "", 1))


def trainable(row) -> bool:
    """Whether `row` (after flattening) is one the validator must keep with the 't5_v1' template: written here from
    the LLaVA layout, not from the validator's code, and stricter than it (no leading system message, no stray
    placeholder in a text-only row for it to remove), so that every row it accepts must be kept unchanged."""
    if not isinstance(row, dict):
        return False
    image = row.get("image")
    if image is not None and not (isinstance(image, str) and image):
        return False
    conversations = row.get("conversations")
    if not isinstance(conversations, list) or not conversations or len(conversations) % 2:
        return False
    for message in conversations:
        if not isinstance(message, dict) or not isinstance(message.get("value"), str):
            return False
        if not message["value"].strip():  # a blank question or reply trains on nothing
            return False
        if not isinstance(message.get("from"), str):
            return False
    if [message["from"] for message in conversations] != ["human", "gpt"] * (len(conversations) // 2):
        return False
    if any("<image>" in message["value"] for message in conversations[1::2]):
        return False
    placeholders = sum(message["value"].count("<image>") for message in conversations)
    return placeholders == 0 if image is None else placeholders <= 1


@settings(max_examples=150, deadline=None)
@given(st.lists(rows | trainable_rows, max_size=5))
def test_fuzzed_rows_flatten_then_validate_keeping_every_trainable_row(samples):
    # `--flatten` runs before validation: a malformed row must reach validation (and its report), not crash here;
    # and a row that can be trained on must come out of both, never reported as malformed.
    samples = [
        sample for sample in samples if isinstance(sample, dict) and isinstance(sample.get("conversations"), list)
    ]
    flattened, counts, source_rows = flatten_conversations(samples)
    assert counts["samples"] == len(samples)
    keep = {index for index, row in enumerate(flattened) if trainable(row)}
    try:
        kept, report = validate_llava_samples(
            flattened, "t5_v1", check_images=False, max_offenders=len(flattened), row_numbers=source_rows
        )
    except DataValidationError as error:
        # Offenders are named by their input row.
        refused = {int(index) for index in re.findall(r"^  - row (\d+) ", str(error), flags=re.MULTILINE)}
        assert not refused & {source_rows[index] for index in keep}, str(error)
        # Refused for its malformed rows, or for having no row at all: never with nothing to blame.
        assert refused or not flattened, str(error)
        return
    assert report.kept == len(kept) == len(flattened)
    # Each trainable row is kept as it was written (only validation's normalisation: `from` and `value` fields).
    for index in keep:
        assert kept[index]["conversations"] == [
            {"from": message["from"], "value": message["value"]} for message in flattened[index]["conversations"]
        ]


@settings(max_examples=150, deadline=None)
@given(rows | trainable_rows)
def test_fuzzed_rows_training_accepts_flatten_into_rows_it_accepts(sample):
    try:
        validate_llava_samples([sample], "t5_v1", check_images=False)
    except DataValidationError:
        return
    flattened, _, source_rows = flatten_conversations([sample])
    kept, _ = validate_llava_samples(flattened, "t5_v1", check_images=False)
    assert len(kept) == len(flattened) and source_rows == [0] * len(flattened)
