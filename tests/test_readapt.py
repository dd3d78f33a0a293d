"""``fedsa adapt``: a finished run's unseen clients at another budget equal a fresh run's."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import torch

from fedsa.cli import main
from fedsa.config.load import load_config
from fedsa.core.errors import ConfigError
from fedsa.core.io import load_tensors
from fedsa.engine.checkpoint import Checkpointer
from fedsa.engine.readapt import readapt
from fedsa.engine.results import read_metrics, read_summary
from fedsa.engine.runner import run

TINY = Path(__file__).parents[1] / "configs" / "tiny.toml"
HOLD = ["data.num_clients=4", "eval.holdout_clients=2", "federation.rounds=2"]


def _untimed(obj: Any) -> Any:
    """``obj`` without wall-clock fields (``*_s``), which no two runs share."""
    if isinstance(obj, dict):
        return {k: _untimed(v) for k, v in obj.items() if not k.endswith("_s")}
    if isinstance(obj, list):
        return [_untimed(v) for v in obj]
    return obj


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


# fedex-lora changes the base weights on the server: the unseen clients must get those too
@pytest.mark.parametrize("algorithm", ["fedsa-lora", "fedit", "fedex-lora", "centralized"])
def test_readapted_run_equals_a_fresh_run_with_that_budget(tmp_path: Path, algorithm: str) -> None:
    over = [*HOLD, f"algorithm={algorithm}", "optim.lr=0.02"]  # adaptation moves the scores
    run(load_config(TINY, [*over, "eval.adapt_steps=0"]), tmp_path / "src")
    before = _digest(tmp_path / "src")
    fresh_cfg = load_config(TINY, [*over, "eval.adapt_steps=6"])
    run(fresh_cfg, tmp_path / "fresh")
    got = readapt(tmp_path / "src", 6, tmp_path / "derived")

    fresh = read_summary(tmp_path / "fresh")
    assert got == read_summary(tmp_path / "derived")
    assert got["config_sha256"] == fresh["config_sha256"] == fresh_cfg.sha256()  # compare reuses
    assert got["readapted_from"]["adapt_steps"] == 0
    assert _untimed({k: v for k, v in got.items() if k != "readapted_from"}) == _untimed(fresh)
    assert got["final_unseen"]["adapt_steps"] == 6
    src = read_summary(tmp_path / "src")
    assert got["final"] == src["final"]  # the seen clients are the same run
    moved = got["final_unseen_clients"] != src["final_unseen_clients"]
    assert moved == (algorithm != "centralized")  # the pooled model has no private part to adapt
    assert _untimed(read_metrics(tmp_path / "derived")) == _untimed(
        read_metrics(tmp_path / "fresh")
    )
    for name in ("config.json",):
        assert json.loads((tmp_path / "derived" / name).read_text()) == json.loads(
            (tmp_path / "fresh" / name).read_text()
        )
    a, b = (
        load_tensors(tmp_path / "derived" / "global.safetensors"),
        load_tensors(tmp_path / "fresh" / "global.safetensors"),
    )
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ckpt = Checkpointer(tmp_path / "derived", fresh_cfg).latest()  # verifies under the new config
    assert (
        ckpt is not None and ckpt.round == 2 and ckpt.history[-1]["eval_unseen"]["adapt_steps"] == 6
    )
    assert _digest(tmp_path / "src") == before  # the source run is untouched


def test_readapt_refuses_what_it_cannot_score_and_changes_nothing(tmp_path: Path) -> None:
    run(load_config(TINY, ["federation.rounds=1"]), tmp_path / "plain")
    with pytest.raises(ConfigError, match="no unseen clients"):
        readapt(tmp_path / "plain", 5, tmp_path / "x")
    run(load_config(TINY, HOLD), tmp_path / "src")
    with pytest.raises(ConfigError, match="integer >= 0"):
        readapt(tmp_path / "src", -1, tmp_path / "x")
    with pytest.raises(ConfigError, match="is the source run"):
        readapt(tmp_path / "src", 5, tmp_path / "src")
    with pytest.raises(ConfigError, match="already holds a run"):
        readapt(tmp_path / "src", 5, tmp_path / "plain")
    with pytest.raises(ConfigError, match="not a run directory"):
        readapt(tmp_path / "nothing", 5, tmp_path / "x")
    # without a final checkpoint (checkpoint.every = 0, or a damaged one) there is no state
    before = _digest(tmp_path / "src")
    for path in (tmp_path / "src" / "checkpoints").iterdir():
        (path / "state.safetensors").write_bytes(b"broken")
    with pytest.raises(ConfigError, match="no valid final checkpoint"):
        readapt(tmp_path / "src", 5, tmp_path / "x")
    (tmp_path / "src" / "summary.json").unlink()
    with pytest.raises(ConfigError, match="not finished"):
        readapt(tmp_path / "src", 5, tmp_path / "x")
    assert not (tmp_path / "x").exists()
    assert set(_digest(tmp_path / "src")) == set(before) - {"summary.json"}
    assert not [p for p in tmp_path.iterdir() if "readapt" in p.name]  # no half-built directory


def test_adapt_command_writes_one_run_per_budget(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run(load_config(TINY, HOLD), tmp_path / "src")
    out = str(tmp_path / "adapt{steps}")
    assert main(["adapt", str(tmp_path / "src"), "--steps", "3,0", "--out", out]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line.split(": ", 1)[1])["adapt_steps"] for line in lines] == [3, 0]
    zero = read_summary(tmp_path / "adapt0")
    assert _untimed(zero["final_unseen"]) == _untimed(
        read_summary(tmp_path / "src")["final_unseen"]
    )
    assert main(["adapt", str(tmp_path / "src"), "--steps", "3", "--out", out]) == 2  # exists
    assert main(["adapt", str(tmp_path / "src"), "--steps", "3", "--out", out, "--overwrite"]) == 0
    assert main(["adapt", str(tmp_path / "src"), "--steps", "x", "--out", out]) == 2
    assert main(["adapt", str(tmp_path / "src"), "--steps", "3,3", "--out", out]) == 2
    bad = str(tmp_path / "one")
    assert main(["adapt", str(tmp_path / "src"), "--steps", "3,5", "--out", bad]) == 2
    err = capsys.readouterr().err
    assert "put {steps} in it" in err and "distinct integers" in err
