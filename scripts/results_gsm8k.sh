#!/usr/bin/env bash
# Reproduces the GSM8K section of docs/results.md: SmolLM2-135M-Instruct, 3 IID clients,
# fedit vs ffa-lora vs fedsa-lora, exact match on 10 fixed test questions per client, before
# (round 0 = the base model) and after. About 30 minutes on 2 shared CPU cores.
# Usage: FEDSA_DATA_DIR=../shared/data scripts/results_gsm8k.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
OUT=${OUT:-runs/gsm8k}
CONFIG=configs/smollm2-gsm8k.toml
# One BLAS/OpenMP thread: on a loaded 2-core machine two threads spin on each other and decoding
# ran 15x slower (0.2 s vs 3.1 s per step for 8 prompts).
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1}
mkdir -p "$OUT"

time nice -n 5 "$PYTHON" scripts/eval_initial.py "$CONFIG" --out "$OUT/round0.json"
time nice -n 5 "$PYTHON" -m fedsa.cli compare "$CONFIG" --algorithms fedit,ffa-lora,fedsa-lora \
    --out "$OUT"
