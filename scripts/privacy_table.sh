#!/usr/bin/env bash
# The table of docs/privacy.md: epsilon against mean client accuracy under client-level DP.
# SST-2 with MiniLM, 20 clients (IID: with label skew the majority prior hides the cost), each taking part with probability 0.25
# (5 a round on average), 15 rounds x 10 local steps, clip norm 1, delta 1e-5; noise
# multipliers 0 (clipping only), 0.1, 0.3 and 1.0; fedit, ffa-lora and fedsa-lora, seed 0.
# About 30 minutes on 2 CPU cores. Finished runs are reused, so it can be interrupted and rerun.
# Usage: FEDSA_DATA_DIR=../shared/data scripts/privacy_table.sh
set -euo pipefail
cd "$(dirname "$0")/.."
FEDSA=${FEDSA:-.venv/bin/fedsa}
OUT=${OUT:-runs/privacy}
COMMON=(data.num_clients=20 data.partition=iid federation.clients_per_round=5 data.eval_examples_per_client=40
    federation.rounds=15 eval.every=15 federation.weighting=uniform
    privacy.mode=client privacy.clip_norm=1.0 privacy.noise_seed=1)
for z in 0 0.1 0.3 1.0; do
    $FEDSA compare configs/minilm-sst2.toml "${COMMON[@]}" privacy.noise_multiplier=$z \
        --algorithms fedit,ffa-lora,fedsa-lora --seeds 0 --out "$OUT/z$z"
done
