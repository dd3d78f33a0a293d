"""Soak: 300 rounds with checkpoints every round must not grow memory.

A leak of one client's adapter copy per round, an ever-growing autograd graph or cached
optimizer would show up here long before a multi-day run dies of it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fedsa.config.load import load_config
from fedsa.engine.runner import run

TINY = Path(__file__).parents[1] / "configs" / "tiny.toml"


def rss_bytes() -> int:
    """Current resident set size of this process (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def test_memory_is_flat_over_300_rounds(tmp_path: Path) -> None:
    cfg = load_config(
        TINY,
        [
            "federation.rounds=300",
            "federation.local_steps=1",
            "federation.batch_size=4",
            "data.eval_examples_per_client=8",
            "eval.every=10",
            "checkpoint.every=1",
        ],
    )
    rss: dict[int, int] = {}

    def on_round(record: dict[str, Any]) -> None:
        rss[record["round"]] = rss_bytes()

    run(cfg, tmp_path / "soak", on_round=on_round)
    assert len(rss) == 300
    growth = rss[300] / rss[50] - 1
    print(f"RSS round 50: {rss[50] / 2**20:.1f} MiB, round 300: {rss[300] / 2**20:.1f} MiB")
    assert growth <= 0.05, f"RSS grew {growth:.1%} from round 50 to round 300"
