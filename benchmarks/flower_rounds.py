"""Per-round wall time: the in-process engine vs a Flower loopback deployment, code A vs code B.

Each measurement runs in its own child process whose ``PYTHONPATH`` picks the code under test, so
the "before" code (an export of an older commit's ``src``) and the "after" code (this checkout)
run under the same script, interleaved in one session:

- ``inproc``: ``fedsa.engine.prepare.prepare`` + ``fedsa.engine.simulation.run_rounds``, one
  process;
- ``flower``: one SuperLink + one SuperNode per client on 127.0.0.1 (``fedsa.flower.launch``),
  one run of the same config; per round the ServerApp's own ``wall_s`` from ``metrics.jsonl``.

Every round evaluates every client (``eval.every=1``), so every engine does the same work per
round. Round 1 has no folded evaluation and the last round has a separate evaluate wave: the
median over rounds is the figure to read.

    export FEDSA_DATA_DIR=/work/shared/data HF_HUB_OFFLINE=1
    git archive <before-commit> src | tar -x -C /tmp/fedsa-before
    nice -n 10 .venv/bin/python benchmarks/flower_rounds.py --rounds 6 \
        --configs configs/tiny.toml configs/minilm-sst2.toml \
        --code before=/tmp/fedsa-before/src after=src --out benchmarks/flower_rounds.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def measure_inproc(config: str, rounds: int) -> dict[str, Any]:
    try:  # the package layout since issue 11
        from fedsa.config.load import load_config
        from fedsa.engine.prepare import prepare
        from fedsa.engine.simulation import run_rounds
    except ImportError:  # a code version from before it (the "before" rows)
        from fedsa.prepare import prepare  # type: ignore[no-redef]
        from fedsa.simulation import run_rounds  # type: ignore[no-redef]

        from fedsa.config import load_config  # type: ignore[attr-defined,no-redef]

    cfg = load_config(config, [f"federation.rounds={rounds}", "eval.every=1"])
    t0 = time.perf_counter()
    fed = prepare(cfg)
    prep = time.perf_counter() - t0
    _, _, history = run_rounds(fed)
    return {"prepare_s": prep, "round_s": [r["wall_s"] for r in history]}


def measure_flower(config: str, rounds: int) -> dict[str, Any]:
    try:
        from fedsa.config.load import load_config
    except ImportError:  # a code version from before issue 11
        from fedsa.config import load_config  # type: ignore[attr-defined,no-redef]
    from fedsa.flower.launch import Federation, Node

    cfg = load_config(config, [f"federation.rounds={rounds}", "eval.every=1"])
    with tempfile.TemporaryDirectory(prefix="fedsa-flower-bench-") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        with Federation(work) as fed:
            fed.start_superlink()
            for k in range(cfg.data.num_clients):
                fed.start_node(Node(str(k), work / f"state-{k}"))
            if hasattr(fed, "wait_workers"):  # as `fedsa flower local` does (the after code)
                fed.wait_workers(timeout=600)
            started = time.perf_counter() - t0
            rc = {
                "config-json": json.dumps(cfg.to_dict()),
                "out-dir": str(work / "run"),
                "round-timeout": 900.0,
                "node-timeout": 300.0,
            }
            t1 = time.perf_counter()
            fed.run(rc, timeout=3000)
            command = time.perf_counter() - t1
            t2 = time.perf_counter()
        stop = time.perf_counter() - t2
        lines = (work / "run" / "metrics.jsonl").read_text().splitlines()
        records = [json.loads(line) for line in lines]
        summary = json.loads((work / "run" / "summary.json").read_text())
    keep = ("round", "wall_s", "client_timing", "client_timing_eval", "exchange_s", "server_s")
    return {
        "daemons_started_s": started,
        "command_s": command,
        "stop_s": stop,
        "serverapp_s": summary["wall_s"],
        "discovery_s": summary["discovery_s"],
        "round_s": [r["wall_s"] for r in records],
        "records": [{k: r[k] for k in keep if k in r} for r in records],
    }


def child(kind: str, config: str, rounds: int) -> None:
    """Run one measurement in this process and print its JSON on the last line."""
    load = loadavg()
    res = measure_inproc(config, rounds) if kind == "inproc" else measure_flower(config, rounds)
    res.update({"load_before": load, "load_after": loadavg()})
    print(json.dumps(res))


def spawn(kind: str, config: str, rounds: int, src: str) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(Path(src).resolve()))
    argv = [sys.executable, __file__, "--child", kind, config, str(rounds)]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=3600, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{kind} {config} ({src}) failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def breakdown(one: dict[str, Any]) -> dict[str, float]:
    """Median over rounds of where a Flower round's time went (seconds).

    ``client``: the slowest client's own time for its message (process start to our handler,
    then preparing and working); ``flower``: the rest of the round's wait for replies (SuperNode
    poll sleep, SuperExec poll, transfers, the 0.5 s reply poll); ``server``: the ServerApp's own
    work (screening, averaging, saving; before ``exchange_s`` was recorded: 0 and counted in
    ``flower``).
    """
    rows: dict[str, list[float]] = {"startup": [], "prepare": [], "work": [], "client": []}
    rows.update({"flower": [], "server": []})
    for r in one["records"]:
        timing = list(r.get("client_timing", {}).values()) + list(
            r.get("client_timing_eval", {}).values()
        )
        if not timing:
            continue
        slow = max(timing, key=lambda t: t["startup-s"] + t["prepare-s"] + t["work-s"])
        client = slow["startup-s"] + slow.get("handler-s", slow["prepare-s"] + slow["work-s"])
        server = float(r.get("server_s", 0.0))
        rows["startup"].append(slow["startup-s"])
        rows["prepare"].append(slow["prepare-s"])
        rows["work"].append(slow["work-s"])
        rows["client"].append(client)
        rows["server"].append(server)
        rows["flower"].append(r["wall_s"] - server - client)
    return {k: statistics.median(v) for k, v in rows.items() if v}


def report(paths: list[str]) -> str:
    """Markdown rows from result files: per-round figures and where the time went."""
    lines = [
        "| config | engine | load (1-min avg, start -> end) | median s/round | min-max | "
        "overhead (median - in-process median) |",
        "|---|---|---|---|---|---|",
    ]
    parts = ["| config | code | client process start | prepare | work | Flower waits | server |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for path in paths:
        for res in json.loads(Path(path).read_text()):
            name = Path(res["config"]).name
            ip = res["inproc"]
            base = ip["per_round"]["median"]
            lines.append(
                f"| `{name}` | in-process | {ip['load_before']:.1f} -> {ip['load_after']:.1f} | "
                f"{base:.2f} | {min(ip['round_s']):.2f}-{max(ip['round_s']):.2f} | - |"
            )
            for code, one in res["flower"].items():
                pr = one["per_round"]
                lines.append(
                    f"| `{name}` | Flower, {code} | {one['load_before']:.1f} -> "
                    f"{one['load_after']:.1f} | {pr['median']:.2f} | {pr['min']:.2f}-"
                    f"{pr['max']:.2f} | {pr['median'] - base:.2f} |"
                )
                b = breakdown(one)
                parts.append(
                    f"| `{name}` | {code} | {b['startup']:.2f} | {b['prepare']:.2f} | "
                    f"{b['work']:.2f} | {b['flower']:.2f} | {b['server']:.2f} |"
                )
    return "\n".join(lines) + "\n\n" + "\n".join(parts) + "\n"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--child", nargs=3, metavar=("KIND", "CONFIG", "ROUNDS"))
    p.add_argument("--configs", nargs="+", default=["configs/tiny.toml"])
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--code", nargs="+", default=["after=src"], help="NAME=SRC_DIR, in run order")
    p.add_argument("--inproc-src", default="src", help="code for the in-process measurement")
    p.add_argument("--out", default="benchmarks/flower_rounds.json")
    p.add_argument("--report", nargs="+", help="print markdown tables from these result files")
    args = p.parse_args()
    if args.report:
        print(report(args.report))
        return
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]))
        return
    results: list[dict[str, Any]] = []
    for config in args.configs:
        res: dict[str, Any] = {"config": config, "rounds": args.rounds, "flower": {}}
        res["inproc"] = spawn("inproc", config, args.rounds, args.inproc_src)
        res["inproc"]["per_round"] = summary(res["inproc"]["round_s"])
        for item in args.code:
            name, src = item.split("=", 1)
            one = spawn("flower", config, args.rounds, src)
            one["src"] = src
            one["per_round"] = summary(one["round_s"])
            res["flower"][name] = one
            ip = res["inproc"]["per_round"]["median"]
            print(f"{config} {name}: median {one['per_round']['median']:.2f}s/round "
                  f"(in-process {ip:.2f}s)", file=sys.stderr, flush=True)  # fmt: skip
        results.append(res)
        Path(args.out).write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
