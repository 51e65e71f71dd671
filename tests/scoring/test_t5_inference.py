"""The fused T5 inference path (t5_inference) against transformers' T5 stacks, and VQAScore's use of it."""

import copy

import pytest
import torch
from transformers.models.t5.modeling_t5 import T5LayerNorm

from tests.support.images import make_images
from transformers_clipflant5 import VQAScore
from transformers_clipflant5.scoring import t5_inference
from transformers_clipflant5.scoring.t5_inference import _rms_norm_kernel, decode, encode, fused_t5_unsupported_reason
from transformers_clipflant5.testing.tiny import build_tiny_model


TEXTS = ["a red circle", "a blue square on the left next to a green cross and a yellow triangle", "x"]


@pytest.fixture(scope="module")
def images():
    return make_images([(20, 40), (50, 30), (33, 33)], seed=3)


def padded_batch(model, lengths, seed=0):
    generator = torch.Generator().manual_seed(seed)
    width = max(lengths)
    embeds = torch.randn(len(lengths), width, model.config.text_config.d_model, generator=generator)
    mask = (torch.arange(width)[None] < torch.tensor(lengths)[:, None]).long()
    return embeds, mask


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="the CUDA paths (fused RMSNorm kernel) need a GPU")


# 3 decoder positions take the folded cross-attention (fewer than d_kv = 8), 9 the projected keys and values.
# chunk_rows: the encoder's row-wise part in blocks of 5 of the 48 rows (the last one short), as on CPU at real sizes.
# On CUDA the stacks take other code (`_rms_norm_kernel`, one row block, CUDA's SDPA kernels): the same comparison,
# with transformers' stacks run on the GPU too (row blocks are CPU-only, so chunk_rows has no CUDA case).
@pytest.mark.parametrize("split_by_length", [True, False])
@pytest.mark.parametrize(
    "device,dtype,target_length,chunk_rows",
    [
        ("cpu", torch.float32, 3, None),
        ("cpu", torch.bfloat16, 3, None),
        ("cpu", torch.float32, 9, None),
        ("cpu", torch.float32, 3, 5),
        ("cpu", torch.bfloat16, 3, 5),
        pytest.param("cuda", torch.float32, 3, None, marks=CUDA),
        pytest.param("cuda", torch.bfloat16, 3, None, marks=CUDA),
        pytest.param("cuda", torch.float32, 9, None, marks=CUDA),
        pytest.param("cuda", torch.bfloat16, 9, None, marks=CUDA),
    ],
)
def test_encode_and_decode_equal_the_t5_stacks(
    tiny, device, dtype, target_length, split_by_length, chunk_rows, monkeypatch
):
    if chunk_rows is not None:
        monkeypatch.setattr(t5_inference, "CPU_CHUNK_BYTES", 0)
        monkeypatch.setattr(t5_inference, "CPU_MIN_CHUNK_ROWS", chunk_rows)
    model = tiny[0]
    if dtype != torch.float32:
        model = build_tiny_model(seed=1)[0].to(dtype).eval()
    elif device != "cpu":
        model = copy.deepcopy(model)  # the session's fixture stays on the CPU
    model = model.to(device)
    language_model = model.model.language_model
    embeds, mask = padded_batch(model, [7, 12, 3, 12])
    embeds, mask = embeds.to(device, dtype), mask.to(device)
    labels = torch.tensor([[5, 9, 1], [7, 1, -100], [4, 1, -100], [3, 8, 1]])
    labels = torch.cat([torch.full((4, target_length - 3), 6), labels], dim=1).to(device)
    decoder_mask = labels.ne(-100)
    decoder_input_ids = torch.cat([torch.zeros_like(labels[:, :1]), labels[:, :-1].clamp(min=0)], dim=1)
    with torch.inference_mode():
        expected_encoded = language_model.encoder(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
        expected_decoded = language_model.decoder(
            input_ids=decoder_input_ids,
            attention_mask=decoder_mask,
            encoder_hidden_states=expected_encoded,
            encoder_attention_mask=mask,
        ).last_hidden_state
        encoded = encode(language_model.encoder, embeds, mask, split_by_length=split_by_length)
        decoded = decode(language_model.decoder, decoder_input_ids, decoder_mask, encoded, mask)
    # Padded positions are free to differ: nothing downstream reads them.
    # fp32: rounding-order differences only (CUDA's kernels reduce in other orders than the CPU's); bf16: a few units
    # in the last place of outputs of order 1.
    if dtype == torch.float32:
        tolerance = dict(rtol=1e-5, atol=1e-5) if device == "cpu" else dict(rtol=1e-4, atol=1e-4)
    else:
        tolerance = dict(rtol=2e-2, atol=2e-2)
    torch.testing.assert_close(encoded[mask.bool()], expected_encoded[mask.bool()], **tolerance)
    torch.testing.assert_close(decoded[decoder_mask], expected_decoded[decoder_mask], **tolerance)
    assert encoded.dtype == dtype and decoded.dtype == dtype
    assert encoded.device == embeds.device and decoded.device == embeds.device
    # The input embeddings are not modified in place.
    torch.testing.assert_close(embeds, padded_batch(model, [7, 12, 3, 12])[0].to(device, dtype), rtol=0, atol=0)


def test_scorer_uses_the_fused_path_with_equal_scores(tiny, images, monkeypatch):
    model, processor = tiny
    fused, reference = VQAScore(model, processor, fused=True), VQAScore(model, processor, fused=False)
    calls = []
    monkeypatch.setattr(t5_inference, "encode", lambda *args, **kwargs: calls.append(1) or encode(*args, **kwargs))
    scores = fused.score_matrix(images, TEXTS, batch_size=4)
    assert len(calls) == 3  # 9 pairs, batches of 4
    calls.clear()
    expected = reference.score_matrix(images, TEXTS, batch_size=4)
    assert not calls
    torch.testing.assert_close(scores, expected, rtol=1e-5, atol=0)
    # By default (fused=None) the fused path runs where it applies.
    assert VQAScore(model, processor).forward.use_fused()


def test_fused_path_only_where_it_applies(tiny, images):
    model, processor = build_tiny_model(seed=2)
    model.eval()
    expected = VQAScore(model, processor, fused=True)(images, TEXTS)
    model.model.language_model.set_attn_implementation("eager")
    try:
        assert "eager" in fused_t5_unsupported_reason(model)
        with pytest.raises(ValueError, match="fused=True.*eager"):
            VQAScore(model, processor, fused=True)
        # fused=None scores through transformers' T5 instead: the same scores.
        scorer = VQAScore(model, processor)
        assert not scorer.forward.use_fused()
        torch.testing.assert_close(scorer(images, TEXTS), expected, rtol=1e-5, atol=0)
    finally:
        model.model.language_model.set_attn_implementation("sdpa")
    assert fused_t5_unsupported_reason(model.to(torch.float16)) is not None


def test_compiled_scorer_gives_the_same_scores(tiny, images):
    """compile=True's code path, traced by dynamo with dynamic shapes. The backend is aot_eager to keep the test short:
    inductor's code generation takes minutes on a small CPU (benchmarks/bench_score.py --compile times it)."""
    model, processor = tiny
    compiled = VQAScore(model, processor, compile={"backend": "aot_eager"})
    # One batch of 4 pairs with prompts of different lengths: each function is traced once (a batch of 1 would be
    # traced again, as dynamic shapes specialise sizes 0 and 1).
    expected = VQAScore(model, processor, fused=False).score_matrix(images[:2], TEXTS[:2], batch_size=4)
    scores = compiled.score_matrix(images[:2], TEXTS[:2], batch_size=4)
    torch.testing.assert_close(scores, expected, rtol=1e-5, atol=0)
    assert set(compiled.forward._compiled) == {"image_features", "encode", "decode"}


def test_row_blocks_fill_the_cache_budget_on_cpu_only(tiny):
    feed_forward = tiny[0].model.language_model.encoder.block[0].layer[-1]
    hidden = torch.empty(16, 432, 8)
    budget_rows = t5_inference.CPU_CHUNK_BYTES // (feed_forward.DenseReluDense.wi_0.out_features * 4)
    rows = max(budget_rows, t5_inference.CPU_MIN_CHUNK_ROWS)
    blocks = t5_inference._row_blocks(hidden, feed_forward)
    assert [(block.start, block.stop) for block in blocks] == [
        (start, start + rows) for start in range(0, 16 * 432, rows)
    ]
    assert t5_inference._row_blocks(hidden.to("meta"), feed_forward) == [slice(None)]  # off CPU: all rows at once


def test_compiled_encode_is_traced_once_for_all_batch_shapes(tiny):
    """Compiled, the encoder runs as one block: a loop over rows would recompile for every new number of rows."""
    encoder = tiny[0].model.language_model.encoder
    compiled = torch.compile(encode, backend="aot_eager", dynamic=True)
    torch._dynamo.utils.counters.clear()
    with torch.no_grad():
        for batch, length in [(4, 13), (4, 17), (3, 21)]:
            embeds, mask = padded_batch(tiny[0], [length] * batch)
            torch.testing.assert_close(
                compiled(encoder, embeds, mask, split_by_length=False),
                encode(encoder, embeds, mask, split_by_length=False),
            )
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1


def test_length_runs_of_right_padded_rows_only():
    right_padded = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 0], [1, 1, 1, 1], [1, 0, 0, 0]])
    assert t5_inference._length_runs(right_padded) == [(0, 2, 3), (2, 3, 4), (3, 4, 1)]
    # Left padding (or holes) is not split: the combined mask handles it.
    assert t5_inference._length_runs(torch.tensor([[0, 1, 1], [1, 1, 1]])) is None
    assert t5_inference._length_runs(torch.tensor([[1, 0, 1], [1, 1, 1]])) is None


