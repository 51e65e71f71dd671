"""The original prompt templates: t5_v1 through the processor's chat template, t5_plain and t5_plain_split_text."""

import random

import pytest

from tests.support.llava import gpt, human
from tests.support.original_reference import vqa_prompt
from transformers_clipflant5.processing_clip_flant5 import SYSTEM_MESSAGE
from transformers_clipflant5.training.templates import build_prompt_and_target


def test_t5_v1_prompt_is_the_vqascore_prompt(tiny):
    _, processor = tiny
    question = 'Does this figure show "a red circle"? Please answer yes or no.'
    conversation = [human(question + "\n<image>"), gpt("Yes")]
    prompt, target = build_prompt_and_target(conversation, "t5_v1", has_image=True, processor=processor)
    # The independent re-implementation of the original procedure builds the same string.
    assert prompt == vqa_prompt("a red circle")
    assert target == "Yes"


def test_t5_v1_multi_turn_and_text_only(tiny):
    _, processor = tiny
    conversation = [human("<image>\nWhat is it?"), gpt("A cat."), human("Is it black?"), gpt("No.")]
    prompt, target = build_prompt_and_target(conversation, "t5_v1", has_image=True, processor=processor)
    assert prompt == f"{SYSTEM_MESSAGE} USER: <image>\nWhat is it? ASSISTANT: A cat. USER: Is it black? ASSISTANT: "
    assert target == "No."
    prompt, target = build_prompt_and_target(
        [human("Is red a color?"), gpt("Yes")], "t5_v1", has_image=False, processor=processor
    )
    assert prompt == f"{SYSTEM_MESSAGE} USER: Is red a color? ASSISTANT: "
    assert "<image>" not in prompt
    # A leading non-human message is dropped, as in the original.
    prompt, _ = build_prompt_and_target([gpt("hello"), human("Q"), gpt("A")], "t5_v1", False, processor=processor)
    assert prompt == f"{SYSTEM_MESSAGE} USER: Q ASSISTANT: "
    # A stray placeholder in a later turn is dropped: the row has one image.
    conversation = [human("What is it?\n<image>"), gpt("A cat."), human("<image>\nAnd this?"), gpt("A dog.")]
    prompt, _ = build_prompt_and_target(conversation, "t5_v1", True, processor=processor)
    assert prompt == f"{SYSTEM_MESSAGE} USER: <image>\nWhat is it? ASSISTANT: A cat. USER: \nAnd this? ASSISTANT: "
    with pytest.raises(ValueError, match="chat template"):
        build_prompt_and_target([human("Q"), gpt("A")], "t5_v1", False)


def test_t5_v1_empty_messages_are_written_as_the_original_did(tiny):
    _, processor = tiny
    conversation = [human("Q"), gpt(""), human("Q2"), gpt("A")]
    prompt, _ = build_prompt_and_target(conversation, "t5_v1", False, processor=processor)
    assert prompt == f"{SYSTEM_MESSAGE} USER: Q ASSISTANT:USER: Q2 ASSISTANT: "
    prompt, _ = build_prompt_and_target([human("<image>"), gpt("A")], "t5_v1", True, processor=processor)
    assert prompt == f"{SYSTEM_MESSAGE} USER: <image> ASSISTANT: "


def test_stage1_templates():
    conversation = [human("<image>\nDescribe it briefly."), gpt("a dog running on the beach")]
    assert build_prompt_and_target(conversation, "t5_plain", True) == ("<image>", "a dog running on the beach")
    caption = conversation[1]["value"]
    splits = set()
    for seed in range(200):
        prompt, target = build_prompt_and_target(conversation, "t5_plain_split_text", True, random.Random(seed))
        assert prompt.startswith("<image>")
        prefix = prompt[len("<image>") :]
        assert prefix + target == caption
        splits.add(len(prefix))
    # s is uniform in [1, len(caption) // 2]: every value shows up, nothing outside.
    assert splits == set(range(1, len(caption) // 2 + 1))
    assert build_prompt_and_target([human("<image>"), gpt("a")], "t5_plain_split_text", True) == ("<image>", "a")
