# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""How many CPU threads torch uses, and how its OpenMP threads wait: chosen so that a shared machine slows the work
down in proportion to the load, not five- to twelve-fold (benchmarks/bench_threads.py).

Two things go wrong by default on a machine whose cores other processes also use:

- OpenMP's idle threads spin. The GNU OpenMP runtime that torch's CPU wheels use keeps each worker thread busy-waiting
  for a while after every parallel region (and the main thread at every barrier), so a model of many small operators
  (the tiny models of the demo and the tests) keeps every core it has busy even between operators. When another
  process holds one of two cores, the spinning threads and that process take turns on the other: measured with the
  demo model on a loaded 2-core machine, scoring ran 5 to 8 times slower with 2 threads than with 1, training steps
  11 to 12 times (benchmarks/bench_threads.py). With `OMP_WAIT_POLICY=PASSIVE` idle threads sleep instead; in the
  same measurement 2 threads then ran 1.6 to 3.2 times faster than 1.
  OpenMP reads the variable once, when torch loads it: `set_openmp_wait_policy` must run before `import torch`, which
  importing this package does when it comes first.
- torch starts one thread per CPU in the process's affinity mask, but a container's CPU quota (cgroup `cpu.max`,
  `cpu.cfs_quota_us`) can allow fewer: threads beyond the quota only wait for each other. `limit_threads_to_available`
  lowers torch's thread count to the CPUs the process may actually use.

A user's own choice always wins: an `OMP_WAIT_POLICY` already in the environment is kept, and the thread count is left
alone when `OMP_NUM_THREADS` is set or torch's count is not its default (someone called `torch.set_num_threads`).
"""

import math
import os
import sys
from pathlib import Path


WAIT_POLICY_VARIABLE = "OMP_WAIT_POLICY"
PASSIVE = "PASSIVE"

# What `set_openmp_wait_policy` found: None before it ran, "" if torch (so OpenMP) was already loaded, else the policy.
_policy_at_torch_load: str | None = None


def set_openmp_wait_policy() -> None:
    """Make OpenMP's idle threads sleep rather than spin (`OMP_WAIT_POLICY=PASSIVE`) unless the environment already
    says otherwise; it only takes effect if torch has not been imported yet. Child processes inherit it."""
    global _policy_at_torch_load
    if _policy_at_torch_load is not None:
        return
    if "torch" in sys.modules:
        _policy_at_torch_load = ""
        return
    os.environ.setdefault(WAIT_POLICY_VARIABLE, PASSIVE)
    _policy_at_torch_load = os.environ[WAIT_POLICY_VARIABLE].upper()


def cgroup_cpu_limit(root: str | os.PathLike = "/sys/fs/cgroup", proc_cgroup: str | os.PathLike = "/proc/self/cgroup"):
    """The CPU quota of this process's cgroup in CPUs (e.g. 1.5), or None without one: the smallest quota of its
    cgroup and the cgroups above it, cgroup v2 (`cpu.max`) or v1 (`cpu.cfs_quota_us` / `cpu.cfs_period_us`)."""
    root = Path(root)
    try:
        lines = Path(proc_cgroup).read_text().splitlines()
    except OSError:
        return None
    limits = []
    for line in lines:
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and controllers == "":  # v2: one unified hierarchy
            folders, files = [root], ("cpu.max",)
        elif "cpu" in controllers.split(","):
            folders, files = [root / controllers, root / "cpu"], ("cpu.cfs_quota_us", "cpu.cfs_period_us")
        else:
            continue
        for folder in folders:
            # In a container the mounted hierarchy often starts at the process's own cgroup: try both.
            for directory in _self_and_parents(folder, path.strip("/")):
                limit = _read_quota(directory, files)
                if limit is not None:
                    limits.append(limit)
    return min(limits) if limits else None


def _self_and_parents(folder: Path, relative: str) -> list[Path]:
    parts = [part for part in relative.split("/") if part]
    return [folder.joinpath(*parts[:depth]) for depth in range(len(parts), -1, -1)]


def _read_quota(directory: Path, files: tuple[str, ...]) -> float | None:
    try:
        values = [(directory / name).read_text().split() for name in files]
    except OSError:
        return None
    if len(files) == 1:  # v2 "cpu.max": "<quota> <period>" or "max <period>"
        quota, period = (values[0] + ["100000"])[:2]
    else:
        quota, period = values[0][0], values[1][0]
    if quota in ("max", "-1"):
        return None
    try:
        quota_us, period_us = int(quota), int(period)
    except ValueError:
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


def available_cpus() -> int:
    """The CPUs this process may use: its affinity mask, capped by its cgroup's CPU quota (rounded up)."""
    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    limit = cgroup_cpu_limit()
    if limit is not None:
        count = min(count, max(1, math.ceil(limit)))
    return max(1, count)


def limit_threads_to_available(available: int | None = None) -> int:
    """Lower torch's intra-op threads to `available` CPUs (default `available_cpus()`) when torch chose them itself
    (no `OMP_NUM_THREADS`, no `torch.set_num_threads` that changed its default of one thread per CPU of the affinity
    mask); never raises them. Returns the count."""
    import torch

    threads = torch.get_num_threads()
    if "OMP_NUM_THREADS" in os.environ:
        return threads
    default = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    available = available_cpus() if available is None else available
    if threads == default and threads > available:
        torch.set_num_threads(available)
    return torch.get_num_threads()


def describe_cpu_threads() -> str:
    """For the line that starts the work: "2 CPU threads, idle threads sleep (OMP_WAIT_POLICY=PASSIVE)", or a hint
    where OpenMP's threads spin."""
    import torch

    threads = torch.get_num_threads()
    text = f"{threads} CPU thread{'s' if threads != 1 else ''}"
    if threads == 1:
        return text
    # The environment as torch found it: this package only sets the variable before torch is imported.
    policy = os.environ.get(WAIT_POLICY_VARIABLE, "").upper()
    if policy == PASSIVE:
        return f"{text}, idle threads sleep ({WAIT_POLICY_VARIABLE}={PASSIVE})"
    if policy:
        return f"{text}, {WAIT_POLICY_VARIABLE}={policy}"
    why = "torch was imported before transformers_clipflant5; " if _policy_at_torch_load == "" else ""
    return f"{text}, idle threads spin ({why}on a shared machine set {WAIT_POLICY_VARIABLE}={PASSIVE})"


__all__ = [
    "available_cpus",
    "cgroup_cpu_limit",
    "describe_cpu_threads",
    "limit_threads_to_available",
    "set_openmp_wait_policy",
]
