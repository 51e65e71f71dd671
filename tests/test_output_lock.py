"""One writer per output: the lock refuses a second holder at once, naming the first, and a killed holder blocks
nobody."""

import signal
import socket

import pytest

from tests.support.faults import held_by_another_process
from transformers_clipflant5.output_lock import OutputInUseError, exclusive_output, lock_path, read_holder


def test_a_second_holder_is_refused_with_the_first_ones_host_and_pid(tmp_path):
    output = tmp_path / "scores.jsonl"
    with held_by_another_process(output, tmp_path) as holder:
        assert read_holder(output)["pid"] == holder.pid
        with pytest.raises(OutputInUseError) as refused:
            with exclusive_output(output, "--output"):
                pytest.fail("the lock was taken twice")
        message = str(refused.value)
        assert message.startswith(f"--output {output} is being written by process {holder.pid} on host ")
        assert socket.gethostname() in message and "\n" not in message
    # Released when the holder is done: taken at once, and the holder file names this process.
    with exclusive_output(output):
        assert read_holder(output)["pid"] != holder.pid
    assert read_holder(output) is None and lock_path(output).name == ".scores.jsonl.lock"


def test_a_killed_holder_blocks_nobody(tmp_path):
    output = tmp_path / "out"
    with held_by_another_process(output, tmp_path) as holder:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        # The kernel dropped the lock with the process; its files are still there, stale.
        assert lock_path(output).exists() and read_holder(output)["pid"] == holder.pid
        with exclusive_output(output):
            pass
