"""Several machines, proven with two "nodes" on this host: two torchrun launches (`--nnodes 2 --node-rank 0/1`, one
CPU process each, gloo) that meet at a rendezvous on 127.0.0.1, as the slurm scripts in examples/slurm/ start one
launch per node.

- Stage 2 under plain DDP and under DeepSpeed ZeRO-3, on batches that mix image and text-only rows with answers of
  different lengths: both ranks finish, and every step's loss and gradient norm, and the saved model's scores, equal a
  single-process run over the same global batches.
- `clip-flant5 score` through examples/slurm/score.sbatch (fake `srun`/`scontrol`, real torchrun): the rows left are
  split over both nodes and merged in order into a shared folder, resuming a started output; with an output folder
  that is not shared, the lost rows are reported.
- The training sbatch scripts: each node's launch line, run with a fake slurm environment up to the rendezvous (every
  argument through accelerate's own launch parsing and the training script's parser), and the batch plan.
"""

import importlib.util
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.support.images import make_images
from tests.support.paths import REPO_ROOT
from transformers_clipflant5 import VQAScore
from transformers_clipflant5.testing.demo import build_demo_model
from transformers_clipflant5.testing.synthetic import render
from transformers_clipflant5.training.stages import parse_stage_arguments


BIN = Path(sys.executable).parent
TIMEOUT = 1500  # only turns a hung rank into a failure (a slow, loaded machine stays well under it)
ENV = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1")
# DeepSpeed compiles a shared-memory op on its first CPU run (minutes on 2 cores) and caches it under
# ~/.cache/torch_extensions, where every other environment's build replaces it: keep one per environment.
ENV.setdefault("TORCH_EXTENSIONS_DIR", str(Path(sys.prefix) / "torch_extensions"))
# Measured (float32, sums in another order): 2-node DDP loss and gradient norm within 8e-8 relative of one process,
# ZeRO-3 loss within 8e-8 and gradient norm within 1e-6; the saved models' scores within 5e-7 (training moved them
# by 25%). Averaging the two ranks' mean losses instead of dividing by
# the tokens of both (--average_tokens_across_devices false) is off by 6e-3 at step 1: this catches it.
RELATIVE_TOLERANCE = 1e-5


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_nodes(make_commands, logs: list[Path], attempts: int = 5) -> list[int]:
    """Start the commands `make_commands(port)` returns (as (argv, cwd, env), one per log) side by side; returns their
    exit codes. The port was free when chosen but another process may take it before the rendezvous binds it: then
    all are stopped and started again on another port."""
    for _ in range(attempts):
        processes = []
        for (argv, cwd, env), log in zip(make_commands(free_port()), logs):
            with open(log, "w") as handle:
                processes.append(
                    subprocess.Popen(
                        argv, cwd=cwd, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
                    )
                )
        deadline = time.monotonic() + TIMEOUT
        try:
            # Once one node fails the others would wait for it at a collective: stop them (srun --kill-on-bad-exit).
            while any(process.poll() is None for process in processes) and time.monotonic() < deadline:
                if any(process.poll() for process in processes):
                    break
                time.sleep(0.2)
        finally:
            timed_out = time.monotonic() >= deadline
            for process in processes:
                if process.poll() is None:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
        codes = [process.returncode for process in processes]
        text = "\n".join(log.read_text() for log in logs)
        if timed_out:
            pytest.fail(f"a node did not finish in {TIMEOUT} s (a rank hung?); logs: {[str(log) for log in logs]}")
        if any(codes) and ("EADDRINUSE" in text or "ddress already in use" in text):
            continue
        return codes
    pytest.fail(f"no free rendezvous port in {attempts} attempts; logs: {[str(log) for log in logs]}")


def assert_succeeded(codes: list[int], logs: list[Path]) -> None:
    for code, log in zip(codes, logs):
        assert code == 0, f"{log.name} exited with {code}:\n{log.read_text()[-4000:]}"


def torchrun(node_rank: int, port: int) -> list[str]:
    return [str(BIN / "torchrun"), "--nnodes", "2", "--nproc-per-node", "1", "--node-rank", str(node_rank),
            "--master-addr", "127.0.0.1", "--master-port", str(port)]  # fmt: skip


