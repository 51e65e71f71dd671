# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""Where and how a scorer runs: its device, its dtype, its batch size."""

import torch


def resolve_device(device: str | torch.device | None) -> torch.device:
    """`device`, or CUDA when available and the CPU otherwise."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str | torch.dtype, device: torch.device) -> torch.dtype:
    """`"auto"`: bf16 on a CUDA device that supports it, fp32 elsewhere (fp16 overflows in FlanT5's activations)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    resolved = getattr(torch, str(dtype), None)
    if not isinstance(resolved, torch.dtype) or not resolved.is_floating_point:
        raise ValueError(f"dtype must be 'auto', a floating-point torch dtype or its name, got {dtype!r}.")
    return resolved


def check_batch_size(batch_size: int) -> None:
    """Raise unless `batch_size` is a positive integer."""
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")


__all__ = ["check_batch_size", "resolve_device", "resolve_dtype"]
