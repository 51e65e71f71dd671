"""Importing the package makes torch's OpenMP threads sleep when idle (they spun, and a shared machine ran scoring
10x slower on 2 threads than on 1), and torch's thread count follows the CPUs the process may use; a user's own
settings win."""

import os
import subprocess
import sys

import pytest
import torch

from transformers_clipflant5 import cpu_threads
from transformers_clipflant5.cpu_threads import cgroup_cpu_limit, describe_cpu_threads, limit_threads_to_available


def run_python(code: str, **env_changes: str | None) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    for key, value in env_changes.items():
        if value is not None:
            env[key] = value
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    return result


def gnu_openmp_spin_count(stderr: str) -> str:
    # GNU OpenMP prints its settings when it loads with OMP_DISPLAY_ENV=VERBOSE; other runtimes print no such line.
    lines = [line for line in stderr.splitlines() if line.strip().startswith("GOMP_SPINCOUNT")]
    if not lines:
        pytest.skip("torch's OpenMP runtime is not GNU OpenMP")
    return lines[0].split("=")[1].strip().strip("'")


def test_openmp_idle_threads_sleep_when_the_package_is_imported_first():
    code = "import os, transformers_clipflant5, torch; torch.ones(4).sum(); print(os.environ['OMP_WAIT_POLICY'])"
    result = run_python(code, OMP_DISPLAY_ENV="VERBOSE")
    assert result.stdout.split() == ["PASSIVE"]
    # The runtime torch loaded saw it: no spinning (its default is 300,000 iterations at every wait).
    assert gnu_openmp_spin_count(result.stderr) == "0"


@pytest.fixture
def two_threads():
    """This process on two CPUs with torch's default of one thread per CPU, as torch starts it there."""
    affinity, threads = os.sched_getaffinity(0), torch.get_num_threads()
    if len(affinity) < 2:
        pytest.skip("needs 2 CPUs")
    os.sched_setaffinity(0, sorted(affinity)[:2])
    torch.set_num_threads(2)
    yield
    os.sched_setaffinity(0, affinity)
    torch.set_num_threads(threads)


def test_threads_follow_the_available_cpus_unless_the_user_chose(two_threads, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "2")  # the user's explicit choice: kept
    assert limit_threads_to_available(available=1) == 2
    monkeypatch.delenv("OMP_NUM_THREADS")
    torch.set_num_threads(3)  # a torch.set_num_threads of the user's: kept
    assert limit_threads_to_available(available=1) == 3
    torch.set_num_threads(2)  # torch's default, one per CPU: down to a quota of one CPU
    assert limit_threads_to_available(available=1) == 1
    assert describe_cpu_threads() == "1 CPU thread"
    assert limit_threads_to_available(available=4) == 1  # never raised


def test_the_start_line_says_how_idle_threads_wait(two_threads, monkeypatch):
    monkeypatch.setenv("OMP_WAIT_POLICY", "passive")
    assert describe_cpu_threads() == "2 CPU threads, idle threads sleep (OMP_WAIT_POLICY=PASSIVE)"
    monkeypatch.delenv("OMP_WAIT_POLICY")
    monkeypatch.setattr(cpu_threads, "_policy_at_torch_load", "")  # torch was imported before the package
    assert describe_cpu_threads() == (
        "2 CPU threads, idle threads spin (torch was imported before transformers_clipflant5; on a shared machine set "
        "OMP_WAIT_POLICY=PASSIVE)"
    )


def test_cgroup_quotas_v1_and_v2(tmp_path):
    proc = tmp_path / "proc_cgroup"
    # v2: the smallest quota on the way up from the process's cgroup counts; "max" is no limit.
    proc.write_text("0::/jobs/job1\n")
    (tmp_path / "jobs" / "job1").mkdir(parents=True)
    (tmp_path / "jobs" / "job1" / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_limit(tmp_path, proc) is None
    (tmp_path / "jobs" / "cpu.max").write_text("150000 100000\n")
    assert cgroup_cpu_limit(tmp_path, proc) == 1.5
    # v1 (cpu,cpuacct hierarchy; in a container mounted at the process's own cgroup): -1 is no limit.
    v1 = tmp_path / "v1"
    (v1 / "cpu,cpuacct").mkdir(parents=True)
    proc.write_text("4:memory:/x\n3:cpu,cpuacct:/docker/abc\n")
    (v1 / "cpu,cpuacct" / "cpu.cfs_period_us").write_text("100000\n")
    (v1 / "cpu,cpuacct" / "cpu.cfs_quota_us").write_text("-1\n")
    assert cgroup_cpu_limit(v1, proc) is None
    (v1 / "cpu,cpuacct" / "cpu.cfs_quota_us").write_text("50000\n")
    assert cgroup_cpu_limit(v1, proc) == 0.5
    assert cgroup_cpu_limit(tmp_path, tmp_path / "missing") is None
