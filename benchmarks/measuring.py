"""Measuring helpers of the benchmarks: peak memory of a block (CPU resident set or CUDA allocations), timing with
device synchronisation, the achievable GEMM rate, FLOP counting and a profile of one call."""

import ctypes
import ctypes.util
import gc
import resource
import time
from pathlib import Path

import torch
from torch.autograd import DeviceType
from torch.utils.flop_counter import FlopCounterMode


def malloc_trim() -> str:
    """Give memory that glibc's malloc keeps after frees back to the OS, so that a later peak is the block's own; returns
    a note for the report ("" where there is no glibc)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        libc.malloc_trim(0)
        return "; glibc malloc_trim(0) before each method"
    except (OSError, AttributeError, TypeError):
        return ""


class PeakMemory:
    """Extra peak memory of a block in MiB, on top of what was allocated when it started: on CUDA the allocator's
    peak; on Linux the peak resident set size (VmHWM, reset through /proc/self/clear_refs after glibc has returned
    freed memory to the OS); elsewhere getrusage's max RSS, which cannot be reset."""

    def __init__(self, device: torch.device):
        self.device = device
        self.resettable = Path("/proc/self/clear_refs").exists() and Path("/proc/self/status").exists()
        if device.type == "cuda":
            self.method = "torch.cuda.max_memory_allocated"
        elif self.resettable:
            self.method = "peak RSS (VmHWM) reset before each method"
        else:
            self.method = "getrusage max RSS (cannot be reset: a later method may show 0)"

    @staticmethod
    def _status_kib(field: str) -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise KeyError(field)

    def __enter__(self):
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self.start = torch.cuda.memory_allocated(self.device)
        elif self.resettable:
            self.method = self.method.split(";")[0] + malloc_trim()
            Path("/proc/self/clear_refs").write_text("5")
            self.start = self._status_kib("VmRSS") * 1024
        else:
            self.start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            peak = torch.cuda.max_memory_allocated(self.device)
        elif self.resettable:
            peak = self._status_kib("VmHWM") * 1024
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        self.extra_mib = (peak - self.start) / 2**20


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(function, device: torch.device) -> tuple[float, float, float]:
    """(seconds, peak extra MiB, process CPU seconds) of one call."""
    with PeakMemory(device) as memory:
        synchronize(device)
        start, cpu_start = time.perf_counter(), time.process_time()
        function()
        synchronize(device)
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    return seconds, memory.extra_mib, cpu_seconds


def gemm_tflops(device: torch.device, dtype: torch.dtype, repeats: int = 5) -> float:
    """Best throughput of a square matmul in `dtype`: what this device achieves on the work models are made of."""
    size = 2048 if device.type == "cpu" else 8192
    a, b = (torch.randn(size, size, device=device).to(dtype) for _ in range(2))
    best = float("inf")
    for _ in range(repeats + 1):
        synchronize(device)
        start = time.perf_counter()
        torch.mm(a, b)
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e12


def profile(function, device: torch.device, folder: Path) -> None:
    """One call of `function` under torch.profiler: the operators by own device (CUDA) or CPU time, how busy the
    device was (kernel time over wall time: what is left is the host's work or waiting), and a Chrome trace."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    synchronize(device)
    start = time.perf_counter()
    with torch.profiler.profile(activities=activities) as profiler:
        function()
        synchronize(device)
    wall = time.perf_counter() - start
    averages = profiler.key_averages()
    own_time = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    table = averages.table(sort_by=own_time, row_limit=30, max_name_column_width=60)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "profile.txt").write_text(table)
    profiler.export_chrome_trace(str(folder / "trace.json"))
    print(table)
    if device.type == "cuda":
        # As the profiler's own table totals it: the kernel events, not the CPU operators that launched them.
        kernels = sum(e.self_device_time_total for e in averages if e.device_type == DeviceType.CUDA) / 1e6
        print(
            f"profiled run: {wall:.3f} s wall (under the profiler), device kernels {kernels:.3f} s = {100 * kernels / wall:.0f}% busy"
        )


def count_flops(function) -> tuple[float, torch.Tensor]:
    with FlopCounterMode(display=False) as counter:
        result = function()
    return counter.get_total_flops(), result
