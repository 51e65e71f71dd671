# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""Lower-precision loading: `quantization="int8" | "int4"` as transformers quantization configs, and fp16's guard.

Backends (both run on CPU and CUDA):

- int8: torchao's `Int8WeightOnlyConfig` (int8 weights, one scale per output row), in pure PyTorch, so the accuracy
  measured on a CPU is the accuracy a GPU gets. Activations stay in the compute dtype: bitsandbytes' LLM.int8 casts
  them to fp16, which is where FlanT5 overflows.
- int4: bitsandbytes' NF4 (blocks of 64 weights, about 0.52 bytes per weight), dequantized for an ordinary matmul:
  scoring runs the encoder over whole prompts, where dequantize-then-GEMM runs at the GEMM's speed (torchao's int4
  kernel is built for decoding a few rows at a time; see docs/benchmarks.md).

What stays unquantized, in the compute dtype: the vision tower and projector (3-7% of the parameters, and every
image token passes through them), the token embedding and the LM head (evaluated on the answer's tokens only). Under
fp16 T5's `wo` projections stay in fp32, as transformers keeps them for T5. Under int4 they cannot be NF4 (T5's
feed-forward casts its input to `wo`'s weight dtype, the packed uint8, which turns scores to noise), so
[`quantize_int4_wo`] makes them torchao int8 instead. Any other transformers `quantization_config` can be passed
through `from_pretrained(..., quantization_config=...)`.
"""

import importlib
import math
import re

import torch

from clip_flant5_choices import QUANT_EXTRA_INSTALL, QUANTIZATION_CHOICES


# Full module names (transformers matches them as prefixes at module boundaries, or as regexes).
UNQUANTIZED_MODULES = ["model.vision_tower", "model.multi_modal_projector", "lm_head"]
# T5's feed-forward output projections, which transformers keeps in fp32 under fp16 (`_keep_in_fp32_modules`).
T5_WO_MODULES = r"model\.language_model\..*\.wo"
# bitsandbytes' 4-bit layout: weights in blocks of 64, each block's fp32 scale quantized to 8 bits in blocks of 256
# (double quantization) with one fp32 scale per 256 blocks.
NF4_BLOCK_SIZE = 64
NF4_SCALE_BLOCK_SIZE = 256
# The module each mode imports and the package it comes from; int4 also needs torchao for T5's `wo` (see above).
TORCHAO, BITSANDBYTES = ("torchao.quantization", "torchao"), ("bitsandbytes", "bitsandbytes")
BACKENDS = {"int8": [TORCHAO], "int4": [BITSANDBYTES, TORCHAO]}


class QuantizationBackendMissing(ImportError):
    """The package a quantization mode needs is not installed (the message names what to install)."""


def _import_backend(quantization: str):
    """The first module `quantization` needs, once every module it needs imports."""
    modules = []
    for module, package in BACKENDS[quantization]:
        try:
            modules.append(importlib.import_module(module))
        except ImportError as error:
            raise QuantizationBackendMissing(
                f"quantization={quantization!r} needs {package}, which is not installed ({error}). Install the "
                f"quantization extra: {QUANT_EXTRA_INSTALL} (or `pip install {package}`)."
            ) from error
    return modules[0]


def build_quantization_config(quantization: str, dtype: torch.dtype):
    """
    The transformers quantization config for `quantization` with activations in `dtype`: a `TorchAoConfig` for
    `"int8"`, a `BitsAndBytesConfig` (NF4) for `"int4"`.

    Raises:
        ValueError: an unknown mode.
        QuantizationBackendMissing: a backend it needs (torchao; for int4 also bitsandbytes) is not installed.
    """
    if quantization not in QUANTIZATION_CHOICES:
        raise ValueError(f"quantization must be one of {QUANTIZATION_CHOICES} or None, got {quantization!r}.")
    backend = _import_backend(quantization)
    if quantization == "int8":
        from transformers import TorchAoConfig

        return TorchAoConfig(backend.Int8WeightOnlyConfig(), modules_to_not_convert=unquantized_modules(dtype, "int8"))
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=dtype,
        llm_int8_skip_modules=unquantized_modules(dtype, "int4"),
    )


def unquantized_modules(dtype: torch.dtype, quantization: str = "int8") -> list[str]:
    """The modules a quantized model keeps in higher precision (see the module docstring for why)."""
    if dtype == torch.float16 or quantization == "int4":
        return [*UNQUANTIZED_MODULES, T5_WO_MODULES]
    return list(UNQUANTIZED_MODULES)


def linear_quantization(name: str, dtype: torch.dtype, quantization: str | None) -> str | None:
    """How a model loaded with `quantization` and `dtype` stores the `nn.Linear` named `name`: `"int8"`, `"int4"`,
    or None (unquantized, in the compute dtype or, for `wo` under fp16, fp32)."""
    from transformers.quantizers.quantizers_utils import should_convert_module

    if quantization is None:
        return None
    if should_convert_module(name, unquantized_modules(dtype, quantization)):
        return quantization
    if quantization == "int4" and dtype != torch.float16 and re.fullmatch(T5_WO_MODULES, name):
        return "int8"
    return None


def quantize_int4_wo(model: torch.nn.Module, dtype: torch.dtype) -> None:
    """After an int4 load, make T5's `wo` projections (loaded in the compute dtype, see the module docstring) torchao
    int8 weight-only, as `quantization="int8"` stores them. Not under fp16, where they stay in fp32."""
    if dtype == torch.float16:
        return
    torchao_quantization = _import_backend("int8")

    def is_plain_wo(module: torch.nn.Module, name: str) -> bool:
        # bitsandbytes' Linear4bit subclasses nn.Linear: only the plain linears left in the compute dtype qualify.
        return type(module) is torch.nn.Linear and linear_quantization(name, dtype, "int4") == "int8"

    torchao_quantization.quantize_(model, torchao_quantization.Int8WeightOnlyConfig(), filter_fn=is_plain_wo)


def check_finite_scores(scores: torch.Tensor, model: torch.nn.Module) -> None:
    """Raise if scores came out NaN/inf: in fp16 that is FlanT5's activations overflowing, and the scores are void."""
    if bool(torch.isfinite(scores).all()):
        return
    dtype = model.dtype
    if dtype == torch.float16:
        raise FloatingPointError(
            "VQAScore produced NaN/inf in float16: FlanT5's activations overflowed fp16's range (max 65504). Loading "
            "with dtype='float16' keeps T5's `wo` projections (where FlanT5's largest values arise) in fp32, which a "
            "model cast with .half() loses; if that was not enough, load with dtype='bfloat16' (same memory as fp16, "
            "fp32's range) or 'float32'."
        )
    raise FloatingPointError(f"VQAScore produced NaN/inf with the model in {dtype}; its weights may be corrupt.")


def linear_weight_bytes(in_features: int, out_features: int, quantization: str | None, dtype_bytes: int) -> int:
    """Bytes of an `nn.Linear` weight as stored: the raw weight in `dtype_bytes`, int8 with one fp32 scale per output
    row, or NF4 (int4) packed two per byte with one 8-bit scale per block of 64 weights and one fp32 scale per 256
    blocks (bitsandbytes' double quantization; its few constant bytes per tensor are left out)."""
    if quantization is None:
        return in_features * out_features * dtype_bytes
    if quantization == "int8":
        return in_features * out_features + out_features * 4
    if quantization == "int4":
        blocks = math.ceil(in_features * out_features / NF4_BLOCK_SIZE)
        return math.ceil(in_features * out_features / 2) + blocks + 4 * math.ceil(blocks / NF4_SCALE_BLOCK_SIZE)
    raise ValueError(f"Unknown quantization {quantization!r}.")


__all__ = [
    "QUANTIZATION_CHOICES",
    "QuantizationBackendMissing",
    "build_quantization_config",
    "check_finite_scores",
    "linear_quantization",
    "linear_weight_bytes",
    "quantize_int4_wo",
    "unquantized_modules",
]
