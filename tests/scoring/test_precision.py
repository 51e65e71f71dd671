"""Lower-memory loading: int8 (torchao) and int4 (bitsandbytes NF4) quantization on CPU, in our format and the
original layout, fp16 without overflow, device_map offload to CPU RAM and disk for scoring and generation, the CLI
flags, and clear errors."""

import importlib.util
import sys
from types import SimpleNamespace

import pytest
import torch
from transformers import T5Tokenizer

from clip_flant5_cli import main
from tests.support.images import make_images
from tests.support.models import randomize
from tests.support.original_reference import save_original_checkpoint
from transformers_clipflant5 import VQAScore
from transformers_clipflant5.scoring.precision import (
    QuantizationBackendMissing,
    check_finite_scores,
    linear_weight_bytes,
)
from transformers_clipflant5.testing.tiny import build_tiny_model, train_tiny_sentencepiece


needs_torchao = pytest.mark.skipif(
    importlib.util.find_spec("torchao") is None, reason='needs the quant extra: pip install -e ".[quant]"'
)
needs_bitsandbytes = pytest.mark.skipif(
    importlib.util.find_spec("bitsandbytes") is None, reason='needs the quant extra: pip install -e ".[quant]"'
)

TEXTS = ["a red circle", "a blue square on the left", "green", "a yellow cross on the top"]
# Measured on this tiny random model: int8 weights move scores by at most 1% (relative) in fp32 and bf16, fp16 (with
# `wo` kept in fp32) by 0.2%; 5% leaves room for other CPUs' kernels while still catching a broken quantization.
RELATIVE_TOLERANCE = 0.05
# NF4 has 16 levels per block of 64 weights: on the tiny random model (scores around 0.002) it moved scores by 9%
# (relative) in fp32 and 23% in bf16, with their correlation to fp32's 0.985 and 0.973. A broken 4-bit path (e.g.
# T5's feed-forward casting its activations to a packed uint8 `wo`) gives scores unrelated to fp32's.
INT4_RELATIVE_TOLERANCE = 0.35
INT4_MIN_CORRELATION = 0.9


@pytest.fixture(scope="module")
def folder(tiny, tmp_path_factory):
    model, processor = tiny
    path = tmp_path_factory.mktemp("precision") / "model"
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def pair_images():
    return make_images([(20, 40), (50, 30), (33, 33)], seed=3)


@pytest.fixture(scope="module")
def reference(folder, pair_images):
    scorer = VQAScore.from_pretrained(folder, dtype="float32", device="cpu")
    return scorer.score_matrix(pair_images, TEXTS), scorer.generate(pair_images, TEXTS[:3], max_new_tokens=6)


def relative_difference(scores: torch.Tensor, reference: torch.Tensor) -> float:
    return float(((scores - reference).abs() / reference).max())


def generate_one_by_one(scorer: VQAScore, images, prompts, max_new_tokens: int) -> list[str]:
    """The answers of the scorer's (quantized) model through plain `model.generate` on the processor's inputs, one
    prompt at a time: what `VQAScore.generate` (images encoded once, rows sorted and batched) must reproduce."""
    processor, answers = scorer.processor, []
    for image, prompt in zip(images, prompts):
        inputs = processor(images=[image], text=[processor.chat_prompt(prompt)]).to(scorer.device)
        with torch.inference_mode():
            output_ids = scorer.model.generate(**inputs, max_new_tokens=max_new_tokens)
        answers.append(processor.batch_decode(output_ids, skip_special_tokens=True)[0].strip())
    return answers


def linear(scorer: VQAScore, name: str) -> torch.nn.Module:
    return scorer.model.get_submodule(name)


T5_LINEARS = [
    "model.language_model.encoder.block.0.layer.0.SelfAttention.q",
    "model.language_model.decoder.block.1.layer.1.EncDecAttention.v",
    "model.language_model.decoder.block.1.layer.2.DenseReluDense.wo",
]
KEPT_LINEARS = ["model.vision_tower.encoder.layers.0.mlp.fc1", "model.multi_modal_projector.linear_1", "lm_head"]


