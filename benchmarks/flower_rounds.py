"""Per-round wall time: Flower loopback deployment vs the in-process engine.

For each config: the in-process engine (one process, model loaded once), then one loopback
federation (SuperLink + one SuperNode per client) running the same config twice:

- ``before``: evaluation in separate messages, replies pulled every 3 s (``Grid.send_and_receive``);
- ``after``: evaluation folded into the next train reply, replies pulled every 0.2 s.

Writes JSON results and a self-contained "Flower deployment" section of docs/benchmarks.md.

    PYTHONPATH=src python benchmarks/flower_rounds.py --rounds 3 \
        --configs configs/tiny.toml configs/minilm-sst2.toml --out benchmarks/flower_rounds.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from fedsa.config.load import load_config
from fedsa.engine.prepare import prepare
from fedsa.engine.simulation import run_rounds
from fedsa.flower.launch import Federation, Node

SECTION = "## Flower deployment"


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def in_process(cfg: Any) -> dict[str, Any]:
    t0 = time.perf_counter()
    fed = prepare(cfg)
    prep = time.perf_counter() - t0
    _, _, history = run_rounds(fed)
    return {"prepare_s": prep, "round_s": [r["wall_s"] for r in history]}


def flower_run(fed: Federation, cfg: Any, out: Path, fold: bool, poll: float) -> dict[str, Any]:
    rc = {
        "config-json": json.dumps(cfg.to_dict()),
        "out-dir": str(out),
        "fold-eval": fold,
        "poll-interval": poll,
        "round-timeout": 900.0,
        "node-timeout": 120.0,
    }
    t0 = time.perf_counter()
    fed.run(rc, timeout=3000)
    total = time.perf_counter() - t0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    summary = json.loads((out / "summary.json").read_text())
    timing = [t for r in records for t in r["client_timing"].values()]
    timing += [t for r in records for t in r.get("client_timing_eval", {}).values()]
    mean = {k: statistics.mean(t[k] for t in timing) for k in ("startup-s", "prepare-s", "work-s")}
    # a folded round's evaluation is paid inside the next round: per-round cost = run time / rounds
    serverapp = summary["wall_s"]
    return {
        "command_s": total,
        "serverapp_s": serverapp,
        "discovery_s": summary["discovery_s"],
        "rounds_s": serverapp - summary["discovery_s"],
        "per_round_s": (serverapp - summary["discovery_s"]) / len(records),
        "record_wall_s": [r["wall_s"] for r in records],
        "client_mean": mean,
        "messages": len(timing),
    }


def bench(config: str, rounds: int, work: Path) -> dict[str, Any]:
    cfg = load_config(config, [f"federation.rounds={rounds}", "eval.every=1"])
    res: dict[str, Any] = {"config": config, "rounds": rounds, "load_before": loadavg()}
    res["in_process"] = in_process(cfg)
    t0 = time.perf_counter()
    with Federation(work) as fed:
        fed.start_superlink()
        res["superlink_start_s"] = time.perf_counter() - t0
        for k in range(cfg.data.num_clients):
            fed.start_node(Node(str(k), work / f"state-{k}"))
        res["nodes_started_s"] = time.perf_counter() - t0
        res["before"] = flower_run(fed, cfg, work / "before", fold=False, poll=3.0)
        cfg2 = load_config(config, [f"federation.rounds={rounds}", "eval.every=1", "seed=1"])
        res["after"] = flower_run(fed, cfg2, work / "after", fold=True, poll=0.2)
        t1 = time.perf_counter()
    res["stop_s"] = time.perf_counter() - t1
    res["load_after"] = loadavg()
    return res


def markdown(results: list[dict[str, Any]]) -> str:
    lines = [
        SECTION,
        "",
        "Written by `benchmarks/flower_rounds.py` (flwr 1.42.0, loopback: one SuperLink and one",
        "SuperNode per client on the same host; every round evaluates every client).",
        f"Host: {os.cpu_count()} CPU cores shared with other jobs; the 1-minute load average",
        "before/after each config is given: timings on a loaded host are upper bounds.",
        "",
        "| config | rounds | load | in-process s/round | Flower before s/round | Flower after "
        "s/round | overhead before | overhead after |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        ip = statistics.mean(r["in_process"]["round_s"])
        b, a = r["before"]["per_round_s"], r["after"]["per_round_s"]
        lines.append(
            f"| `{Path(r['config']).name}` | {r['rounds']} | "
            f"{r['load_before']} -> {r['load_after']} | {ip:.2f} | {b:.1f} | {a:.1f} | "
            f"{b - ip:.1f} | {a - ip:.1f} |"
        )
    lines += [
        "",
        "Fixed costs (seconds):",
        "",
        "| config | SuperLink up | + SuperNodes started | in-process prepare | client-id discovery"
        " | `flwr run` to done (after) | stop all | per message: process start | prepare "
        "(imports, data, model) | work |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        m = r["after"]["client_mean"]
        lines.append(
            f"| `{Path(r['config']).name}` | {r['superlink_start_s']:.1f} | "
            f"{r['nodes_started_s']:.1f} | {r['in_process']['prepare_s']:.1f} | "
            f"{r['after']['discovery_s']:.1f} | {r['after']['command_s']:.1f} | "
            f"{r['stop_s']:.1f} | "
            f"{m['startup-s']:.1f} | {m['prepare-s']:.1f} | {m['work-s']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def write_section(path: Path, text: str, notes: str) -> None:
    old = path.read_text("utf-8") if path.exists() else "# Benchmarks\n"
    if SECTION in old:
        head, _, rest = old.partition(SECTION)
        nxt = rest.find("\n## ")
        old = head.rstrip() + "\n" + (rest[nxt:] if nxt >= 0 else "")
    path.write_text(old.rstrip() + "\n\n" + text + notes, encoding="utf-8")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--configs", nargs="+", default=["configs/tiny.toml"])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", default="benchmarks/flower_rounds.json")
    p.add_argument("--doc", default="docs/benchmarks.md")
    p.add_argument("--notes", default="", help="markdown file appended after the tables")
    args = p.parse_args()
    results = []
    for config in args.configs:
        with tempfile.TemporaryDirectory(prefix="fedsa-flower-bench-") as tmp:
            results.append(bench(config, args.rounds, Path(tmp)))
        print(json.dumps(results[-1], indent=1), flush=True)
    Path(args.out).write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    notes = Path(args.notes).read_text("utf-8") if args.notes else ""
    write_section(Path(args.doc), markdown(results), notes)


if __name__ == "__main__":
    main()
