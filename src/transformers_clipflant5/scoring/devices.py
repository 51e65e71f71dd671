# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""Where a scorer runs: its device (and the execution device of offloaded modules) and its dtype."""

import torch
from torch import nn


def resolve_device(device: str | torch.device | None) -> torch.device:
    """`device`, or CUDA when available and the CPU otherwise; a ValueError for a device this machine lacks (torch
    would fail later, with an assertion, once weights are being moved)."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as error:
        raise ValueError(f"{device!r} is not a device ({error}).") from error
    # torch.cuda, torch.xpu, torch.mps, ...: a device type without such a module is left to torch to judge.
    backend = getattr(torch, resolved.type, None)
    if resolved.type != "cpu" and hasattr(backend, "is_available"):
        if not backend.is_available():
            raise ValueError(
                f"device {str(device)!r}: this torch ({torch.__version__}) finds no {resolved.type} device on this "
                "machine. Use the CPU, or leave the device unset to use a GPU when there is one."
            )
        count = backend.device_count() if hasattr(backend, "device_count") else None
        if resolved.index is not None and count is not None and resolved.index >= count:
            raise ValueError(
                f"device {str(device)!r}: this machine has {count} {resolved.type} device(s), numbered from 0."
            )
    return resolved


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


def execution_device(module: nn.Module, model: nn.Module) -> torch.device:
    """The device `module` computes on. With a `device_map` that offloads it to CPU RAM or disk its weights sit on the
    meta device between calls and accelerate's hook moves them in, to the hook's execution device (the main device)."""
    weight = next(module.parameters())
    if weight.device.type != "meta":
        return weight.device
    hook = getattr(module, "_hf_hook", None)
    for candidate in getattr(hook, "hooks", [hook]):
        if getattr(candidate, "execution_device", None) is not None:
            return torch.device(candidate.execution_device)
    devices = [device for device in getattr(model, "hf_device_map", {}).values() if device not in ("cpu", "disk")]
    return torch.device(devices[0] if devices else "cpu")


__all__ = ["execution_device", "resolve_device", "resolve_dtype"]
