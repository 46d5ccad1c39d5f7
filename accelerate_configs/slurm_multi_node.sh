#!/usr/bin/env bash
# Multi-node training under SLURM: one `accelerate launch` per node, each starting one process per GPU.
#
#   sbatch accelerate_configs/slurm_multi_node.sh recipes/conll.json [--field value ...]
#   CONFIG=accelerate_configs/deepspeed_zero3.yaml \
#       sbatch accelerate_configs/slurm_multi_node.sh recipes/conll.json --bf16 true
#
# CONFIG (default accelerate_configs/multi_node.yaml) gives the distributed type and precision; node count, GPUs per
# node, machine rank and the main node's address come from SLURM and override the file. Run it from the repository
# root, with output_dir on a file system every node sees. The recipe's `resume_from_checkpoint: "last"` lets a
# requeued job (`--requeue`, preemption) continue from its last complete checkpoint with the same command, and
# `enable_jit_checkpoint: true` saves one when SLURM sends SIGTERM (--signal below) before the time limit.
#SBATCH --job-name=seqft
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=32
#SBATCH --time=24:00:00
#SBATCH --output=%x-%j.out
#SBATCH --signal=TERM@120
set -euo pipefail

if [[ $# -lt 1 ]]; then
    echo "usage: sbatch $0 RECIPE.json [--field value ...]" >&2
    exit 2
fi
CONFIG="${CONFIG:-accelerate_configs/multi_node.yaml}"
GPUS_PER_NODE="${SLURM_GPUS_ON_NODE:-8}"
NNODES="${SLURM_NNODES:-1}"
# sed, not head: head would exit early and fail the pipeline with SIGPIPE under pipefail
MAIN_ADDR="$(scontrol show hostnames "${SLURM_JOB_NODELIST}" | sed -n 1p)"
MAIN_PORT="${MAIN_PORT:-29500}"

export OMP_NUM_THREADS="${OMP_NUM_THREADS:-8}"
export TOKENIZERS_PARALLELISM=false

# One task per node; SLURM_NODEID (0 .. NNODES-1) becomes the machine rank. Single quotes: expanded on each node.
srun --kill-on-bad-exit=1 bash -c 'accelerate launch \
    --config_file "$0" \
    --num_machines "$1" \
    --num_processes "$(( $1 * $2 ))" \
    --machine_rank "$SLURM_NODEID" \
    --main_process_ip "$3" \
    --main_process_port "$4" \
    --rdzv_backend static \
    -m seqft.train "${@:5}"' "$CONFIG" "$NNODES" "$GPUS_PER_NODE" "$MAIN_ADDR" "$MAIN_PORT" "$@"
