# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""Lower-precision loading: `quantization="int8" | "int4"` as transformers quantization configs, and fp16's guard.

Backend: torchao weight-only quantization, for both sizes.

- int8 (`Int8WeightOnlyConfig`: one int8 per weight, one scale per output row) runs on CPU and CUDA alike, in pure
  PyTorch, so the accuracy measured on a CPU is the accuracy a GPU gets. Activations stay in the compute dtype
  (bf16/fp32): bitsandbytes' LLM.int8 casts them to fp16 (its `MatMul8bitLt` warns so), which is exactly where FlanT5
  overflows and why transformers keeps T5's `wo` in fp32 for it; and bitsandbytes 0.50's CPU path fails on this model.
- int4 (`Int4WeightOnlyConfig`, groups of 128 with a bf16 scale and zero point, PyTorch's own tinygemm CUDA kernel)
  needs a CUDA GPU and bf16; torchao has no packed int4 kernel for x86 CPUs (its CPU int4 stores one value per byte,
  no smaller than int8), so int4 on CPU is refused rather than silently taking int8's memory.

Any other transformers `quantization_config` (e.g. bitsandbytes' `BitsAndBytesConfig(load_in_4bit=True)` for NF4)
can be passed through `from_pretrained(..., quantization_config=...)` instead.

What stays unquantized, in the compute dtype: the CLIP vision tower and the projector (about 7% of XL's parameters
and 3% of XXL's: little memory to win, and every image token passes through them), the token embedding (transformers
never quantizes `nn.Embedding` here) and the LM head (transformers' default; scoring only evaluates it on the
answer's tokens). Under fp16 T5's `wo` projections are also kept out, in fp32, as transformers keeps them for T5.
"""

import importlib
import math

import torch


QUANTIZATION_CHOICES = ("int8", "int4")
QUANT_EXTRA_INSTALL = 'pip install -e ".[quant]"'
# Full module names (transformers matches them as prefixes at module boundaries, or as regexes).
UNQUANTIZED_MODULES = ["model.vision_tower", "model.multi_modal_projector", "lm_head"]
# T5's feed-forward output projections, which transformers keeps in fp32 under fp16 (`_keep_in_fp32_modules`).
T5_WO_MODULES = r"model\.language_model\..*\.wo"
INT4_GROUP_SIZE = 128


class QuantizationBackendMissing(ImportError):
    """The package a quantization mode needs is not installed (the message names what to install)."""


def _import_backend(module: str, quantization: str):
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise QuantizationBackendMissing(
            f"quantization={quantization!r} needs torchao, which is not installed ({error}). Install the "
            f"quantization extra: {QUANT_EXTRA_INSTALL} (or `pip install torchao`)."
        ) from error


def build_quantization_config(quantization: str, device: torch.device, dtype: torch.dtype):
    """
    The transformers `TorchAoConfig` for `quantization` (`"int8"` or `"int4"`) on `device` with activations in `dtype`.

    Raises:
        ValueError: an unknown mode, int4 off CUDA or outside bf16.
        QuantizationBackendMissing: torchao is not installed.
    """
    if quantization not in QUANTIZATION_CHOICES:
        raise ValueError(f"quantization must be one of {QUANTIZATION_CHOICES} or None, got {quantization!r}.")
    if quantization == "int4":
        if device.type != "cuda":
            raise ValueError(
                "quantization='int4' needs a CUDA GPU: torchao's packed int4 kernel (tinygemm) is CUDA-only, and its "
                "CPU int4 format stores one value per byte, saving nothing over int8. On CPU use quantization='int8'."
            )
        if dtype != torch.bfloat16:
            raise ValueError(
                f"quantization='int4' computes in bfloat16; pass dtype='bfloat16' (or 'auto'), not {dtype}."
            )
    torchao_quantization = _import_backend("torchao.quantization", quantization)
    from transformers import TorchAoConfig

    if quantization == "int8":
        quant_type = torchao_quantization.Int8WeightOnlyConfig()
    else:
        quant_type = torchao_quantization.Int4WeightOnlyConfig(
            group_size=INT4_GROUP_SIZE, int4_packing_format="tile_packed_to_4d"
        )
    return TorchAoConfig(quant_type, modules_to_not_convert=unquantized_modules(dtype))


def unquantized_modules(dtype: torch.dtype) -> list[str]:
    """The modules a quantized model keeps in higher precision (see the module docstring for why)."""
    if dtype == torch.float16:
        return [*UNQUANTIZED_MODULES, T5_WO_MODULES]
    return list(UNQUANTIZED_MODULES)


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


def linear_weight_bytes(
    in_features: int, out_features: int, quantization: str | None, dtype_bytes: int, group_size: int = INT4_GROUP_SIZE
) -> int:
    """Bytes of an `nn.Linear` weight as stored: the raw weight in `dtype_bytes`, int8 with one fp32 scale per output
    row, or int4 packed two per byte with a scale and a zero point (2 bytes each) per group of `group_size` inputs."""
    if quantization is None:
        return in_features * out_features * dtype_bytes
    if quantization == "int8":
        return in_features * out_features + out_features * 4
    if quantization == "int4":
        return in_features * out_features // 2 + out_features * math.ceil(in_features / group_size) * 2 * 2
    raise ValueError(f"Unknown quantization {quantization!r}.")


__all__ = [
    "QUANTIZATION_CHOICES",
    "QuantizationBackendMissing",
    "build_quantization_config",
    "check_finite_scores",
    "linear_weight_bytes",
    "unquantized_modules",
]
