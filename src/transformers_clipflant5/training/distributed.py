# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""Distributed set-up that the launchers leave undone on CPU-only machines."""

import torch


def init_deepspeed_comm_for_zero3() -> None:
    """
    Under a ZeRO-3 config, make DeepSpeed's communication layer use the process group accelerate already started.

    On GPUs accelerate initialises `deepspeed.comm` itself. On CPU (gloo) it starts only `torch.distributed`, and
    `deepspeed.zero.Init`, which `from_pretrained` enters under ZeRO-3, then counts a world of one process and
    rejects the global batch the Trainer computed for all of them (`train_batch_size is not equal to
    micro_batch_per_gpu * gradient_acc_step * world_size`). Nothing happens outside ZeRO-3 or a distributed launch.
    """
    from transformers.integrations import is_deepspeed_zero3_enabled

    if not is_deepspeed_zero3_enabled() or not torch.distributed.is_initialized():
        return
    from deepspeed import comm

    if not comm.is_initialized():
        # Wraps the existing process group; nothing new is started.
        comm.init_distributed(dist_backend=torch.distributed.get_backend(), auto_mpi_discovery=False)
