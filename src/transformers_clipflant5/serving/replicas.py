# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""One VQAScore model per device, each scoring on a thread of its own (torch releases the GIL while it computes, so
replicas on several GPUs run at once and the server's event loop stays free to take requests)."""

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import torch

from ..scoring.devices import resolve_device


logger = logging.getLogger(__name__)


def parse_devices(spec: str | None) -> list[str]:
    """The devices of `--devices`: None means every visible CUDA device, else the CPU; `"0,1"` are CUDA indices;
    `"cpu"`, `"cuda:1"` and the like are taken as they are. A ValueError names a device this machine lacks."""
    if spec is None or spec.strip() in ("", "all"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        return [f"cuda:{index}" for index in range(count)] or ["cpu"]
    devices = []
    for part in spec.split(","):
        part = part.strip()
        if not part:
            raise ValueError(f"--devices {spec!r} has an empty entry; write e.g. 0,1 or cpu.")
        name = f"cuda:{part}" if part.isdigit() else part
        resolve_device(name)  # raises for a device this machine does not have
        if name in devices:
            raise ValueError(f"--devices {spec!r} names {name} twice; one replica per device.")
        devices.append(name)
    if "cpu" in devices and len(devices) > 1:
        raise ValueError(f"--devices {spec!r}: the CPU takes one replica on its own (its threads use every core).")
    return devices


class Replica:
    """A scorer on one device, with the single thread its batches run on and how much work it holds."""

    def __init__(self, scorer, device: str):
        self.scorer = scorer
        self.device = device
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"clip-flant5-{device}")
        self.busy_batches = 0
        self.busy_items = 0
        self.scored_items = 0

    def close(self) -> None:
        self.executor.shutdown(wait=True)


def load_replicas(load: Callable[[str], object], devices: list[str]) -> list[Replica]:
    """A [`Replica`] per device, `load(device)` giving its scorer (a `VQAScore`)."""
    replicas = []
    for device in devices:
        logger.info("loading a replica on %s", device)
        replicas.append(Replica(load(device), device))
    return replicas


__all__ = ["Replica", "load_replicas", "parse_devices"]
