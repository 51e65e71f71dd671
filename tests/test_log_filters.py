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
