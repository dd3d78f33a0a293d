"""Time per round vs number of clients, measured side by side in one process.

``scale.py`` runs each size in its own process (needed for peak memory), so its round times
are taken minutes apart on a shared CPU. Here the federations for all sizes are prepared in one
process around one model, and their runs are interleaved (sizes rotated each repeat), so load
from other jobs hits every size alike. Each run is 2 rounds of 10 sampled clients x ``--steps``
local steps, evaluating the participants (8 dev examples each); a run's time per round is its
CPU time / 2 with torch on one thread (CPU time does not swing with other jobs' load; wall
clock is recorded too).

    HF_HUB_OFFLINE=1 FEDSA_DATA_DIR=/work/shared/data PYTHONPATH=src \
        python benchmarks/scale_time.py --sizes 10 1000 10000 --repeats 4
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any

from common import REPO, fmt, machine, scale_config, stats, table, write_json

from fedsa.engine.prepare import Federation, prepare
from fedsa.engine.simulation import run_rounds


def federation(n: int, model: str, steps: int) -> Federation:
    cfg = scale_config(n, model, 2, steps)
    return prepare(cfg)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10, 1000, 10000])
    ap.add_argument("--repeats", type=int, default=4)
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--steps", type=int, default=2)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    feds: dict[int, Federation] = {}
    for n in args.sizes:
        feds[n] = federation(n, args.model, args.steps)
        if n != args.sizes[0]:
            feds[n].model = feds[args.sizes[0]].model  # one model; every run rewrites its adapters
    batch = {
        n: statistics.mean(min(len(p), fed.cfg.federation.batch_size) for p in fed.client_train)
        for n, fed in feds.items()
    }
    times: dict[int, list[float]] = {n: [] for n in args.sizes}  # CPU s per round
    walls: dict[int, list[float]] = {n: [] for n in args.sizes}
    evals: dict[int, list[float]] = {n: [] for n in args.sizes}
    loads = [os.getloadavg()[0]]
    for rep in range(args.repeats + 1):  # repeat 0 warms up and is dropped
        k = rep % len(args.sizes)
        for n in args.sizes[k:] + args.sizes[:k]:
            cpu = time.process_time()
            _, _, history = run_rounds(feds[n])
            cpu = time.process_time() - cpu
            if rep:
                times[n].append(cpu / len(history))
                walls[n].append(statistics.mean(r["wall_s"] for r in history))
                evals[n].append(statistics.mean(r["eval_s"] for r in history))
        loads.append(os.getloadavg()[0])
    ref = args.sizes[0]
    rows: list[list[Any]] = []
    result: dict[str, Any] = {"machine": machine(), "loadavg_1min": stats(loads), "sizes": {}}
    for n in args.sizes:
        ratio = [t / r for t, r in zip(times[n], times[ref], strict=True)]
        result["sizes"][str(n)] = {
            "round_cpu_s": stats(times[n]),
            "round_wall_s": stats(walls[n]),
            "eval_s": stats(evals[n]),
            "ratio_vs_ref": stats(ratio),
            "mean_batch_size": batch[n],
        }
        rows.append(
            [
                n,
                f"{batch[n]:.1f}",
                fmt(stats(times[n]), 2),
                fmt(stats(evals[n]), 2),
                fmt(stats(ratio)),
            ]
        )
    write_json(REPO / "docs" / "benchmarks" / "scale_time.json", result)
    print(f"machine: {result['machine']}; 1-min load during: {fmt(stats(loads), 2)}")
    header = ["clients", "mean batch", "CPU s/round", "eval wall s", f"CPU ratio vs {ref} clients"]
    print(table(header, rows))


if __name__ == "__main__":
    main()
