"""The model's forward never waits on the device once value checks are off, and compiles as one graph.

A host-device sync stalls the GPU's queue on every step. It shows as an aten call that reads a value back to the host
(`.item()`, `bool(tensor)`: tagged `data_dependent_output`) or whose output size depends on values (`nonzero`,
`masked_select`: tagged `dynamic_output_shape`); `masked_scatter`'s backward runs `masked_select` inside. Indexing
(`aten.index`) carries that tag for boolean-mask indices only: with integer indices the output takes their shape.
"""

import copy
import traceback

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from tests.support.original_reference import vqa_prompt


SYNCING_TAGS = (torch.Tag.data_dependent_output, torch.Tag.dynamic_output_shape)
SYNCING_COMPOSITES = (torch.ops.aten.masked_scatter_backward.default,)


def syncs(func, args) -> bool:
    if func is torch.ops.aten.index.Tensor:
        return any(index is not None and index.dtype in (torch.bool, torch.uint8) for index in args[1])
    return func in SYNCING_COMPOSITES or any(tag in func.tags for tag in SYNCING_TAGS)


class SyncRecorder(TorchDispatchMode):
    """Records each aten call that makes the host wait on the device, with the Python stack that made it."""

    def __init__(self):
        super().__init__()
        self.calls: list[tuple[str, list[str]]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if syncs(func, args):
            self.calls.append((str(func), [frame.filename for frame in traceback.extract_stack()]))
        return func(*args, **(kwargs or {}))


def training_step_syncs(model, batch) -> list[tuple[str, list[str]]]:
    model.zero_grad()
    with SyncRecorder() as recorder:
        model(**batch).loss.backward()
    assert model.model.multi_modal_projector.linear_1.weight.grad is not None
    return recorder.calls


def made_in(call, file_name: str) -> bool:
    return any(path.endswith(file_name) for path in call[1])


@pytest.fixture(scope="module")
def training_model(tiny):
    return copy.deepcopy(tiny[0]).train()


@pytest.fixture(scope="module")
def padded_batch(tiny, images):
    _, processor = tiny
    texts = [vqa_prompt("a red circle"), vqa_prompt("a much longer caption about a purple star at the top")]
    return processor(images=images[:2], text=texts, text_target=["Yes", "a purple star"])


def test_value_checks_are_what_syncs_in_our_forward(training_model, padded_batch, monkeypatch):
    # The counter sees the checks (vocabulary, placeholders) while they are on: they are what the switch removes.
    monkeypatch.delenv("TRANSFORMERS_DISABLE_TORCH_CHECK", raising=False)
    ours = [
        call
        for call in training_step_syncs(training_model, padded_batch)
        if made_in(call, "input_checks_clip_flant5.py")
    ]
    assert len(ours) >= 3, ours


def test_a_training_step_without_value_checks_never_waits_on_the_device(
    training_model, padded_batch, tiny, images, monkeypatch
):
    monkeypatch.setenv("TRANSFORMERS_DISABLE_TORCH_CHECK", "1")
    # A padded batch: T5 alone would read the padding mask back to see whether it can skip it.
    assert not bool(padded_batch["attention_mask"].all())
    assert training_step_syncs(training_model, padded_batch) == []
    # Prompts of one length, without an attention mask.
    _, processor = tiny
    same_length = processor(images=images[:2], text=[vqa_prompt("a cat")] * 2, text_target=["Yes", "a purple star"])
    assert bool(same_length.pop("attention_mask").all())
    assert training_step_syncs(training_model, same_length) == []


def test_the_padding_mask_built_for_t5_gives_t5s_own_outputs(tiny, padded_batch, monkeypatch):
    monkeypatch.setenv("TRANSFORMERS_DISABLE_TORCH_CHECK", "1")
    model = copy.deepcopy(tiny[0])
    with torch.no_grad():
        decoder_input_ids = model.prepare_decoder_input_ids_from_labels(padded_batch["labels"])
        for implementation in ("eager", "sdpa"):
            model.set_attn_implementation(implementation)
            inputs_embeds, _ = model.model.embed_inputs(padded_batch["input_ids"], padded_batch["pixel_values"])
            # T5 given the 2-D mask builds its own 4-D masks.
            expected = model.model.language_model(
                inputs_embeds=inputs_embeds,
                attention_mask=padded_batch["attention_mask"],
                decoder_input_ids=decoder_input_ids,
            ).last_hidden_state
            got = model.model(
                **{k: v for k, v in padded_batch.items() if k != "labels"}, decoder_input_ids=decoder_input_ids
            )
            torch.testing.assert_close(got.last_hidden_state, expected, rtol=0, atol=0)


def test_the_model_compiles_as_one_graph(tiny, padded_batch):
    model, _ = tiny
    compiled = torch.compile(model, fullgraph=True, backend="eager")  # graph capture; inductor adds only codegen
    with torch.no_grad():
        expected, got = model(**padded_batch), compiled(**padded_batch)
    torch.testing.assert_close(got.logits, expected.logits)
    torch.testing.assert_close(got.loss, expected.loss)
