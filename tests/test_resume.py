"""Crash safety: a run killed at any point and resumed ends bitwise equal to an uninterrupted one.

The kill test starts the tiny config as a subprocess, SIGKILLs it (after a random round, or in
the middle of writing a checkpoint), resumes it with ``fedsa run --resume`` and compares every
saved tensor and every metrics record (timings excluded) with an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from fedsa.cli import main
from fedsa.config.load import load_config
from fedsa.engine.checkpoint import KILL_ENV, Checkpointer

TINY = Path(__file__).parents[1] / "configs" / "tiny.toml"
ROUNDS = 6
ARGS = [str(TINY), f"federation.rounds={ROUNDS}", "data.num_clients=4", "checkpoint.keep=2"]
TIMING = {"wall_s", "eval_s"}  # wall-clock timings: the only fields a resume may change


def _cli(*argv: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.Popen(
        [sys.executable, "-m", "fedsa.cli", *argv],
        env=full_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def _records(path: Path) -> list[dict[str, Any]]:
    lines = (path / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(x).items() if k not in TIMING} for x in lines]


def assert_same_run(a: Path, b: Path) -> None:
    """Bitwise-equal tensors, metrics and summary (wall-clock timings aside)."""
    files = sorted(
        p.relative_to(a) for p in a.rglob("*.safetensors") if "checkpoints" not in p.parts
    )
    assert files, "reference run saved no tensors"
    for rel in files:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), f"{rel} differs"
    assert _records(a) == _records(b)
    sa, sb = (json.loads((p / "summary.json").read_text()) for p in (a, b))
    sa.pop("wall_s"), sb.pop("wall_s")
    assert sa == sb


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("reference") / "run"
    assert main(["run", *ARGS, "--out", str(out)]) == 0
    return out


def _wait_rounds(proc: subprocess.Popen[bytes], metrics: Path, rounds: int) -> None:
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= rounds:
            return
        time.sleep(0.02)
    raise AssertionError(f"run ended or stalled before round {rounds}")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kill_after_a_random_round_then_resume(reference: Path, tmp_path: Path, seed: int) -> None:
    out = tmp_path / "run"
    kill_after = random.Random(seed).randint(1, ROUNDS - 1)
    proc = _cli("run", *ARGS, "--out", str(out))
    try:
        _wait_rounds(proc, out / "metrics.jsonl", kill_after)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "summary.json").exists()
    assert main(["run", "--resume", str(out)]) == 0
    assert_same_run(reference, out)


@pytest.mark.parametrize("round_idx", [2, ROUNDS])
def test_kill_during_a_checkpoint_write_then_resume(
    reference: Path, tmp_path: Path, round_idx: int
) -> None:
    out = tmp_path / "run"
    proc = _cli("run", *ARGS, "--out", str(out), env={KILL_ENV: str(round_idx)})
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL, err.decode()
    leftovers = [p.name for p in (out / "checkpoints").iterdir()]
    assert any(name.startswith(".tmp-") for name in leftovers)  # it died mid-write
    assert f"round_{round_idx:06d}" not in leftovers
    assert main(["run", "--resume", str(out)]) == 0
    assert_same_run(reference, out)
    assert not any(p.name.startswith(".tmp-") for p in (out / "checkpoints").iterdir())


def _finished_copy(reference: Path, tmp_path: Path) -> Path:
    import shutil

    out = tmp_path / "run"
    shutil.copytree(reference, out)
    (out / "summary.json").unlink()
    return out


def test_corrupt_newest_checkpoint_falls_back_to_the_previous(
    reference: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = _finished_copy(reference, tmp_path)
    newest = out / "checkpoints" / f"round_{ROUNDS:06d}" / "state.safetensors"
    newest.write_bytes(newest.read_bytes()[:100])  # truncated
    with caplog.at_level("WARNING"):
        assert main(["run", "--resume", str(out)]) == 0
    assert "fails its checksum" in caplog.text
    assert f"older checkpoint of round {ROUNDS - 1}" in caplog.text
    assert_same_run(reference, out)


def test_only_newest_k_checkpoints_are_kept(reference: Path) -> None:
    names = sorted(p.name for p in (reference / "checkpoints").iterdir())
    assert names == [f"round_{ROUNDS - 1:06d}", f"round_{ROUNDS:06d}"]


def test_checkpoint_holds_every_part_of_the_state(reference: Path) -> None:
    cfg = load_config(TINY, ARGS[1:])
    ckpt = Checkpointer(reference, cfg).read(ROUNDS)
    assert ckpt.round == ROUNDS and len(ckpt.history) == ROUNDS
    assert [r["participants"] for r in ckpt.history] == [
        r["participants"] for r in _records(reference)
    ]
    assert set(ckpt.private) == {"0", "1", "2", "3"} and ckpt.shared
    assert "rng/torch" in ckpt.rng_tensors and {"numpy", "python"} <= set(ckpt.rng)


def test_rng_states_round_trip(reference: Path) -> None:
    import numpy as np
    import torch

    cfg = load_config(TINY, ARGS[1:])
    ckpt = Checkpointer(reference, cfg).read(ROUNDS)
    ckpt.restore_rng()
    first = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    for _ in range(3):
        random.random(), np.random.rand(), torch.rand(5)
    ckpt.restore_rng()
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == first


def test_resume_with_another_config_names_the_differing_keys(
    reference: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = _finished_copy(reference, tmp_path)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    code = main(["run", *ARGS, "optim.lr=0.5", "seed=3", "--resume", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    assert "optim.lr" in err and "seed" in err and "another config" in err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_resume_of_a_centralized_run(tmp_path: Path) -> None:
    args = [str(TINY), "algorithm=centralized", "federation.rounds=3"]
    ref, out = tmp_path / "ref", tmp_path / "run"
    assert main(["run", *args, "--out", str(ref)]) == 0
    import shutil

    shutil.copytree(ref, out)
    shutil.rmtree(out / "checkpoints" / "round_000003")
    (out / "metrics.jsonl").write_text((out / "metrics.jsonl").read_text() + '{"torn": ')
    assert main(["run", "--resume", str(out)]) == 0
    assert_same_run(ref, out)
