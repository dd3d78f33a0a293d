"""``fedsa compare`` reports: seed aggregation, report files, run layout and reuse."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

import pytest

from fedsa.cli import main
from fedsa.reports.report import aggregate_rows

TINY = Path(__file__).parents[1] / "configs" / "tiny.toml"
FAST = ["federation.rounds=2"]
PNGS = (
    "accuracy_vs_round.png",
    "accuracy_vs_mb.png",
    "client_accuracy.png",
    "balanced_vs_round.png",
)


def _summary(seed: int, acc: float, weighted: float, worst: float, mb: float) -> dict[str, Any]:
    return {
        "algorithm": "x",
        "variant": "lora",
        "seed": seed,
        "final": {"accuracy_mean": acc, "accuracy_weighted": weighted, "accuracy_min": worst},
        "majority_baseline": 0.5,
        "mb_up": mb,
        "mb_down": 2 * mb,
        "params": {"trainable": 1090, "shared": 512, "private": 578, "frozen_adapter": 0},
        "wall_s": 3.0 + seed,
    }


def test_aggregate_rows_mean_and_sample_std_over_seeds() -> None:
    rows = aggregate_rows(
        {
            "fedsa-lora": [
                _summary(0, 0.80, 0.82, 0.60, 1.0),
                _summary(1, 0.90, 0.86, 0.70, 1.0),
                _summary(2, 0.70, 0.78, 0.50, 1.0),
            ],
            "fedit": [_summary(0, 0.75, 0.70, 0.40, 2.0)],
        }
    )
    assert [r["algorithm"] for r in rows] == ["fedsa-lora", "fedit"]
    a, b = rows
    assert a["seeds"] == [0, 1, 2]
    assert a["acc_mean"] == pytest.approx(0.80)
    assert a["acc_std"] == pytest.approx(0.10)  # sample std (n - 1) of 0.8, 0.9, 0.7
    assert a["acc_weighted"] == pytest.approx(0.82)
    assert a["acc_min"] == pytest.approx(0.60)
    assert a["majority"] == pytest.approx(0.5)
    assert (a["mb_up"], a["mb_down"]) == (pytest.approx(1.0), pytest.approx(2.0))
    assert (a["trainable"], a["shared"]) == (1090, 512)
    assert a["wall_s"] == pytest.approx(4.0)
    assert b["acc_mean"] == pytest.approx(0.75) and b["acc_std"] == 0.0  # one seed: no spread
    with pytest.raises(ValueError, match="no runs"):
        aggregate_rows({"fedit": []})


def _md_rows(md: str) -> dict[str, dict[str, str]]:
    """The report table as {algorithm: {header: cell}}."""
    lines = [x for x in md.splitlines() if x.startswith("|")]
    cells = [[c.strip() for c in x.strip("|").split("|")] for x in lines]
    head, body = cells[0], cells[2:]
    assert set(cells[1]) == {"---"}
    return {r[0]: dict(zip(head, r, strict=True)) for r in body}


def _check_report(out: Path, algos: list[str], seeds: list[int]) -> None:
    for name in ("report.md", "report.html", "table.txt", *PNGS):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    for png in PNGS:
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (out / "report.html").read_text(encoding="utf-8")
    assert page.count('src="data:image/png;base64,') == len(PNGS)
    assert 'src="accuracy' not in page  # self-contained: no links to the PNG files
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "tiny.toml" in md and "fedsa compare" in md and "--out" in md
    rows = _md_rows(md)
    assert sorted(rows) == sorted(algos)  # exactly one row per algorithm
    for algo in algos:
        sums = [json.loads((out / algo / f"seed_{s}" / "summary.json").read_text()) for s in seeds]
        row = rows[algo]

        def mean(get: Any, sums: list[dict[str, Any]] = sums) -> float:
            return math.fsum(get(s) for s in sums) / len(sums)

        acc, std = (float(x) for x in row["mean acc ± std"].split("±"))
        assert acc == pytest.approx(mean(lambda s: s["final"]["accuracy_mean"]), abs=5e-5)
        accs = [s["final"]["accuracy_mean"] for s in sums]
        spread = statistics.stdev(accs) if len(accs) > 1 else 0.0
        assert std == pytest.approx(spread, abs=5e-5)
        for header, get in [
            ("weighted acc", lambda s: s["final"]["accuracy_weighted"]),
            ("worst client", lambda s: s["final"]["accuracy_min"]),
            ("majority baseline", lambda s: s["majority_baseline"]),
        ]:
            assert float(row[header]) == pytest.approx(mean(get), abs=5e-5), header
        assert float(row["MB up"]) == pytest.approx(mean(lambda s: s["mb_up"]), abs=5e-4)
        assert float(row["MB down"]) == pytest.approx(mean(lambda s: s["mb_down"]), abs=5e-4)
        assert int(row["trainable params"].replace(",", "")) == sums[0]["params"]["trainable"]
        assert int(row["shared params"].replace(",", "")) == sums[0]["params"]["shared"]
        assert row["seeds"] == ",".join(map(str, seeds))


def test_compare_writes_a_report_with_one_row_per_algorithm(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["compare", str(TINY), *FAST, "--algorithms", "fedit,fedsa-lora", "--out", str(tmp_path)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert [x.split()[0] for x in out.splitlines() if x.startswith("fed")] == [
        "fedit",
        "fedsa-lora",
    ]
    assert sorted(p.name for p in (tmp_path / "fedit").iterdir()) == ["seed_0"]
    _check_report(tmp_path, ["fedit", "fedsa-lora"], [0])


def test_compare_over_seeds_reuses_finished_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["compare", str(TINY), *FAST, "--algorithms", "fedit,fedsa-lora"]
    args += ["--seeds", "0,1", "--out", str(tmp_path)]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "fedsa-lora seed=1 (4/4)" in err and "reusing" not in err
    _check_report(tmp_path, ["fedit", "fedsa-lora"], [0, 1])
    summaries = sorted(tmp_path.glob("*/seed_*/summary.json"))
    assert len(summaries) == 4
    mtimes = [p.stat().st_mtime_ns for p in summaries]
    for name in ("report.md", "report.html", *PNGS):
        (tmp_path / name).unlink()

    assert main(args) == 0
    err = capsys.readouterr().err
    assert err.count("reusing finished run") == 4
    assert [p.stat().st_mtime_ns for p in summaries] == mtimes  # not rerun
    _check_report(tmp_path, ["fedit", "fedsa-lora"], [0, 1])  # but the report is regenerated


@pytest.mark.parametrize("seeds", ["0,x", "1,1", ","])
def test_bad_seeds_exit_2(tmp_path: Path, seeds: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", str(TINY), "--seeds", seeds, "--out", str(tmp_path)]) == 2
    assert "--seeds" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_report_carries_an_analysis_line_for_runs_with_snapshots(tmp_path: Path) -> None:
    argv = ["compare", str(TINY), *FAST, "analysis.snapshot_rounds=[2]"]
    assert main([*argv, "--algorithms", "fedit", "--out", str(tmp_path)]) == 0
    report = (tmp_path / "report.md").read_text(encoding="utf-8")
    line = next(x for x in report.splitlines() if x.startswith("- fedit seed 0: "))
    saved = json.loads((tmp_path / "fedit" / "seed_0" / "analysis" / "analysis.json").read_text())
    assert line == f"- fedit seed 0: {saved['summary_line']}"
    assert "round 2: mean pairwise cosine A" in line
    assert "A/B analysis" in (tmp_path / "report.html").read_text(encoding="utf-8")


def test_a_missing_baseline_prints_a_dash_not_nan() -> None:
    import math

    from fedsa.reports.report import format_cell

    assert format_cell({"majority": math.nan}, "majority") == "-"
    assert format_cell({"majority": 0.5}, "majority") == "0.5000"
