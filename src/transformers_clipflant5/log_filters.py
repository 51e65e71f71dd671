# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""Log lines the quantization backends printed on import although nothing was wrong, filtered at their loggers.

transformers imports torchao whenever it is installed (its quantizer registry), and torchao 0.18 then logs, on every
import of this package:

- "Failed to load .../torchao/_C_mxfp8...so" and "..._C_cutlass_90a.abi3.so": CUDA-only kernels (MX fp8, SM90
  CUTLASS) that a CPU-only torch, or a torch they were not built for, cannot load. `quantization="int8"` runs plain
  PyTorch ops and `"int4"` runs bitsandbytes: neither uses them.
- "<enum 'KernelPreference'> is an Enum subclass and is now natively supported by torch.compile ...": torch's
  deprecation notice for a registration torchao makes.

And bitsandbytes, on its first use for `quantization="int4"` on a CPU with AVX512-BF16:

- "Failed to load CPU gemm_4bit_forward from kernels-community ...": an optional kernel downloaded from the Hub
  through the `kernels` package, for one-row (decoding) products; scoring multiplies whole prompts, which bitsandbytes
  does by dequantizing the weight for an ordinary matmul either way.

And on the same int4 load offline, from the `kernels` package that bitsandbytes asks for that kernel:

- "Skipping publisher trust check for 'kernels-community/...' because Hugging Face Hub is in offline mode.": about
  the same optional kernel, on every load.

DeepSpeed (installed with the `train` extra) is imported by transformers and accelerate when they check for it, e.g.
in `save_pretrained` and `clip-flant5 convert`, and then logs, on a machine without GPUs:

- "[WARNING] ... Setting accelerator to CPU. If you have GPU or other accelerator, we were unable to detect it.":
  dropped only where torch sees no accelerator either (no CUDA, XPU or MPS device), so that a GPU DeepSpeed missed
  is still reported.

Only these messages are dropped; anything else those loggers say still shows.
"""

import logging


DROPPED = {
    "torchao": ("_C_mxfp8", "_C_cutlass"),
    "torch.utils._pytree": ("is an Enum subclass and is now natively supported by torch.compile",),
    "bitsandbytes.backends.cpu.ops": ("Failed to load CPU gemm_4bit_forward from kernels-community",),
    "kernels._internals.hf_hub": ("Skipping publisher trust check for 'kernels-community/",),
    "DeepSpeed": ("Setting accelerator to CPU. If you have GPU or other accelerator, we were unable to detect it.",),
}
# Messages dropped only while this says True (called when the message is logged).
ONLY_WHEN = {"DeepSpeed": lambda: not _torch_sees_an_accelerator()}


def _torch_sees_an_accelerator() -> bool:
    import torch

    for backend in (torch.cuda, getattr(torch, "xpu", None), getattr(torch.backends, "mps", None)):
        if backend is not None and backend.is_available():
            return True
    return False


class _DropMessages(logging.Filter):
    def __init__(self, fragments: tuple[str, ...], only_when=None):
        super().__init__()
        self.fragments = fragments
        self.only_when = only_when

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if not any(fragment in message for fragment in self.fragments):
            return True
        return self.only_when is not None and not self.only_when()


def quiet_backend_import_logs() -> None:
    """Install the filters (once); call before transformers (and so torchao) is imported."""
    for name, fragments in DROPPED.items():
        logger = logging.getLogger(name)
        if not any(isinstance(existing, _DropMessages) for existing in logger.filters):
            logger.addFilter(_DropMessages(fragments, ONLY_WHEN.get(name)))


__all__ = ["quiet_backend_import_logs"]
