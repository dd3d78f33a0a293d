"""Shared helpers of the benchmark scripts: machine description, statistics, markdown tables."""

from __future__ import annotations

import json
import os
import platform
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from fedsa.config.load import load_config
from fedsa.config.schema import RunConfig

REPO = Path(__file__).resolve().parents[1]


def machine() -> dict[str, Any]:
    """What the numbers were measured on, including the current load (the CPU may be shared)."""
    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "loadavg_1_5_15": [round(x, 2) for x in os.getloadavg()],
    }


def stats(values: Sequence[float]) -> dict[str, float]:
    """min / median / max / n of repeated measurements."""
    return {
        "min": min(values),
        "median": statistics.median(values),
        "max": max(values),
        "n": float(len(values)),
    }


def fmt(s: dict[str, float], digits: int = 3) -> str:
    """``min / median / max`` as one table cell."""
    return f"{s['min']:.{digits}f} / {s['median']:.{digits}f} / {s['max']:.{digits}f}"


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_json(path: Path, obj: Any) -> None:
    """Write results next to the docs (plain JSON)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2) + "\n")


def scale_config(n: int, model: str, rounds: int, steps: int) -> RunConfig:
    """The scale benchmarks' run: SST-2 over ``n`` Dirichlet clients, 10 sampled per round.

    Only the round's participants are evaluated (on 8 examples each), so time per round measures
    the engine, not an evaluation that grows with the number of clients.
    """
    return load_config(
        REPO / "configs" / "minilm-sst2.toml",
        [
            f"model.name={model}",
            f"data.num_clients={n}",
            f"federation.clients_per_round={min(10, n)}",
            "data.max_train_examples=0",
            "data.eval_examples_per_client=8",
            f"federation.rounds={rounds}",
            f"federation.local_steps={steps}",
            "eval.every=1",
            "eval.clients=participants",
        ],
    )
