"""`clip-flant5 env`: collecting versions, devices and attention backends. Its help is `clip_flant5_cli.env`."""

import argparse
import importlib.metadata
import platform


PACKAGES = (
    "transformers-clipflant5",
    "torch",
    "transformers",
    "tokenizers",
    "huggingface_hub",
    "safetensors",
    "accelerate",
    "trl",
    "datasets",
    "deepspeed",
    "peft",
    "flash-attn",
    "sentencepiece",
    "pillow",
)


def collect() -> dict[str, str]:
    import torch

    from transformers_clipflant5.cpu_threads import describe_cpu_threads

    info = {"python": platform.python_version(), "platform": platform.platform()}
    for package in PACKAGES:
        try:
            info[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            info[package] = "not installed"
    info["cuda available"] = str(torch.cuda.is_available())
    if torch.cuda.is_available():
        info["cuda version"] = str(torch.version.cuda)
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            info[f"gpu {index}"] = f"{props.name}, {props.total_memory / 2**30:.1f} GiB, sm_{props.major}{props.minor}"
        info["bf16 supported"] = str(torch.cuda.is_bf16_supported())
    info["mps available"] = str(getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available())
    info["cpu threads"] = describe_cpu_threads()
    backends = ["eager", "sdpa", "flex_attention"]
    try:
        from transformers.utils import is_flash_attn_2_available

        if is_flash_attn_2_available():
            backends.append("flash_attention_2")
    except ImportError:
        pass
    info["attention backends"] = ", ".join(backends)
    # torch's flags say which kernels SDPA *may* pick on CUDA; without CUDA none of them runs.
    if torch.cuda.is_available():
        info["sdpa kernels (cuda)"] = (
            f"flash={torch.backends.cuda.flash_sdp_enabled()}, "
            f"mem_efficient={torch.backends.cuda.mem_efficient_sdp_enabled()}, math={torch.backends.cuda.math_sdp_enabled()}"
        )
    else:
        info["sdpa kernels (cuda)"] = "none (no CUDA device)"
    return info


def run(args: argparse.Namespace) -> int:
    for key, value in collect().items():
        print(f"- {key}: {value}")
    return 0
