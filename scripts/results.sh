#!/usr/bin/env bash
# Reproduces docs/results.md: real-data comparisons with MiniLM on CPU (2 cores: about 1.5 h).
# Finished runs are reused, so the script can be interrupted and rerun.
# Usage: FEDSA_DATA_DIR=../shared/data scripts/results.sh [ALGORITHMS]
set -euo pipefail
cd "$(dirname "$0")/.."
FEDSA=${FEDSA:-.venv/bin/fedsa}
ALGOS=${1:-fedit,ffa-lora,feddpa,fedsa-lora,local-only,centralized}
OUT=${OUT:-runs/results}

$FEDSA compare configs/minilm-sst2.toml --algorithms "$ALGOS" --seeds 0,1 --out "$OUT/sst2"
# The exact and aligned methods (docs/exact_methods.md), same config and seeds.
$FEDSA compare configs/minilm-sst2.toml \
    --algorithms rolora,flora,fedex-lora,flexlora,fedsvd,fed-alora,fedrot-lora --seeds 0,1 \
    --out "$OUT/sst2-exact"
# Heterogeneous ranks (docs/heterogeneous_ranks.md): ranks 4, 8, 16 against a uniform 8, same
# config, seeds and budget; final evaluation only (eval.every=10), which changes no training.
HET=fedsa-lora,hetlora,flexlora,flora,florist
$FEDSA compare configs/minilm-sst2.toml "adapter.client_ranks=[4,8,16]" eval.every=10 \
    --algorithms "$HET" --seeds 0,1 --out "$OUT/sst2-ranks"
$FEDSA compare configs/minilm-sst2.toml eval.every=10 --algorithms "$HET" --seeds 0,1 \
    --out "$OUT/sst2-rank8"
$FEDSA compare configs/minilm-qnli.toml --algorithms "$ALGOS" --out "$OUT/qnli"
$FEDSA compare configs/minilm-rte.toml --algorithms "$ALGOS" --out "$OUT/rte"
# Adapter variants on SST-2. VeRA trains only two vectors per layer and uses lr 0.01 for every
# method in its rows (LoRA rows keep the config's 0.002).
$FEDSA compare configs/minilm-sst2.toml adapter.variant=rslora \
    --algorithms fedit,ffa-lora,fedsa-lora --out "$OUT/sst2-rslora"
$FEDSA compare configs/minilm-sst2.toml adapter.variant=vera optim.lr=0.01 \
    --algorithms fedit,ffa-lora,fedsa-lora --out "$OUT/sst2-vera"
# The A/B asymmetry analysis (the paper's Figure 2) on fedit runs: Dirichlet 0.5, 0.1 and IID.
for split in "dir05 data.dirichlet_alpha=0.5" "dir01 data.dirichlet_alpha=0.1" "iid data.partition=iid"; do
    set -- $split
    if [ ! -f "$OUT/analysis-$1/summary.json" ]; then
        $FEDSA run configs/minilm-sst2.toml algorithm=fedit "analysis.snapshot_rounds=[1,5,10]" \
            "$2" --out "$OUT/analysis-$1" --overwrite
    fi
    $FEDSA analyze "$OUT/analysis-$1"
done
