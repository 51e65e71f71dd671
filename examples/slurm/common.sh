# shellcheck shell=bash
# Shared by the sbatch scripts of this folder (sourced, not run): the rendezvous taken from slurm's environment, the
# batch plan that keeps the paper's global batch whatever the number of nodes, resuming from the last checkpoint,
# and the launch lines (one slurm task per node, each starting the processes of its node's GPUs).
#
# Tunable through the environment (sbatch passes the submitting shell's environment on):
#   GPUS_PER_NODE   processes per node (default: slurm's SLURM_GPUS_ON_NODE, else 8)
#   MASTER_PORT     rendezvous port on the first node (default: 20000 + job id % 10000, so that two jobs sharing a
#                   node do not collide, and below the kernel's ephemeral ports)
#   LAUNCHER        the launcher program (default: "accelerate launch" for training, "torchrun" for scoring); set it
#                   to "echo accelerate launch" to print each node's launch line instead of running it.

set -euo pipefail

# The repository root: sbatch runs a copy of the script from slurm's spool folder, so paths start from where sbatch
# was called (the repository root, on a filesystem every node sees).
cd "${SLURM_SUBMIT_DIR:-$PWD}"
COMMON_SH="$PWD/examples/slurm/common.sh"

fail() {
    echo "error: $*" >&2
    exit 2
}

# Sets and exports NNODES, GPUS_PER_NODE, TOTAL_PROCESSES, MASTER_ADDR and MASTER_PORT from slurm's environment. The
# first node of the allocation hosts the rendezvous.
slurm_rendezvous() {
    [[ -n "${SLURM_JOB_NODELIST:-}" && -n "${SLURM_NNODES:-}" ]] ||
        fail "SLURM_JOB_NODELIST/SLURM_NNODES are not set: submit this script with sbatch (see its header)."
    NNODES=$SLURM_NNODES
    if [[ -z "${GPUS_PER_NODE:-}" && -z "${SLURM_GPUS_ON_NODE:-}" ]]; then
        # Said aloud: on a node with fewer GPUs the job fails at its first NCCL call, after the model has loaded.
        echo "GPUS_PER_NODE is unset and slurm gave no SLURM_GPUS_ON_NODE (submit with --gpus-per-node):" \
            "assuming 8 GPUs per node." >&2
    fi
    GPUS_PER_NODE=${GPUS_PER_NODE:-${SLURM_GPUS_ON_NODE:-8}}
    # Checked before any arithmetic: bash reads "abc" as an unset variable and 0 as a world of no processes, which
    # made node_counts_dividing below loop forever.
    [[ "$GPUS_PER_NODE" =~ ^[1-9][0-9]*$ ]] ||
        fail "GPUS_PER_NODE is '$GPUS_PER_NODE': set it to the number of GPUs per node (a positive integer)," \
            "or submit with sbatch --gpus-per-node N."
    # More processes than the node's GPUs would put two ranks on one GPU (NCCL stops with "Duplicate GPU detected"
    # only once the model has loaded).
    if [[ "${SLURM_GPUS_ON_NODE:-}" =~ ^[0-9]+$ ]] && ((GPUS_PER_NODE > SLURM_GPUS_ON_NODE)); then
        fail "GPUS_PER_NODE=$GPUS_PER_NODE but slurm gave each node $SLURM_GPUS_ON_NODE GPU(s):" \
            "unset GPUS_PER_NODE, or submit with sbatch --gpus-per-node $GPUS_PER_NODE."
    fi
    TOTAL_PROCESSES=$((NNODES * GPUS_PER_NODE))
    # Not `| head -n 1`: with pipefail, scontrol killed by SIGPIPE on a long node list would fail the job.
    local hosts
    hosts=$(scontrol show hostnames "$SLURM_JOB_NODELIST")
    MASTER_ADDR=${hosts%%$'\n'*}
    # 20000-29999: below Linux's ephemeral range (32768-60999), where an outgoing connection may already hold the port.
    MASTER_PORT=${MASTER_PORT:-$((20000 + ${SLURM_JOB_ID:-0} % 10000))}
    export NNODES GPUS_PER_NODE TOTAL_PROCESSES MASTER_ADDR MASTER_PORT
    echo "rendezvous: $NNODES node(s) x $GPUS_PER_NODE processes, $MASTER_ADDR:$MASTER_PORT" >&2
}

