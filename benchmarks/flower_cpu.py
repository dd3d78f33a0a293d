"""CPU that a loopback Flower federation spends beside training, by process role, code A vs B.

Starts ``fedsa flower local CONFIG federation.rounds=N`` with the code under test on
``PYTHONPATH``, waits ``--warmup`` seconds (daemons up, rounds under way), then reads every
process's user + system CPU time from ``/proc`` once a second for ``--window`` seconds and sums
the growth by role (SuperLink, SuperNodes, ``flwr ls`` polls, workers, ...). The command is then
SIGTERMed and any process it left is killed. With ``configs/tiny.toml`` the training is
negligible, so nearly all of it is the cost of the deployment itself; on a 2-core host every
CPU-second here is taken from the sites' training in a MiniLM federation.

    export FEDSA_DATA_DIR=/work/shared/data HF_HUB_OFFLINE=1
    git archive <before-commit> src | tar -x -C /tmp/fedsa-before
    .venv/bin/python benchmarks/flower_cpu.py --code before=/tmp/fedsa-before/src after=src \\
        --out benchmarks/flower_cpu.json
    .venv/bin/python benchmarks/flower_cpu.py --report benchmarks/flower_cpu.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

#: Role of a process, by the first pattern its command line matches.
ROLES = (
    ("SuperLink", r"flower-superlink"),
    ("SuperLink's SuperExec", r"flower-superexec"),
    ("ServerApp", r"flwr-serverapp"),
    ("flwr ls polls", r"bin/flwr ls"),
    ("flwr log stream", r"bin/flwr log"),
    ("other flwr commands", r"bin/flwr "),
    ("SuperNodes", r"flower-supernode"),
    ("node SuperExecs", r"fedsa\.flower\.superexec"),
    ("ClientApps (forked)", r"forkserver|flwr-clientapp"),
    ("workers (training)", r"fedsa\.flower\.worker"),
    ("node supervisors", r"fedsa\.flower\.node"),
    ("launcher", r"fedsa\.cli flower local"),
)


def cpu_times() -> dict[int, tuple[int, str, float]]:
    """``{pid: (parent pid, command line, user + system CPU seconds)}`` of readable processes."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[int, tuple[int, str, float]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmd = (
                (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            )
        except OSError:
            continue
        out[int(stat.parent.name)] = (
            int(fields[1]),
            cmd,
            (int(fields[11]) + int(fields[12])) / tick,
        )
    return out


def tree(root: int, snap: dict[int, tuple[int, str, float]]) -> set[int]:
    """``root`` and its descendants in ``snap``."""
    kids: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in snap.items():
        kids.setdefault(ppid, []).append(pid)
    found, todo = {root}, [root]
    while todo:
        for kid in kids.get(todo.pop(), []):
            found.add(kid)
            todo.append(kid)
    return found


def role(cmd: str) -> str | None:
    return next((name for name, pattern in ROLES if re.search(pattern, cmd)), None)


def measure(config: str, rounds: int, src: str, warmup: float, window: float) -> dict[str, Any]:
    """One federation: CPU seconds by role over ``window`` seconds, and the rounds finished."""
    work = Path(tempfile.mkdtemp(prefix="fedsa-flower-cpu-"))
    argv = [sys.executable, "-m", "fedsa.cli", "flower", "local", config]
    argv += [
        f"federation.rounds={rounds}",
        "--out",
        str(work / "run"),
        "--workdir",
        str(work / "w"),
    ]
    env = dict(os.environ, PYTHONPATH=str(Path(src).resolve()))
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ours: set[int] = set()
    try:
        time.sleep(warmup)
        metrics = work / "run" / "metrics.jsonl"
        done0 = len(metrics.read_text().splitlines()) if metrics.exists() else 0
        first = cpu_times()
        ours = tree(proc.pid, first)
        last = {pid: first[pid] for pid in ours}
        end = time.monotonic() + window
        while time.monotonic() < end:
            time.sleep(1.0)
            snap = cpu_times()
            ours |= tree(proc.pid, snap)  # ClientApps come and go; one that exits keeps its last
            last.update({pid: snap[pid] for pid in ours if pid in snap})
        done1 = len(metrics.read_text().splitlines()) if metrics.exists() else 0
    finally:
        ours |= tree(proc.pid, cpu_times())
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        time.sleep(5.0)
        for pid in ours:  # code without SIGTERM handling leaves its daemons: stop them here
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
    by_role: dict[str, float] = {}
    for pid, (_, cmd, t) in last.items():
        name = role(cmd)
        grown = t - (first[pid][2] if pid in first else 0.0)
        if name is not None and grown > 0:
            by_role[name] = by_role.get(name, 0.0) + grown
    return {"window_s": window, "rounds_in_window": done1 - done0, "cpu_s": by_role}


def report(paths: list[str]) -> str:
    """A markdown table: CPU seconds per minute by role, one column per code version."""
    runs = [r for p in paths for r in json.loads(Path(p).read_text())]
    names = [name for name, _ in ROLES]
    head = "| role | " + " | ".join(f"{r['code']} (CPU-s/min)" for r in runs) + " |"
    lines = [head, "|---|" + "---|" * len(runs)]
    for name in names:
        vals = [r["cpu_s"].get(name, 0.0) * 60.0 / r["window_s"] for r in runs]
        if any(v >= 0.05 for v in vals):
            lines.append(f"| {name} | " + " | ".join(f"{v:.1f}" for v in vals) + " |")
    totals = [sum(r["cpu_s"].values()) * 60.0 / r["window_s"] for r in runs]
    lines.append("| **all** | " + " | ".join(f"**{v:.1f}**" for v in totals) + " |")
    per_min = [r["rounds_in_window"] * 60.0 / r["window_s"] for r in runs]
    lines.append("| rounds per minute | " + " | ".join(f"{v:.1f}" for v in per_min) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--config", default="configs/tiny.toml")
    p.add_argument("--rounds", type=int, default=60, help="enough to outlast the window")
    p.add_argument("--warmup", type=float, default=45.0)
    p.add_argument("--window", type=float, default=60.0)
    p.add_argument("--code", nargs="+", default=["after=src"], help="NAME=SRC_DIR, in run order")
    p.add_argument("--out", default="benchmarks/flower_cpu.json")
    p.add_argument("--report", nargs="+", help="print the markdown table of these result files")
    args = p.parse_args()
    if args.report:
        print(report(args.report))
        return
    results = []
    for item in args.code:
        name, src = item.split("=", 1)
        res = measure(args.config, args.rounds, src, args.warmup, args.window)
        res.update({"code": name, "src": src, "config": args.config})
        results.append(res)
        print(f"{name}: {sum(res['cpu_s'].values()):.1f} CPU-s in {args.window:.0f} s", flush=True)
        time.sleep(10.0)  # let the previous federation's processes go
    Path(args.out).write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
