"""The stage scripts import the package before transformers and TRL, so that its log filters and OpenMP wait policy
apply to them: no torchao kernel or torch deprecation lines, idle OpenMP threads sleep."""

import os
import subprocess
import sys

from tests.support.paths import REPO_ROOT


def test_stage2_script_starts_quiet_with_sleeping_openmp_threads():
    env = {key: value for key, value in os.environ.items() if key != "OMP_WAIT_POLICY"}
    env.update(HF_HUB_OFFLINE="1", OMP_DISPLAY_ENV="VERBOSE")
    script = REPO_ROOT / "examples" / "run_stage2.py"
    result = subprocess.run(
        [sys.executable, str(script), "--help"], capture_output=True, text=True, env=env, timeout=600
    )
    assert result.returncode == 0, result.stderr
    for noise in ("_C_mxfp8", "_C_cutlass", "is an Enum subclass"):
        assert noise not in result.stderr, result.stderr
    # GNU OpenMP prints its settings as torch loads it: no spinning (its default is 300,000 iterations per wait).
    spin = [line for line in result.stderr.splitlines() if line.strip().startswith("GOMP_SPINCOUNT")]
    assert not spin or spin[0].split("=")[1].strip() == "'0'", spin
