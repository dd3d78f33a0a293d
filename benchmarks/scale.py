"""Scale: peak memory and time per round with 1 to 10,000 simulated clients, 10 per round.

Each (clients, store) point runs in a fresh subprocess so that its peak RSS is its own:
label-Dirichlet(0.5) over all of SST-2 (67,349 sentences), MiniLM, 10 clients sampled per
round, a few local steps, each round evaluating only its participants (``eval.clients =
participants``, 8 dev examples each). Two stores:

* ``run``: the engine as is: only clients that have taken part hold private state;
* ``full``: every client holds its own private state from the start (the store is pre-filled
  with a distinct copy per client), i.e. the steady state of a long run in which every client
  has trained at least once. This is the case the memory bound is about.

The bound checked is ``peak(1 client) + 1.5 x N x private-state bytes + 300 MB``.

    HF_HUB_OFFLINE=1 FEDSA_DATA_DIR=/work/shared/data PYTHONPATH=src \
        python benchmarks/scale.py --sizes 1 10 100 1000 10000 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping
from typing import Any

from common import REPO, fmt, machine, scale_config, stats, table, write_json

MB = 1024 * 1024


def peak_rss() -> int:
    """Peak resident set size of this process in bytes (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def child(n: int, store_mode: str, model: str, rounds: int, steps: int) -> dict[str, Any]:
    import torch

    import fedsa.engine.simulation
    from fedsa.core.params import nbytes
    from fedsa.engine.prepare import prepare
    from fedsa.engine.store import ClientStore

    class FullStore(ClientStore):
        """Every client already holds its own (distinct) private tensors."""

        def __init__(self, initial: Mapping[str, torch.Tensor], client_ids: list[str]) -> None:
            super().__init__(initial, client_ids)
            for k, cid in enumerate(client_ids):
                self.put(cid, {name: t + 1e-6 * k for name, t in initial.items()})

    torch.set_num_threads(1)  # CPU time per round is then exact and independent of others' load
    start = time.perf_counter()
    cfg = scale_config(n, model, rounds, steps)
    fed = prepare(cfg)
    prepared_s = time.perf_counter() - start
    rss_prepared = peak_rss()
    if store_mode == "full":
        fedsa.engine.simulation.ClientStore = FullStore  # type: ignore[attr-defined]
    records: list[dict[str, Any]] = []
    cpu_marks = [time.process_time()]

    def on_round(record: dict[str, Any]) -> None:
        cpu_marks.append(time.process_time())
        records.append(record)

    fedsa.engine.simulation.run_rounds(fed, on_round=on_round)
    sizes = [len(p) for p in fed.client_train]
    return {
        "clients": n,
        "store": store_mode,
        "model": model,
        "private_bytes_per_client": nbytes(fed.init_private),
        "shared_bytes": nbytes(fed.init_shared),
        "peak_rss": peak_rss(),
        "peak_rss_after_prepare": rss_prepared,
        "prepare_s": prepared_s,
        "round_s": [r["wall_s"] for r in records],
        "round_cpu_s": [b - a for a, b in zip(cpu_marks[:-1], cpu_marks[1:], strict=True)],
        "eval_s": [r["eval_s"] for r in records],
        "min_client_size": min(sizes),
        "max_client_size": max(sizes),
        "loadavg_1min": os.getloadavg()[0],
    }


def run_child(n: int, store_mode: str, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", str(n), "--store", store_mode]
    cmd += ["--model", args.model, "--rounds", str(args.rounds), "--steps", str(args.steps)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def plot(points: list[dict[str, Any]], bound: dict[int, float], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for mode, marker in (("run", "o"), ("full", "s")):
        pts = sorted((p["clients"], p["peak_mb"]) for p in points if p["store"] == mode)
        label = {"run": "engine as is", "full": "every client holds private state"}[mode]
        ax.plot([x for x, _ in pts], [y for _, y in pts], marker=marker, label=label)
    xs = sorted(bound)
    ax.plot(xs, [bound[x] for x in xs], "k--", label="bound: peak(1) + 1.5 N priv + 300 MB")
    ax.set_xscale("log")
    ax.set_xlabel("simulated clients N (10 sampled per round)")
    ax.set_ylabel("peak RSS (MB)")
    ax.set_title("Peak memory vs number of clients (MiniLM, SST-2, fedsa-lora)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 10, 100, 1000, 10000])
    ap.add_argument("--stores", nargs="+", default=["run", "full"])
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--child", type=int, default=0)
    ap.add_argument("--store", default="run")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.store, args.model, args.rounds, args.steps)))
        return

    host = machine()
    # Fill the token cache first, so no measured child pays (in time or memory) for tokenising.
    run_child(min(args.sizes), "run", argparse.Namespace(**{**vars(args), "rounds": 1}))
    runs: list[dict[str, Any]] = []
    for rep in range(args.repeats):  # sizes interleaved per repeat, so load drifts hit all
        for n in args.sizes:
            for mode in args.stores:
                res = run_child(n, mode, args)
                res["repeat"] = rep
                runs.append(res)
                print(
                    f"N={n} store={mode}: peak {res['peak_rss'] / MB:.0f} MB, round CPU s "
                    f"{[round(x, 2) for x in res['round_cpu_s']]}",
                    file=sys.stderr,
                )
    points = []
    for n in args.sizes:
        for mode in args.stores:
            rs = [r for r in runs if r["clients"] == n and r["store"] == mode]
            per_round = [x for r in rs for x in r["round_cpu_s"][1:]]  # round 1 warms up
            evals = [x for r in rs for x in r["eval_s"][1:]]
            walls = [x for r in rs for x in r["round_s"][1:]]
            shares = [e / w for e, w in zip(evals, walls, strict=True)]  # both wall clock
            points.append(
                {
                    "clients": n,
                    "store": mode,
                    "peak_mb": statistics.median(r["peak_rss"] / MB for r in rs),
                    "prepare_s": statistics.median(r["prepare_s"] for r in rs),
                    "round_s": stats(per_round),
                    "eval_share": statistics.median(shares),
                    "private_bytes_per_client": rs[0]["private_bytes_per_client"],
                    "client_sizes": [rs[0]["min_client_size"], rs[0]["max_client_size"]],
                }
            )
    priv = points[0]["private_bytes_per_client"]
    peak1 = min(p["peak_mb"] for p in points if p["clients"] == min(args.sizes))
    bound = {n: peak1 + 1.5 * n * priv / MB + 300 for n in args.sizes}
    ref = {m: next((p for p in points if p["clients"] == 10 and p["store"] == m), None)
           for m in args.stores}  # fmt: skip
    rows = []
    for p in points:
        base = ref[p["store"]]
        ratio = p["round_s"]["median"] / base["round_s"]["median"] if base else float("nan")
        p["time_ratio_vs_10"] = ratio
        p["bound_mb"] = bound[p["clients"]]
        rows.append(
            [
                p["clients"],
                p["store"],
                f"{p['client_sizes'][0]}-{p['client_sizes'][1]}",
                f"{p['peak_mb']:.0f}",
                f"{bound[p['clients']]:.0f}",
                "yes" if p["peak_mb"] <= bound[p["clients"]] else "NO",
                fmt(p["round_s"], 2),
                f"{ratio:.2f}",
                f"{p['eval_share']:.2f}",
                f"{p['prepare_s']:.1f}",
            ]
        )
    png = REPO / "docs" / "benchmarks" / "scale_memory.png"
    png.parent.mkdir(parents=True, exist_ok=True)
    plot(points, bound, str(png))
    write_json(
        REPO / "docs" / "benchmarks" / "scale.json",
        {"machine": host, "args": vars(args), "points": points, "runs": runs},
    )
    print(f"machine: {host}; model {args.model}; private state {priv} bytes per client")
    header = ["clients", "store", "examples/client", "peak MB", "bound MB", "within",
              "CPU s/round min/med/max", "vs 10", "eval share", "prepare s"]  # fmt: skip
    print(table(header, rows))
    print(f"plot: {png.relative_to(REPO)}")


if __name__ == "__main__":
    main()
