"""Start-up: time to the first training step, cold (empty token cache) vs warm (same config again).

Each measurement is a fresh ``python`` process running :func:`fedsa.engine.runner.run` (the path of
``fedsa run``) that stops at the first training forward pass. Pairs (cold, warm) share a new,
empty ``FEDSA_CACHE_DIR``; pairs are repeated, so cold and warm runs alternate under the same
load. Two clocks are reported: from process launch (includes the ~3-4 s import of torch,
transformers and peft, which no cache can remove) and from the moment ``run`` starts preparing.

    HF_HUB_OFFLINE=1 FEDSA_DATA_DIR=/work/shared/data PYTHONPATH=src \
        python benchmarks/startup.py --repeats 3
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import REPO, fmt, machine, stats, table, write_json


class _Started(Exception):
    """Raised by the hook at the first training step to stop the run there."""


def child(launch: float, train_examples: int, out: Path) -> dict[str, float]:
    imported = time.time()
    import torch

    from fedsa.config.load import load_config
    from fedsa.engine.prepare import Federation
    from fedsa.engine.runner import run

    imports_done = time.time()
    marks: dict[str, float] = {}

    def on_ready(fed: Federation) -> None:
        marks["prepared"] = time.time()

        def hook(module: torch.nn.Module, args: Any, kwargs: Any) -> None:
            if module.training:
                marks["first_step"] = time.time()
                raise _Started

        fed.model.register_forward_pre_hook(hook, with_kwargs=True)

    cfg = load_config(
        REPO / "configs" / "minilm-sst2.toml", [f"data.max_train_examples={train_examples}"]
    )
    start = time.time()
    with contextlib.suppress(_Started):
        run(cfg, out, overwrite=True, on_ready=on_ready)
    return {
        "interpreter_s": imported - launch,
        "imports_s": imports_done - imported,
        "prepare_s": marks["prepared"] - start,
        "from_launch_s": marks["first_step"] - launch,
        "from_run_s": marks["first_step"] - start,
    }


def measure(cache: Path, train_examples: int) -> dict[str, float]:
    env = {**os.environ, "FEDSA_CACHE_DIR": str(cache)}
    with tempfile.TemporaryDirectory() as out:
        launch = time.time()
        cmd = [sys.executable, __file__, "--child", f"{launch!r}", "--out", out]
        cmd += ["--train-examples", str(train_examples)]
        done = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--train-examples", type=int, nargs="+", default=[0, 6000])
    ap.add_argument("--child", type=float, default=0.0)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.train_examples[0], args.out)))
        return

    host = machine()
    results: dict[str, Any] = {"machine": host, "configs": {}}
    rows = []
    for n in args.train_examples:
        runs: dict[str, list[dict[str, float]]] = {"cold": [], "warm": []}
        loads = []
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as cache:
                runs["cold"].append(measure(Path(cache), n))
                runs["warm"].append(measure(Path(cache), n))
            loads.append(os.getloadavg()[0])
        summary: dict[str, Any] = {"loadavg_1min": stats(loads)}
        for clock in ("from_launch_s", "from_run_s", "prepare_s"):
            cold = [r[clock] for r in runs["cold"]]
            warm = [r[clock] for r in runs["warm"]]
            ratio = [c / w for c, w in zip(cold, warm, strict=True)]
            summary[clock] = {"cold": stats(cold), "warm": stats(warm), "ratio": stats(ratio)}
            label = "all 67,349" if n == 0 else f"{n:,}"
            rows.append(
                [label, clock, fmt(stats(cold), 2), fmt(stats(warm), 2), fmt(stats(ratio), 2)]
            )
        summary["runs"] = runs
        results["configs"][str(n)] = summary
    write_json(REPO / "docs" / "benchmarks" / "startup.json", results)
    print(f"machine: {host}")
    print(table(["train examples", "clock", "cold s", "warm s", "cold / warm"], rows))


if __name__ == "__main__":
    main()