# --------------------------------------------------------------------------------------------------------------------
# Stage 2 on two nodes


def mixed_rows(folder: Path) -> Path:
    """8 single-turn rows; with sequential sampling and 2 rows per rank: step 1 gives rank 0 two image rows and rank 1
    two text-only rows with long answers (so the ranks hold different numbers of label tokens), step 2 gives each
    rank one of each."""
    (folder / "images").mkdir(parents=True)
    answers = ["Yes", "No", "Red, green and blue are colours; so are yellow and purple.", "Circles have no corners.",
               "Yes", "Squares have four equal sides and four right angles.", "No", "Yes"]  # fmt: skip
    rows = []
    for index, (kind, answer) in enumerate(zip("IITTITTI", answers)):
        if kind == "I":
            render("red", "circle", "left", size=32).save(folder / "images" / f"{index}.png")
            question = '<image>\nDoes this figure show "a red circle on the left"? Please answer yes or no.'
            rows.append({"id": str(index), "image": f"images/{index}.png", "conversations": [
                {"from": "human", "value": question}, {"from": "gpt", "value": answer}]})  # fmt: skip
        else:
            rows.append({"id": str(index), "conversations": [
                {"from": "human", "value": f"Tell me something, please ({index})."},
                {"from": "gpt", "value": answer}]})  # fmt: skip
    path = folder / "train.json"
    path.write_text(json.dumps(rows))
    return path


def stage2_args(start: Path, data: Path, output: Path, per_device_batch: int) -> list[str]:
    return ["--model_name_or_path", str(start), "--data_path", str(data), "--image_folder", str(data.parent),
            "--output_dir", str(output), "--per_device_train_batch_size", str(per_device_batch),
            "--num_train_epochs", "1", "--learning_rate", "1e-3", "--train_sampling_strategy", "sequential",
            "--group_by_modality_length", "false", "--logging_steps", "1", "--save_strategy", "steps",
            "--save_steps", "2", "--report_to", "none", "--seed", "0", "--dataloader_num_workers", "0",
            "--dataloader_pin_memory", "false", "--activation_checkpointing", "false"]  # fmt: skip


