"""`clip-flant5 env` reports what this machine can run: no CUDA attention kernels without CUDA, the CPU threads."""

import torch

from clip_flant5_cli.env.command import collect


def test_env_lists_cuda_kernels_only_with_cuda_and_says_the_cpu_threads():
    info = collect()
    if torch.cuda.is_available():
        assert info["sdpa kernels (cuda)"].startswith("flash=")
    else:
        assert info["sdpa kernels (cuda)"] == "none (no CUDA device)"
    assert info["cpu threads"].startswith(f"{torch.get_num_threads()} CPU thread")