@needs_torchao
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("layout", ["ours", "original"])
def test_int8_quantizes_the_t5_linears_on_cpu_and_scores_close_to_fp32(
    layout, dtype, folder, original_folder, pair_images, reference
):
    from torchao.quantization import Int8Tensor

    scorer = VQAScore.from_pretrained(
        folder if layout == "ours" else original_folder, quantization="int8", dtype=dtype, device="cpu"
    )
    for name in T5_LINEARS:
        weight = linear(scorer, name).weight
        assert isinstance(weight, Int8Tensor) and weight.qdata.dtype == torch.int8, name
    for name in KEPT_LINEARS:
        assert type(linear(scorer, name).weight) is torch.nn.Parameter, name
    assert scorer.device == torch.device("cpu")
    scores = scorer.score_matrix(pair_images, TEXTS)
    assert relative_difference(scores, reference[0]) < RELATIVE_TOLERANCE
    # The quantized weights change the scores a little, not nothing: the int8 path really ran.
    assert not torch.equal(scores, reference[0])
    # Generation runs the quantized linears too, and answers as plain generate does with them. (The fp32 answers
    # happen to be the same on this model, but greedy ties may break differently with other CPUs' int8 kernels.)
    answers = scorer.generate(pair_images, TEXTS[:3], max_new_tokens=6)
    assert answers == generate_one_by_one(scorer, pair_images, TEXTS[:3], max_new_tokens=6)
    assert len(set(answers)) > 1


def test_fp16_keeps_wo_in_fp32_and_survives_flant5_sized_activations(tiny, tmp_path, pair_images):
    """FlanT5's feed-forward outputs exceed fp16's range; transformers keeps T5's `wo` (and so the residual stream)
    in fp32 under fp16, which our composite model inherits. A model cast wholesale to fp16 overflows, and scoring then
    refuses with the reason instead of returning NaN."""
    model, processor = tiny
    model = type(model)(model.config)
    model.load_state_dict(tiny[0].state_dict())
    with torch.no_grad():
        for block in model.model.language_model.encoder.block:
            block.layer[1].DenseReluDense.wo.weight.mul_(1e5)
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    expected = VQAScore.from_pretrained(tmp_path, dtype="float32", device="cpu").score_matrix(pair_images, TEXTS)

    scorer = VQAScore.from_pretrained(tmp_path, dtype="float16", device="cpu")
    assert linear(scorer, T5_LINEARS[2]).weight.dtype == torch.float32
    assert linear(scorer, T5_LINEARS[0]).weight.dtype == torch.float16
    assert relative_difference(scorer.score_matrix(pair_images, TEXTS), expected) < RELATIVE_TOLERANCE

    scorer.model.half()
    with pytest.raises(FloatingPointError, match="bfloat16"):
        scorer.score_matrix(pair_images, TEXTS)


@needs_torchao
def test_fp16_with_int8_keeps_wo_out_of_the_quantization(folder, pair_images, reference):
    scorer = VQAScore.from_pretrained(folder, quantization="int8", dtype="float16", device="cpu")
    wo = linear(scorer, T5_LINEARS[2]).weight
    assert type(wo) is torch.nn.Parameter and wo.dtype == torch.float32
    assert relative_difference(scorer.score_matrix(pair_images, TEXTS), reference[0]) < RELATIVE_TOLERANCE


