"""Tests of the A/B asymmetry summary over seeds (``fedsa analyze RUN RUN RUN --out DIR``)."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

import pytest

from fedsa.core.errors import DataError
from fedsa.reports.asymmetry import markdown_table, seed_summary
from tests.test_analysis import fake_run

T2 = 4.3027  # t_{0.975, 2}


def result(run: str, values: dict[int, dict[str, float]], alpha: float = 0.1) -> dict[str, Any]:
    """An analyze_run-shaped result with the given per-round mean off-diagonal similarities."""
    rounds = [
        {"round": t, "mean": {k: {"mean_offdiag": v} for k, v in kinds.items()}}
        for t, kinds in values.items()
    ]
    return {
        "run_dir": run,
        "algorithm": "fedit",
        "variant": "lora",
        "partition": "dirichlet",
        "dirichlet_alpha": alpha,
        "rounds": rounds,
    }


SEEDS = [  # round 1: dA clearly above dB in every seed; round 5: the ordering flips by seed
    {1: {"A": 0.9, "B": 0.1, "dA": 0.5, "dB": 0.0}, 5: {"A": 0.9, "B": 0.8, "dA": 0.1, "dB": 0.2}},
    {1: {"A": 0.8, "B": 0.0, "dA": 0.4, "dB": 0.1}, 5: {"A": 0.9, "B": 0.9, "dA": 0.0, "dB": -0.1}},
    {1: {"A": 0.7, "B": 0.2, "dA": 0.6, "dB": 0.0}, 5: {"A": 0.8, "B": 0.7, "dA": 0.2, "dB": 0.1}},
]


def ci(values: list[float]) -> float:
    return T2 * statistics.stdev(values) / math.sqrt(len(values))


def test_seed_summary_means_intervals_and_paired_differences() -> None:
    summary = seed_summary([result(f"r{i}", v) for i, v in enumerate(SEEDS)])
    assert summary["runs"] == ["r0", "r1", "r2"]
    assert summary["dirichlet_alpha"] == 0.1
    r1, r5 = summary["rounds"]
    assert r1["kinds"]["A"]["mean"] == pytest.approx(0.8)
    assert r1["kinds"]["A"]["ci95"] == pytest.approx(ci([0.9, 0.8, 0.7]))
    assert r1["kinds"]["dB"]["n"] == 3
    # paired: per seed dA - dB = 0.5, 0.3, 0.6, whose spread is not that of dA or dB alone
    d = [0.5, 0.3, 0.6]
    assert r1["differences"]["dA-dB"]["mean"] == pytest.approx(statistics.fmean(d))
    assert r1["differences"]["dA-dB"]["ci95"] == pytest.approx(ci(d))
    assert r1["differences"]["A-B"]["mean"] == pytest.approx(statistics.fmean([0.8, 0.8, 0.5]))
    assert r1["holds"] is True
    d5 = [-0.1, 0.1, 0.1]  # mean 0.033, interval wider than that: not shown
    assert r5["differences"]["dA-dB"]["mean"] == pytest.approx(statistics.fmean(d5))
    assert r5["holds"] is False
    table = markdown_table(summary)
    assert table.splitlines()[0].startswith("| round | A | B | dA | dB | A-B | dA-dB |")
    assert f"| 1 | 0.80 ± {ci([0.9, 0.8, 0.7]):.2f} |" in table
    assert table.splitlines()[-1].endswith("| no |")


def test_one_run_has_no_interval_and_missing_kinds_are_skipped() -> None:
    only_b = {1: {"B": 0.3, "dB": 0.1}}  # FFA-LoRA: A frozen, never snapshotted
    summary = seed_summary([result("r0", only_b)])
    rnd = summary["rounds"][0]
    assert rnd["kinds"]["B"] == {"mean": 0.3, "ci95": None, "n": 1}
    assert "A" not in rnd["kinds"] and rnd["differences"] == {}
    assert rnd["holds"] is None
    assert "| 1 | n/a | 0.30 | n/a | 0.10 | n/a | n/a | n/a |" in markdown_table(summary)


def test_seed_summary_refuses_mixed_settings_and_rounds() -> None:
    with pytest.raises(DataError, match="pass one or more run directories"):
        seed_summary([])
    with pytest.raises(DataError, match=r"dirichlet_alpha=0\.5 but r0 has 0\.1"):
        seed_summary([result("r0", SEEDS[0]), result("r1", SEEDS[1], alpha=0.5)])
    with pytest.raises(DataError, match=r"over rounds \[1\] but r0 over \[1, 5\]: pass --rounds"):
        seed_summary([result("r0", SEEDS[0]), result("r1", {1: SEEDS[1][1]})])


def test_cli_summarises_several_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from fedsa.cli import main

    runs = [str(fake_run(tmp_path / f"seed_{s}", (1, 3))) for s in range(3)]
    assert main(["analyze", *runs]) == 2
    assert "give --out DIR" in capsys.readouterr().err
    out = tmp_path / "summary"
    assert main(["analyze", *runs, "--rounds", "3", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"{runs[0]}: round 3: mean pairwise cosine A 0.33" in printed
    summary = json.loads((out / "asymmetry.json").read_text())
    rnd = summary["rounds"][0]
    # identical runs: zero spread; the fake round has A 1/3, B -1/6 (test_analysis)
    assert rnd["kinds"]["A"] == pytest.approx({"mean": 1 / 3, "ci95": 0.0, "n": 3})
    assert rnd["differences"]["dA-dB"]["mean"] == pytest.approx(0.5)
    assert rnd["holds"] is True
    assert (out / "asymmetry.md").read_text() == markdown_table(summary) + "\n"
    assert (out / "asymmetry.png").read_bytes().startswith(b"\x89PNG")
    for run in runs:
        assert (Path(run) / "analysis" / "analysis.json").is_file()
