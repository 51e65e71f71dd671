"""Importing the package (and scoring with int4) prints none of the quantization backends' log lines about kernels
it does not use, and the filters drop only those."""

import logging
import subprocess
import sys

from transformers_clipflant5.log_filters import quiet_backend_import_logs


def test_import_prints_no_backend_kernel_noise():
    # bitsandbytes is imported on the first int4 load; it logs its kernel message when imported.
    code = "import importlib.util, transformers_clipflant5, transformers.modeling_utils\n"
    code += "if importlib.util.find_spec('bitsandbytes'): import bitsandbytes"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    for noise in ("_C_mxfp8", "_C_cutlass", "is an Enum subclass", "gemm_4bit_forward"):
        assert noise not in result.stderr, result.stderr


def test_filters_drop_only_the_known_messages(caplog):
    quiet_backend_import_logs()
    quiet_backend_import_logs()  # installing twice adds nothing
    assert len(logging.getLogger("torchao").filters) == 1
    with caplog.at_level(logging.WARNING):
        logging.getLogger("torchao").warning("Failed to load /x/torchao/_C_mxfp8.so: could not load")
        logging.getLogger("torch.utils._pytree").warning(
            "<enum 'A'> is an Enum subclass and is now natively supported by torch.compile as an opaque value type."
        )
        logging.getLogger("torchao").warning("Failed to load /x/torchao/_C_other.so: a kernel we might need")
        logging.getLogger("torch.utils._pytree").warning("another pytree warning")
        logging.getLogger("bitsandbytes.backends.cpu.ops").warning(
            "Failed to load CPU gemm_4bit_forward from kernels-community: No module named 'kernels'."
        )
    assert [record.getMessage() for record in caplog.records] == [
        "Failed to load /x/torchao/_C_other.so: a kernel we might need",
        "another pytree warning",
    ]


def test_offline_kernel_trust_and_deepspeed_cpu_lines_are_dropped(caplog):
    import torch

    quiet_backend_import_logs()
    with caplog.at_level(logging.WARNING):
        logging.getLogger("kernels._internals.hf_hub").warning(
            "Skipping publisher trust check for 'kernels-community/quantization-bitsandbytes' because Hugging Face "
            "Hub is in offline mode."
        )
        logging.getLogger("kernels._internals.hf_hub").warning("Skipping publisher trust check for 'someone/else'")
        # DeepSpeed's logger does not propagate: let caplog see what its filter keeps.
        deepspeed_logger = logging.getLogger("DeepSpeed")
        propagate, deepspeed_logger.propagate = deepspeed_logger.propagate, True
        try:
            deepspeed_logger.warning(
                "Setting accelerator to CPU. If you have GPU or other accelerator, we were unable to detect it."
            )
        finally:
            deepspeed_logger.propagate = propagate
    messages = [record.getMessage() for record in caplog.records]
    assert "Skipping publisher trust check for 'someone/else'" in messages
    assert not any("kernels-community" in message for message in messages)
    # Kept where torch sees a GPU that DeepSpeed missed.
    assert any("Setting accelerator to CPU" in message for message in messages) == torch.cuda.is_available()


def test_save_pretrained_prints_no_deepspeed_accelerator_line(tmp_path):
    # DeepSpeed logs to stdout through its own handler, when transformers first checks for it.
    code = (
        "import transformers_clipflant5, torch\n"
        "from transformers_clipflant5.testing.tiny import build_tiny_model\n"
        "model, _ = build_tiny_model(seed=0)\n"
        f"model.save_pretrained({str(tmp_path)!r})\n"
        "import importlib.util\n"
        "if importlib.util.find_spec('deepspeed'): import deepspeed\n"
        "print('cuda', torch.cuda.is_available())"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    if "cuda False" in result.stdout:
        assert "Setting accelerator to CPU" not in result.stdout + result.stderr
