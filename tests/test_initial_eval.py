"""``eval.initial``: every client evaluated before any training, recorded as round 0."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from fedsa.cli import main
from fedsa.config.load import load_config
from fedsa.core.errors import ConfigError
from fedsa.core.io import load_tensors
from fedsa.engine.checkpoint import KILL_ENV
from fedsa.engine.evaluation import evaluate_client
from fedsa.engine.prepare import prepare
from tests.test_resume import _cli, assert_same_run

TINY = Path(__file__).parents[1] / "configs" / "tiny.toml"


def records(run: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("algorithm", ["fedsa-lora", "centralized"])
def test_round_zero_is_the_untrained_model_and_changes_no_training(
    algorithm: str, tmp_path: Path
) -> None:
    args = [str(TINY), f"algorithm={algorithm}", "federation.rounds=2", "eval.clients=participants"]
    assert main(["run", *args, "eval.initial=true", "--out", str(tmp_path / "a")]) == 0
    assert main(["run", *args, "--out", str(tmp_path / "b")]) == 0
    with_zero, without = records(tmp_path / "a"), records(tmp_path / "b")
    assert [r["round"] for r in with_zero] == [0, 1, 2]
    zero = with_zero[0]
    assert zero["bytes_up"] == 0 and zero["cum_bytes_up"] == 0 and zero["train_loss"] is None
    fresh = prepare(load_config(TINY, [f"algorithm={algorithm}"]))  # never trained
    clients = zero["eval"]["clients"]  # type: ignore[index]
    assert set(clients) == set(fresh.client_ids)  # everyone, even with eval.clients=participants
    for k, c in enumerate(fresh.client_ids):
        assert clients[c]["accuracy"] == pytest.approx(evaluate_client(fresh, k)["accuracy"])
    # round 0 trains nothing and draws no randomness: the rest of the run is the same
    for a, b in zip(with_zero[1:], without, strict=True):
        assert a["eval"] == b["eval"] and a["train_loss"] == b["train_loss"]
    ga = load_tensors(tmp_path / "a" / "global.safetensors")
    gb = load_tensors(tmp_path / "b" / "global.safetensors")
    assert ga.keys() == gb.keys() and all((ga[k] == gb[k]).all() for k in ga)


def test_resume_after_round_zero_is_not_evaluated_twice(tmp_path: Path) -> None:
    args = [str(TINY), "federation.rounds=3", "eval.initial=true"]
    ref = tmp_path / "reference"
    assert main(["run", *args, "--out", str(ref)]) == 0
    out = tmp_path / "run"
    proc = _cli("run", *args, "--out", str(out), env={KILL_ENV: "2"})
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL, err.decode()
    assert main(["run", "--resume", str(out)]) == 0
    assert [r["round"] for r in records(out)] == [0, 1, 2, 3]
    assert_same_run(ref, out)


def test_flower_refuses_it_with_the_reason() -> None:
    from fedsa.flower.records import flower_refusal

    why = flower_refusal(load_config(TINY, ["eval.initial=true"]))
    assert why is not None and "in-process only" in why and "eval.initial" in why
    assert flower_refusal(load_config(TINY, [])) is None
    with pytest.raises(ConfigError, match="eval.initial"):
        load_config(TINY, ["eval.initial=maybe"])
