"""``fedsa sweep``: compare folders side by side, intervals against scipy, errors, the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from scipy import stats as scipy_stats

from fedsa.cli import main
from fedsa.core.errors import DataError
from fedsa.reports.sweep import parse_setting, sweep


def t_half(values: list[float]) -> float:
    """95% t half-width from scipy: the independent reference."""
    n = len(values)
    sem = scipy_stats.sem(values)
    lo, hi = scipy_stats.t.interval(0.95, n - 1, loc=sum(values) / n, scale=sem)
    return float(hi - lo) / 2


def write_run(
    folder: Path, algo: str, seed: int, acc: float, bal: float, unseen: float | None
) -> None:
    run = folder / algo / f"seed_{seed}"
    run.mkdir(parents=True)
    summary: dict[str, object] = {
        "algorithm": algo, "variant": "lora", "seed": seed, "majority_baseline": 0.4,
        "final": {"accuracy_mean": acc, "accuracy_weighted": acc, "accuracy_min": acc - 0.1,
                  "balanced_accuracy_mean": bal, "prior_gain_mean": acc - 0.4},
        "mb_up": 1.0, "mb_down": 2.0, "params": {"trainable": 10, "shared": 5},
    }  # fmt: skip
    if unseen is not None:
        summary["final_unseen"] = {"accuracy_mean": unseen}
    (run / "summary.json").write_text(json.dumps(summary))


ACC = {  # setting -> algorithm -> per-seed accuracies (seeds 0, 1, 2)
    "0.1": {"fedsa-lora": [0.70, 0.60, 0.65], "fedit": [0.50, 0.55, 0.40]},
    "IID": {"fedsa-lora": [0.52, 0.50, 0.51], "fedit": [0.55, 0.52, 0.56]},
}


@pytest.fixture
def folders(tmp_path: Path) -> dict[str, Path]:
    out = {}
    for label, algos in ACC.items():
        out[label] = tmp_path / f"cmp-{label}"
        for algo, accs in algos.items():
            for seed, acc in enumerate(accs):
                unseen = acc - 0.2 if label == "IID" else None
                write_run(out[label], algo, seed, acc, acc - 0.1, unseen)
    # an unfinished run (no summary.json) is not read
    (out["0.1"] / "ffa-lora" / "seed_0").mkdir(parents=True)
    return out


def test_intervals_and_paired_differences_match_scipy(folders: dict[str, Path]) -> None:
    result = sweep([(k, folders[k]) for k in ("0.1", "IID")], None)
    assert [s["label"] for s in result["settings"]] == ["0.1", "IID"]
    low = {r["algorithm"]: r for r in result["settings"][0]["rows"]}
    assert set(low) == {"fedsa-lora", "fedit"}  # the unfinished ffa-lora is left out
    accs = ACC["0.1"]["fedit"]
    assert low["fedit"]["acc_mean"] == pytest.approx(sum(accs) / 3)
    assert low["fedit"]["acc_ci"] == pytest.approx(t_half(accs), rel=1e-4)
    bal = [a - 0.1 for a in accs]
    assert low["fedit"]["bal_ci"] == pytest.approx(t_half(bal), rel=1e-4)
    diff = [a - b for a, b in zip(accs, ACC["0.1"]["fedsa-lora"], strict=True)]
    ref = scipy_stats.ttest_rel(accs, ACC["0.1"]["fedsa-lora"]).confidence_interval(0.95)
    assert low["fedit"]["delta"] == pytest.approx(sum(diff) / 3)
    assert low["fedit"]["delta"] - low["fedit"]["delta_ci"] == pytest.approx(ref.low, rel=1e-4)
    assert low["fedit"]["unseen_n"] == 0 and math.isnan(low["fedit"]["unseen_mean"])
    iid = {r["algorithm"]: r for r in result["settings"][1]["rows"]}
    unseen = [a - 0.2 for a in ACC["IID"]["fedsa-lora"]]
    assert iid["fedsa-lora"]["unseen_mean"] == pytest.approx(sum(unseen) / 3)
    assert iid["fedsa-lora"]["unseen_ci"] == pytest.approx(t_half(unseen), rel=1e-4)


def test_cli_writes_tables_and_plots(folders: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    args = ["sweep", f"0.1={folders['0.1']}", f"IID={folders['IID']}", "--out", str(out)]
    assert main([*args, "--algorithms", "fedsa-lora,fedit", "--xlabel", "Dirichlet alpha"]) == 0
    text = (out / "sweep.md").read_text()
    first = sum(ACC["0.1"]["fedsa-lora"]) / 3
    assert f"| fedsa-lora | {first:.4f} ± {t_half(ACC['0.1']['fedsa-lora']):.4f} |" in text
    assert "## Unseen clients" in text and "| algorithm | 0.1 | IID |" in text
    for name in ("accuracy_vs_setting.png", "balanced_vs_setting.png", "seen_vs_unseen.png"):
        assert (out / name).read_bytes().startswith(b"\x89PNG")
    assert json.loads((out / "sweep.json").read_text())["xlabel"] == "Dirichlet alpha"


def test_bad_settings_are_one_line_errors(folders: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(DataError, match="is not LABEL=COMPARE_DIR"):
        parse_setting("runs/x")
    assert parse_setting("alpha=0.5=runs/x") == ("alpha=0.5", Path("runs/x"))
    with pytest.raises(DataError, match="is not a folder"):
        sweep([("a", tmp_path / "nope")], None)
    with pytest.raises(DataError, match="repeat a label"):
        sweep([("a", folders["0.1"]), ("a", folders["IID"])], None)
    with pytest.raises(DataError, match="no finished run of ffa-lora"):
        sweep([("a", folders["0.1"])], ["fedsa-lora", "ffa-lora"])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="holds no finished run"):
        sweep([("a", empty)], None)
    code = main(["sweep", str(empty), "--out", str(tmp_path / "o")])
    assert code == 2