def load_example(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def step_logs(output: Path) -> list[dict]:
    state = json.loads((output / "checkpoint-2" / "trainer_state.json").read_text())
    return [entry for entry in state["log_history"] if "loss" in entry]


@pytest.fixture(scope="module")
def stage2_setup(tmp_path_factory):
    """A tiny CLIP-FlanT5 to start from, the mixed data, and one process trained on both global batches of 4 rows."""
    root = tmp_path_factory.mktemp("stage2")
    model, processor = build_demo_model(seed=0)
    start = root / "start"
    model.save_pretrained(start)
    processor.save_pretrained(start)
    data = mixed_rows(root / "data")
    single = root / "single"
    run_stage2 = load_example("run_stage2")
    run_stage2.main(*parse_stage_arguments(stage2_args(start, data, single, per_device_batch=4)))
    return start, data, single


@pytest.mark.timeout(TIMEOUT + 60)
@pytest.mark.parametrize("engine", ["ddp", "zero3"])
def test_stage2_on_two_nodes_equals_one_process(stage2_setup, engine, tmp_path):
    start, data, single = stage2_setup
    output = tmp_path / "two-nodes"
    args = stage2_args(start, data, output, per_device_batch=2)
    if engine == "zero3":
        args += ["--deepspeed", "examples/deepspeed/zero3.json"]
    logs = [tmp_path / "node0.log", tmp_path / "node1.log"]
    codes = run_nodes(
        lambda port: [([*torchrun(rank, port), "examples/run_stage2.py", *args], REPO_ROOT, ENV) for rank in (0, 1)],
        logs,
    )
    assert_succeeded(codes, logs)
    assert "Model saved to" in logs[0].read_text()

    expected, got = step_logs(single), step_logs(output)
    assert [entry["step"] for entry in got] == [entry["step"] for entry in expected] == [1, 2]
    for mine, reference in zip(got, expected):
        assert mine["loss"] == pytest.approx(reference["loss"], rel=RELATIVE_TOLERANCE), (mine, reference)
        assert mine["grad_norm"] == pytest.approx(reference["grad_norm"], rel=RELATIVE_TOLERANCE), (mine, reference)

    # The saved folder reloads on its own and scores like the single-process model (and unlike the starting one).
    images = [data.parent / "images" / "0.png"] * 2
    texts = ["a red circle on the left", "a blue square on the right"]
    scores = VQAScore.from_pretrained(output, dtype="float32", device="cpu")(images, texts)
    reference_scores = VQAScore.from_pretrained(single, dtype="float32", device="cpu")(images, texts)
    start_scores = VQAScore.from_pretrained(start, dtype="float32", device="cpu")(images, texts)
    torch.testing.assert_close(scores, reference_scores, rtol=RELATIVE_TOLERANCE, atol=0)
    assert not torch.allclose(scores, start_scores, rtol=0.05)


# --------------------------------------------------------------------------------------------------------------------
# Slurm: a fake `srun` (one task per "node", all on this host) and `scontrol`


FAKE_SRUN = """#!/bin/bash
# One task per node, started side by side on this host, each with its node's SLURM_NODEID.
while [[ "${1:-}" == --* ]]; do shift; done
pids=()
for ((node = 0; node < SLURM_NNODES; node++)); do
    SLURM_NODEID=$node SLURM_PROCID=$node SLURM_LOCALID=0 "$@" &
    pids+=($!)
done
# As --kill-on-bad-exit: a task that fails stops the others. Each task is waited for by its pid: `wait -n` answers 127
# ("no unwaited-for child") when the tasks have all ended before it is called, which read as a failure.
status=0
for pid in "${pids[@]}"; do
    if ! wait "$pid"; then
        status=1
        kill "${pids[@]}" 2>/dev/null
    fi
done
exit $status
"""
# What `scontrol show hostnames node[1-2]` prints, the first host reachable here.
FAKE_SCONTROL = """#!/bin/bash
[[ "$1 $2 $3" == "show hostnames node[1-2]" ]] || { echo "fake scontrol: unexpected arguments $*" >&2; exit 1; }
printf '127.0.0.1\\nnode2\\n'
"""


@pytest.fixture
def slurm(tmp_path):
    """The environment of an sbatch job of `nodes` nodes, submitted from the repository root, with the fake tools on
    PATH; extra variables as keywords."""
    bin_dir = tmp_path / "slurm-bin"
    bin_dir.mkdir()
    for name, text in (("srun", FAKE_SRUN), ("scontrol", FAKE_SCONTROL)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(stat.S_IRWXU)

    def environment(nodes: int, **extra: str) -> dict[str, str]:
        return dict(
            ENV, PATH=f"{bin_dir}{os.pathsep}{BIN}{os.pathsep}{os.environ['PATH']}", SLURM_SUBMIT_DIR=str(REPO_ROOT),
            SLURM_JOB_NODELIST="node[1-2]", SLURM_NNODES=str(nodes), SLURM_JOB_ID="4321", **extra,
        )  # fmt: skip

    return environment


def sbatch(script: str, environment: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """The batch script run as slurm runs it on the first node (from a copy elsewhere, here from the repository)."""
    return subprocess.run(
        ["bash", str(REPO_ROOT / "examples" / "slurm" / script), *args],
        cwd=environment.get("SLURM_SUBMIT_DIR", REPO_ROOT), env=environment, capture_output=True, text=True, timeout=TIMEOUT,
    )  # fmt: skip


def test_sbatch_scripts_parse():
    for script in ["common.sh", "stage1.sbatch", "stage2.sbatch", "score.sbatch"]:
        result = subprocess.run(
            ["bash", "-n", str(REPO_ROOT / "examples" / "slurm" / script)], capture_output=True, text=True
        )
        assert result.returncode == 0, f"{script}: {result.stderr}"


# --------------------------------------------------------------------------------------------------------------------
# Scoring on two nodes


@pytest.fixture(scope="module")
def score_setup(tiny, tmp_path_factory):
    """A tiny model folder, 10 pairs with their images, and the API's score of every pair."""
    root = tmp_path_factory.mktemp("score")
    for part in tiny:  # model and processor
        part.save_pretrained(root / "model")
    rows = []
    for index, image in enumerate(make_images([(24, 30)] * 10, seed=5)):
        image.save(root / f"{index}.png")
        rows.append({"id": f"pair-{index}", "image": f"{index}.png", "text": f"a picture with {index} shapes"})
    (root / "pairs.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    expected = VQAScore(*tiny)([str(root / row["image"]) for row in rows], [row["text"] for row in rows])
    return root, rows, expected.tolist()


@pytest.mark.timeout(TIMEOUT + 60)
def test_score_sbatch_splits_over_two_nodes_and_resumes(score_setup, slurm, tmp_path):
    root, rows, expected = score_setup
    output = tmp_path / "shared" / "scores.jsonl"
    output.parent.mkdir()
    # Two rows were scored by an earlier, interrupted job: they are kept and not scored again.
    output.write_text("".join(json.dumps({"row": k, **rows[k], "score": 0.5}) + "\n" for k in (0, 1)))
    log = tmp_path / "job.log"

    def job(port: int):
        environment = slurm(2, GPUS_PER_NODE="1", MASTER_PORT=str(port), MODEL=str(root / "model"),
                            PAIRS=str(root / "pairs.jsonl"), OUTPUT=str(output))  # fmt: skip
        return [
            (
                ["bash", str(REPO_ROOT / "examples" / "slurm" / "score.sbatch"), "--batch-size", "2"],
                REPO_ROOT,
                environment,
            )
        ]

    codes = run_nodes(job, [log])
    assert_succeeded(codes, [log])
    text = log.read_text()
    assert "rendezvous: 2 node(s) x 1 processes, 127.0.0.1:" in text
    assert "process 0 of 2: 4 rows to score" in text and "process 1 of 2: 4 rows to score" in text
    records = [json.loads(line) for line in output.read_text().splitlines()]
    assert [record["row"] for record in records] == list(range(10))
    assert [record["score"] for record in records[:2]] == [0.5, 0.5]
    for record in records[2:]:
        assert record["id"] == rows[record["row"]]["id"]
        assert record["score"] == pytest.approx(expected[record["row"]], rel=1e-5)
    assert not list(output.parent.glob("scores.jsonl.part-*"))


@pytest.mark.timeout(TIMEOUT + 60)
def test_score_with_an_output_folder_each_node_has_its_own_reports_the_lost_rows(
    score_setup, tmp_path, capsys, monkeypatch
):
    from clip_flant5_cli import main

    root, rows, expected = score_setup
    folders = [tmp_path / "node0", tmp_path / "node1"]
    for folder in folders:  # the same inputs on both, and a relative --output: one folder per node
        folder.mkdir()
        for name in ["pairs.jsonl", *(row["image"] for row in rows)]:
            shutil.copy(root / name, folder / name)
    argv = ["-m", "transformers_clipflant5", "score", "--model", str(root / "model"), "--pairs", "pairs.jsonl",
            "--output", "scores.jsonl", "--no-progress", "--batch-size", "4"]  # fmt: skip
    logs = [tmp_path / "node0.log", tmp_path / "node1.log"]
    codes = run_nodes(lambda port: [([*torchrun(rank, port), *argv], folders[rank], ENV) for rank in (0, 1)], logs)
    assert codes[0] != 0, logs[0].read_text()[-3000:]  # torchrun exits 1 whatever its worker returned
    assert "scores of process(es) [1] (5 rows) are not in" in logs[0].read_text()
    assert "filesystem they all share" in logs[0].read_text()
    assert len((folders[0] / "scores.jsonl").read_text().splitlines()) == 5
    # As the message says: the part file copied next to --output, the same command merges it and scores nothing.
    part = next(folders[1].glob("scores.jsonl.part-*"))
    shutil.copy(part, folders[0] / part.name)
    monkeypatch.chdir(folders[0])
    with pytest.raises(SystemExit) as exit_info:
        main(argv[2:])
    assert exit_info.value.code == 0, capsys.readouterr().err
    records = [json.loads(line) for line in (folders[0] / "scores.jsonl").read_text().splitlines()]
    assert [record["row"] for record in records] == list(range(10))
    assert [record["score"] for record in records] == pytest.approx(expected, rel=1e-5)
    assert "10 of 10 rows scored (0 in this run, 10 before)" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------------------------------
# The training sbatch scripts, up to the rendezvous

RECORD_LAUNCH = """import json, os, sys
from pathlib import Path
Path(os.environ["LAUNCH_RECORDS"], "node" + os.environ["SLURM_NODEID"] + ".json").write_text(json.dumps(sys.argv[1:]))
"""


def launch_until_rendezvous(argv: list[str]):
    """What `accelerate launch ARGV` would hand torchrun's agent before the rendezvous: its launch config, the
    worker command and the environment the workers inherit (accelerate's own parsing, config loading and DeepSpeed
    launcher; only `torch.distributed.run.run`, which would start the rendezvous, is replaced)."""
    from unittest import mock

    import torch.distributed.run as distrib_run
    from accelerate.commands.launch import launch_command, launch_command_parser

    seen = {}

    def record(args):
        seen["config"], _, seen["worker_args"] = distrib_run.config_from_args(args)
        seen["env"] = {key: value for key, value in os.environ.items() if key.startswith("ACCELERATE_")}

    with mock.patch.object(distrib_run, "run", record):
        launch_command(launch_command_parser().parse_args(argv))
    return seen["config"], seen["worker_args"], seen["env"]


@pytest.mark.parametrize(
    ("script", "nodes", "global_batch", "per_device", "accumulation", "zero"),
    [("stage1.sbatch", 2, 256, 16, 1, "2"), ("stage2.sbatch", 2, 96, 6, 1, "3"), ("stage2.sbatch", 3, 96, 4, 1, "3")],
)
def test_training_sbatch_launch_line_on_every_node(
    script, nodes, global_batch, per_device, accumulation, zero, slurm, tmp_path
):
    records = tmp_path / "launches"
    records.mkdir()
    (tmp_path / "record_launch.py").write_text(RECORD_LAUNCH)
    output_dir = tmp_path / "shared" / "run"
    for step, complete in ((500, True), (1000, True), (1500, False)):  # 1500: cut short by the time limit
        (output_dir / f"checkpoint-{step}").mkdir(parents=True)
        if complete:
            (output_dir / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
    environment = slurm(nodes, LAUNCHER=f"{sys.executable} {tmp_path / 'record_launch.py'}", LAUNCH_RECORDS=str(records),
                        OUTPUT_DIR=str(output_dir))  # fmt: skip
    result = sbatch(script, environment, "--tf32", "false", "--bf16", "false")  # no GPU here to check tf32/bf16 on
    assert result.returncode == 0, result.stderr
    assert f"= {global_batch}" in result.stderr and f"resuming from {output_dir}/checkpoint-1000" in result.stderr

    example = load_example("run_stage1" if script.startswith("stage1") else "run_stage2")
    for node in range(nodes):
        config, worker_args, accelerate_env = launch_until_rendezvous(
            json.loads((records / f"node{node}.json").read_text())
        )
        assert (config.min_nodes, config.max_nodes, config.nproc_per_node) == (nodes, nodes, 8)
        assert config.rdzv_endpoint == "127.0.0.1:24321" and config.rdzv_configs["rank"] == node  # 20000 + job id
        assert accelerate_env["ACCELERATE_USE_DEEPSPEED"] == "true"
        assert accelerate_env["ACCELERATE_DEEPSPEED_CONFIG_FILE"] == f"examples/deepspeed/zero{zero}.json"
        assert (REPO_ROOT / accelerate_env["ACCELERATE_DEEPSPEED_CONFIG_FILE"]).is_file()
        script_path, *script_args = worker_args[worker_args.index("-u") + 1 :]
        assert script_path == f"examples/{example.__name__}.py"
        script_arguments, training_args, _ = parse_stage_arguments(script_args)
        assert script_arguments.data_path and training_args.output_dir == str(output_dir)
        assert training_args.resume_from_checkpoint == str(output_dir / "checkpoint-1000")
        assert (training_args.per_device_train_batch_size, training_args.gradient_accumulation_steps) == (
            per_device,
            accumulation,
        )
        assert per_device * accumulation * nodes * 8 == global_batch


def test_batch_plan_keeps_the_global_batch_or_refuses(slurm):
    def plan(nodes: int, gpus: int, global_batch: int, max_per_device: int) -> subprocess.CompletedProcess:
        command = f"source examples/slurm/common.sh && slurm_rendezvous && batch_plan {global_batch} {max_per_device}"
        return subprocess.run(["bash", "-c", command], cwd=REPO_ROOT, env=slurm(nodes, GPUS_PER_NODE=str(gpus)),
                              capture_output=True, text=True)  # fmt: skip

    for nodes, gpus, global_batch, max_per_device, expected in [
        (1, 8, 256, 32, "32 per device x 1"), (8, 8, 256, 32, "4 per device x 1"), (1, 4, 256, 32, "32 per device x 2"),
        (1, 1, 96, 12, "12 per device x 8"), (1, 2, 96, 5, "4 per device x 12"), (12, 8, 96, 12, "1 per device x 1"),
    ]:  # fmt: skip
        result = plan(nodes, gpus, global_batch, max_per_device)
        assert result.returncode == 0 and f"batch: {expected} accumulation steps" in result.stderr, result.stderr
    result = plan(5, 8, 96, 12)
    assert result.returncode == 2
    assert "the global batch 96 does not split over 40 processes" in result.stderr
    assert "Pick a node count that fits: 1 2 3 4 6 12 (x 8 processes)" in result.stderr


def test_rendezvous_refuses_what_would_hang_or_misplace_ranks(slurm, tmp_path):
    def rendezvous(nodes: int, **extra: str) -> subprocess.CompletedProcess:
        command = "source examples/slurm/common.sh && slurm_rendezvous && batch_plan 256 32"
        environment = {**slurm(nodes), **extra}  # extra may replace the fixture's own variables
        return subprocess.run(["bash", "-c", command], cwd=REPO_ROOT, env=environment, capture_output=True, text=True,
                              timeout=300)  # fmt: skip

    # GPUS_PER_NODE=0 looped forever in the batch plan's list of node counts; "abc" read as an unset variable.
    # (The 300 s timeouts are hang guards for scripts that take milliseconds, not limits on their speed.)
    for value in ["0", "abc", "-8"]:
        result = rendezvous(2, GPUS_PER_NODE=value)
        assert result.returncode == 2 and f"GPUS_PER_NODE is '{value}'" in result.stderr, result.stderr
    result = rendezvous(2, GPUS_PER_NODE="8", SLURM_GPUS_ON_NODE="4")  # two ranks per GPU
    assert result.returncode == 2 and "slurm gave each node 4 GPU(s)" in result.stderr, result.stderr
    result = rendezvous(1, GPUS_PER_NODE="3")  # no node count fits: the list of node counts would be empty
    assert result.returncode == 2 and "3 processes per node, whatever the node count" in result.stderr
    # The default port stays below Linux's ephemeral ports (32768 and up) whatever the job id.
    result = rendezvous(2, SLURM_JOB_ID="14321", SLURM_GPUS_ON_NODE="8")
    assert result.returncode == 0 and "node(s) x 8 processes, 127.0.0.1:24321" in result.stderr, result.stderr
    assert "assuming 8 GPUs per node" not in result.stderr
    # Without GPUS_PER_NODE or slurm's GPU count, the assumed 8 is said, not silent.
    unset = {name: value for name, value in slurm(2).items() if name not in ("GPUS_PER_NODE", "SLURM_GPUS_ON_NODE")}
    result = subprocess.run(["bash", "-c", "source examples/slurm/common.sh && slurm_rendezvous"], cwd=REPO_ROOT,
                            env=unset, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0 and "assuming 8 GPUs per node" in result.stderr, result.stderr

    # Submitted from another folder: one clear error, not a series of "command not found".
    result = sbatch("stage1.sbatch", {**slurm(2), "SLURM_SUBMIT_DIR": str(tmp_path)})
    assert result.returncode == 2 and "run sbatch from the repository root" in result.stderr, result.stderr
    assert "command not found" not in result.stderr