def test_device_map_offload_to_cpu_and_disk_scores_and_generates_the_same(folder, tmp_path, pair_images, reference):
    weight_bytes = sum(param.numel() * 4 for param in VQAScore.from_pretrained(folder).model.parameters())
    scorer = VQAScore.from_pretrained(
        folder,
        dtype="float32",
        device_map="auto",
        max_memory={"cpu": weight_bytes // 3},
        offload_folder=tmp_path / "offload",
    )
    assert "disk" in scorer.model.hf_device_map.values()
    # Offloaded weights are not held in RAM (transformers reads a safetensors checkpoint's disk-offloaded tensors
    # from the checkpoint itself, so the offload folder may stay empty).
    assert scorer.model.lm_head.weight.device.type == "meta"
    assert scorer.device == torch.device("cpu")
    torch.testing.assert_close(scorer.score_matrix(pair_images, TEXTS), reference[0])
    assert scorer.generate(pair_images, TEXTS[:3], max_new_tokens=6) == reference[1]


@pytest.fixture(scope="module")
def wide_folders(tmp_path_factory):
    """A tiny model 64 wide, in our format and in the original layout: bitsandbytes' CPU 4-bit kernel needs whole
    blocks of 64 input features (real FlanT5 widths are multiples of 64; the 32-wide test model is not)."""
    model, processor = build_tiny_model(seed=0, d_model=64, num_heads=8)
    randomize(model)
    root = tmp_path_factory.mktemp("precision")
    model.save_pretrained(root / "ours")
    processor.save_pretrained(root / "ours")
    save_original_checkpoint(model, train_tiny_sentencepiece(), root / "original", shards=2)
    T5Tokenizer.from_pretrained(root / "original", extra_ids=100).save_pretrained(root / "original")
    return {"ours": root / "ours", "original": root / "original"}


@pytest.fixture(scope="module")
def wide_folder(wide_folders):
    return wide_folders["ours"]


def correlation(scores: torch.Tensor, reference: torch.Tensor) -> float:
    return float(torch.corrcoef(torch.stack([scores.flatten(), reference.flatten()]))[0, 1])


@needs_bitsandbytes
@needs_torchao
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("layout", ["ours", "original"])
def test_int4_nf4_quantizes_the_t5_linears_on_cpu_and_scores_close_to_fp32(layout, dtype, wide_folders, pair_images):
    import bitsandbytes
    from torchao.quantization import Int8Tensor

    folder = wide_folders[layout]
    reference = VQAScore.from_pretrained(folder, dtype="float32", device="cpu").score_matrix(pair_images, TEXTS)
    scorer = VQAScore.from_pretrained(folder, quantization="int4", dtype=dtype, device="cpu")
    for name in T5_LINEARS[:2]:
        weight = linear(scorer, name).weight
        assert isinstance(weight, bitsandbytes.nn.Params4bit) and weight.quant_state.quant_type == "nf4", name
        assert weight.dtype == torch.uint8 and weight.quant_state.nested, name  # packed, scales double-quantized
    # `wo` is torchao int8 (T5 casts its input to `wo`'s weight dtype: a packed uint8 NF4 weight would corrupt it).
    wo = linear(scorer, T5_LINEARS[2]).weight
    assert isinstance(wo, Int8Tensor) and wo.dtype == getattr(torch, dtype)
    for name in KEPT_LINEARS:
        weight = linear(scorer, name).weight
        assert type(weight) is torch.nn.Parameter and weight.dtype == getattr(torch, dtype), name
    scores = scorer.score_matrix(pair_images, TEXTS)
    assert relative_difference(scores, reference) < INT4_RELATIVE_TOLERANCE
    assert correlation(scores, reference) > INT4_MIN_CORRELATION
    assert not torch.equal(scores, reference)
    # bitsandbytes' integer-stored weights run through the fused T5 path, with transformers' T5's scores up to
    # bitsandbytes' own precision: its packed CPU kernel turns a one-ulp fp32 difference in its input (the two paths
    # reduce RMSNorm's squares in different orders) into ~1e-3 in its output (measured: 4.2e-3 on these scores).
    assert scorer.forward.use_fused()
    through_transformers = VQAScore(scorer.model, scorer.processor, fused=False).score_matrix(pair_images, TEXTS)
    torch.testing.assert_close(scores, through_transformers, rtol=2e-2, atol=0)
    # NF4 changes this model's greedy answers (fp32 answers differ): compared with plain generate on the same
    # quantized model instead. The answers differ between rows, so a row given another's image or answer shows.
    answers = scorer.generate(pair_images, TEXTS[:3], max_new_tokens=6)
    assert answers == generate_one_by_one(scorer, pair_images, TEXTS[:3], max_new_tokens=6)
    assert len(set(answers)) > 1


def stored_bytes(weight: torch.Tensor) -> int:
    """Bytes a quantized weight holds: torchao's int8 values and scales, or bitsandbytes' packed 4-bit values and
    their (double-quantized) block scales."""
    if hasattr(weight, "quant_state"):
        state = weight.quant_state
        tensors = [weight, state.absmax, state.state2.absmax]
    else:
        tensors = [weight.qdata, weight.scale]
    return sum(tensor.numel() * tensor.element_size() for tensor in tensors)


@needs_bitsandbytes
@needs_torchao
@pytest.mark.parametrize(
    ("quantization", "folder_fixture", "name", "share"),
    [("int8", "folder", T5_LINEARS[2], 0.3), ("int4", "wide_folder", T5_LINEARS[0], 0.15)],
)
def test_quantized_weights_take_their_share_of_fp32(quantization, folder_fixture, name, share, request):
    folder = request.getfixturevalue(folder_fixture)
    fp32 = VQAScore.from_pretrained(folder, dtype="float32", device="cpu").model
    quantized = VQAScore.from_pretrained(folder, quantization=quantization, dtype="float32", device="cpu").model
    full = fp32.get_submodule(name).weight
    stored = stored_bytes(quantized.get_submodule(name).weight)
    assert stored <= share * full.numel() * full.element_size()
    assert stored == linear_weight_bytes(full.shape[1], full.shape[0], quantization, 4)


@needs_bitsandbytes
@needs_torchao
def test_fp16_with_int4_keeps_wo_in_fp32(wide_folder):
    scorer = VQAScore.from_pretrained(wide_folder, quantization="int4", dtype="float16", device="cpu")
    wo = linear(scorer, T5_LINEARS[2]).weight
    assert type(wo) is torch.nn.Parameter and wo.dtype == torch.float32
    assert linear(scorer, T5_LINEARS[0]).weight.quant_state.dtype == torch.float16


@needs_torchao
def test_unknown_or_doubled_quantization_is_refused(folder):
    from torchao.quantization import Int8WeightOnlyConfig
    from transformers import TorchAoConfig

    with pytest.raises(ValueError, match="int8"):
        VQAScore.from_pretrained(folder, quantization="int3", device="cpu")
    with pytest.raises(ValueError, match="not both"):
        VQAScore.from_pretrained(
            folder, quantization="int8", quantization_config=TorchAoConfig(Int8WeightOnlyConfig()), device="cpu"
        )


@pytest.mark.parametrize(
    ("quantization", "module", "package"),
    [
        ("int8", "torchao.quantization", "torchao"),
        ("int4", "bitsandbytes", "bitsandbytes"),
        ("int4", "torchao.quantization", "torchao"),  # for T5's `wo`, checked before anything loads
    ],
)
def test_missing_backend_names_the_extra(quantization, module, package, folder, monkeypatch):
    if quantization == "int4" and package == "torchao":
        # int4 looks for bitsandbytes first: torchao's absence shows only where bitsandbytes is there.
        pytest.importorskip("bitsandbytes")
    # A None entry in sys.modules makes `import ...` raise ImportError, as on a machine without the package.
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(QuantizationBackendMissing, match=rf'needs {package}.*pip install -e "\.\[quant\]"'):
        VQAScore.from_pretrained(folder, quantization=quantization, device="cpu")


def run_cli(argv, capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


@needs_torchao
def test_cli_quantization_and_offload_flags(folder, tmp_path, pair_images, reference, capsys, monkeypatch):
    image = tmp_path / "image.png"
    pair_images[0].save(image)
    base = ["score", "--model", str(folder), "--image", str(image), "--text", TEXTS[1], "--device", "cpu"]
    expected = VQAScore.from_pretrained(folder, device="cpu")([str(image)], [TEXTS[1]])
    quantized = VQAScore.from_pretrained(folder, quantization="int8", device="cpu")([str(image)], [TEXTS[1]])

    code, out, _ = run_cli([*base, "--quantization", "int8"], capsys)
    assert code == 0 and float(out) == pytest.approx(float(quantized), rel=1e-5)
    assert float(out) != pytest.approx(float(expected), rel=1e-7)

    code, out, _ = run_cli([*base, "--offload-folder", str(tmp_path / "offload")], capsys)
    assert code == 0 and float(out) == pytest.approx(float(expected), rel=1e-5)

    monkeypatch.setitem(sys.modules, "torchao.quantization", None)
    code, _, err = run_cli([*base, "--quantization", "int8"], capsys)
    assert code == 2 and ".[quant]" in err  # nothing could be scored: exit 2, as in --pairs mode


@needs_bitsandbytes
@needs_torchao
def test_cli_int4(wide_folder, tmp_path, pair_images, capsys):
    image = tmp_path / "image.png"
    pair_images[1].save(image)
    argv = ["score", "--model", str(wide_folder), "--image", str(image), "--text", TEXTS[0], "--device", "cpu"]
    expected = VQAScore.from_pretrained(wide_folder, quantization="int4", device="cpu")([str(image)], [TEXTS[0]])
    full = VQAScore.from_pretrained(wide_folder, device="cpu")([str(image)], [TEXTS[0]])
    code, out, _ = run_cli([*argv, "--quantization", "int4"], capsys)
    assert code == 0 and float(out) == pytest.approx(float(expected), rel=1e-5)
    assert float(out) != pytest.approx(float(full), rel=1e-7)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_one_non_finite_score_among_finite_ones_voids_the_call(dtype):
    """A single NaN or inf is refused, and in fp16 the message names the overflow and the way out."""
    model = SimpleNamespace(dtype=dtype)  # all it reads of the model
    check_finite_scores(torch.tensor([0.25, 0.75]), model)
    for bad in (float("nan"), float("inf")):
        with pytest.raises(FloatingPointError, match="overflowed" if dtype == torch.float16 else "bfloat16"):
            check_finite_scores(torch.tensor([0.25, bad, 0.75]), model)