def test_encode_with_left_padding_equals_the_t5_stack(tiny):
    language_model = tiny[0].model.language_model
    embeds, mask = padded_batch(tiny[0], [7, 12, 3])
    mask = mask.flip(-1)  # left-padded rows: tokens at the end
    with torch.inference_mode():
        expected = language_model.encoder(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
        encoded = encode(language_model.encoder, embeds, mask)
    torch.testing.assert_close(encoded[mask.bool()], expected[mask.bool()], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_cuda_rms_norm_kernel_rounds_as_t5_layer_norm(dtype):
    # The kernel path runs on CUDA only; its arithmetic (rms_norm without a weight, then the weight) is the same on CPU.
    norm = T5LayerNorm(64).to(dtype)
    with torch.no_grad():
        norm.weight.copy_(torch.linspace(0.3, 2.0, 64))
    hidden = (torch.randn(3, 11, 64, generator=torch.Generator().manual_seed(0)) * 5).to(dtype)
    expected = norm(hidden)
    assert torch.equal(_rms_norm_kernel(norm, hidden), expected)
    # With out=, as the encoder's final norm writes a block of rows into its output (`encoded[rows]`): the result is
    # written into that view of a larger buffer, rounded the same way, and the rows outside it are left alone. Under
    # inference_mode, as the scorer runs it (out= refuses a weight that requires grad otherwise).
    with torch.inference_mode():
        encoded = torch.full((5, 11, 64), -7.0, dtype=dtype)
        rows = encoded[1:4]
        returned = _rms_norm_kernel(norm, hidden, out=rows)
    assert returned.data_ptr() == rows.data_ptr()
    assert torch.equal(encoded[1:4], expected)
    assert torch.equal(encoded[[0, 4]], torch.full((2, 11, 64), -7.0, dtype=dtype))