# batch_plan GLOBAL MAX_PER_DEVICE: sets PER_DEVICE_BATCH and GRAD_ACCUM so that
#   PER_DEVICE_BATCH x GRAD_ACCUM x TOTAL_PROCESSES = GLOBAL   (the paper's 256 for stage 1, 96 for stage 2)
# with PER_DEVICE_BATCH <= MAX_PER_DEVICE (the paper's per-GPU batch on 8 GPUs, which fits an A100-80G) and as few
# accumulation steps as possible. More nodes shrink the per-device batch (2 nodes x 8 GPUs: stage 1 16 x 1, stage 2
# 6 x 1), fewer GPUs raise the accumulation (1 node x 4 GPUs: stage 1 32 x 2, stage 2 12 x 2). A world size that
# does not divide the global batch is refused rather than silently training with another batch.
batch_plan() {
    local global=$1 max_per_device=$2
    if ((global % TOTAL_PROCESSES != 0)); then
        local counts
        counts=$(node_counts_dividing "$global")
        # No node count fits when GPUS_PER_NODE itself does not divide the global batch: say what to change then.
        [[ -n "$counts" ]] ||
            fail "the global batch $global does not split over $GPUS_PER_NODE processes per node, whatever the node" \
                "count: use nodes whose GPU count divides $global (set GPUS_PER_NODE / sbatch --gpus-per-node)."
        fail "the global batch $global does not split over $TOTAL_PROCESSES processes ($NNODES node(s) x $GPUS_PER_NODE)." \
            "Pick a node count that fits: $counts (x $GPUS_PER_NODE processes)."
    fi
    local per_process=$((global / TOTAL_PROCESSES))
    GRAD_ACCUM=1
    while ((per_process % GRAD_ACCUM != 0 || per_process / GRAD_ACCUM > max_per_device)); do
        GRAD_ACCUM=$((GRAD_ACCUM + 1))
    done
    PER_DEVICE_BATCH=$((per_process / GRAD_ACCUM))
    echo "batch: $PER_DEVICE_BATCH per device x $GRAD_ACCUM accumulation steps x $TOTAL_PROCESSES processes = $global" >&2
}

node_counts_dividing() {
    local global=$1 nodes counts=()
    for ((nodes = 1; nodes * GPUS_PER_NODE <= global; nodes++)); do
        if ((global % (nodes * GPUS_PER_NODE) == 0)); then
            counts+=("$nodes")
        fi
    done
    # `:-`: bash < 4.4 calls an empty array unbound under `set -u`.
    echo "${counts[*]:-}"
}

# find_checkpoint OUTPUT_DIR: sets RESUME_ARGS to "--resume_from_checkpoint <the newest complete checkpoint>" if
# OUTPUT_DIR holds one (else to nothing), so that submitting the same job again, or slurm requeueing it, continues
# where it stopped. A checkpoint counts once its trainer_state.json exists, which the trainer writes last: a save cut
# short by the time limit is passed over.
# shellcheck disable=SC2034  # RESUME_ARGS is read by the sbatch scripts
find_checkpoint() {
    local checkpoint latest="" latest_step=-1 step
    for checkpoint in "$1"/checkpoint-*; do
        step=${checkpoint##*-}
        [[ -f "$checkpoint/trainer_state.json" && "$step" =~ ^[0-9]+$ ]] || continue
        if ((step > latest_step)); then
            latest=$checkpoint latest_step=$step
        fi
    done
    RESUME_ARGS=()
    if [[ -n "$latest" ]]; then
        echo "resuming from $latest" >&2
        RESUME_ARGS=(--resume_from_checkpoint "$latest")
    fi
}

# on_every_node FUNCTION ARGS...: one slurm task per node, each running FUNCTION (from this file) with ARGS; the
# node's rank (SLURM_NODEID) is only known inside the task.
on_every_node() {
    # The task gets every CPU of its node (srun would give it one by default): 8 processes and their data loaders.
    # shellcheck disable=SC2016  # $0 and $@ are the task's own
    srun --nodes="$NNODES" --ntasks="$NNODES" --ntasks-per-node=1 --kill-on-bad-exit=1 \
        ${SLURM_CPUS_ON_NODE:+--cpus-per-task="$SLURM_CPUS_ON_NODE"} \
        bash -c 'source "$0" && "$@"' "$COMMON_SH" "$@"
}

# launch_training ZERO_STAGE SCRIPT ARGS...: this node's accelerate launch of a training script under DeepSpeed
# (examples/accelerate/deepspeed_zero{2,3}_multinode.yaml); the launch line sets what the config leaves to slurm.
launch_training() {
    local zero=$1
    shift
    local launcher
    read -ra launcher <<<"${LAUNCHER:-accelerate launch}"
    "${launcher[@]}" --config_file "examples/accelerate/deepspeed_zero${zero}_multinode.yaml" \
        --num_machines "$NNODES" --num_processes "$TOTAL_PROCESSES" --machine_rank "$SLURM_NODEID" \
        --main_process_ip "$MASTER_ADDR" --main_process_port "$MASTER_PORT" "$@"
}

# launch_score ARGS...: this node's torchrun of `clip-flant5 score` (one process per GPU).
launch_score() {
    local launcher
    read -ra launcher <<<"${LAUNCHER:-torchrun}"
    "${launcher[@]}" --nnodes "$NNODES" --nproc-per-node "$GPUS_PER_NODE" --node-rank "$SLURM_NODEID" \
        --master-addr "$MASTER_ADDR" --master-port "$MASTER_PORT" -m transformers_clipflant5 score "$@"
}
