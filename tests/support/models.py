"""Tiny models whose outputs depend on their inputs."""

import torch


def randomize(model: torch.nn.Module, std: float = 0.4, seed: int = 0) -> torch.nn.Module:
    """Give every weight a large random value: a freshly initialised tiny T5 answers the same whatever the input,
    which would let generation tests pass vacuously."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * std)
    return model
