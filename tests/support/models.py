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


def save_model_folder(model_and_processor, folder) -> None:
    """Write a model and its processor into one folder, as a Hub repo of ours holds them."""
    model, processor = model_and_processor
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
