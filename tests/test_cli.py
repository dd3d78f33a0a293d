"""The ``fedsa`` command end to end on the tiny config, and its error behaviour."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from fedsa.cli import main
from fedsa.core.params import equal

TINY = Path(__file__).parents[1] / "configs" / "tiny.toml"


def test_run_writes_the_run_directory(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "fedsa.cli",
            "run",
            str(TINY),
            "algorithm=fedsa-lora",
            "seed=1",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "mean client accuracy" in proc.stdout
    config = json.loads((out / "config.json").read_text())
    assert config["algorithm"] == "fedsa-lora" and config["seed"] == 1
    assert config["federation"]["rounds"] == 2  # resolved: every field present
    assert set(config["optim"]) == {"name", "lr", "weight_decay", "momentum", "max_grad_norm"}
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [x["round"] for x in lines] == [1, 2]
    for rec in lines:
        for key in ("round", "participants", "bytes_up", "bytes_down", "train_loss", "eval"):
            assert key in rec
        ev = rec["eval"]
        assert set(ev["clients"]) == {"0", "1", "2"}
        assert {"accuracy_mean", "accuracy_weighted", "accuracy_min", "accuracy_std"} <= set(ev)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["final"]["accuracy_mean"] == lines[-1]["eval"]["accuracy_mean"]
    assert summary["total_bytes_up"] == sum(x["bytes_up"] for x in lines)
    glob = load_file(str(out / "global.safetensors"))
    assert glob and all(".lora_A." in k for k in glob)  # fedsa-lora shares A only
    for cid in ("0", "1", "2"):
        priv = load_file(str(out / "clients" / f"{cid}.safetensors"))
        assert priv and all(".lora_B." in k or "modules_to_save" in k for k in priv)
    a = load_file(str(out / "clients" / "0.safetensors"))
    b = load_file(str(out / "clients" / "1.safetensors"))
    assert not equal(a, b)


def test_run_is_reproducible_and_refuses_to_mix_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", str(TINY), "--out", str(tmp_path / "a")]) == 0
    assert main(["run", str(TINY), "--out", str(tmp_path / "b")]) == 0
    assert equal(
        load_file(str(tmp_path / "a" / "global.safetensors")),
        load_file(str(tmp_path / "b" / "global.safetensors")),
    )
    ma = (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()
    mb = (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    timing = ("wall_s", "eval_s")
    strip = [{k: v for k, v in json.loads(x).items() if k not in timing} for x in ma]
    assert strip == [{k: v for k, v in json.loads(x).items() if k not in timing} for x in mb]
    capsys.readouterr()
    assert main(["run", str(TINY), "--out", str(tmp_path / "a")]) == 2
    assert "already holds a run" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["federation.roundz=3"], "unknown config key 'federation.roundz'"),
        (["federation.rounds=x"], "wrong type"),
        (["federation.rounds=-1"], "must be > 0"),
        (["data.task=sst2", "data.data_dir=/nonexistent/dir"], "/nonexistent/dir"),
        (["data.num_clients=5000"], "client"),
        (["data.task=mnli9"], "mnli9"),
    ],
)
def test_errors_exit_2_with_one_line(tmp_path: Path, args: list[str], needle: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "fedsa.cli", "run", str(TINY), *args, "--out", str(tmp_path / "r")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2
    err = [line for line in proc.stderr.splitlines() if line.startswith("fedsa: error:")]
    assert len(err) == 1 and needle in err[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "r" / "metrics.jsonl").exists()


def test_out_is_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    assert main(["run", str(TINY), "--out", str(f)]) == 2
    assert "is a file" in capsys.readouterr().err


def test_list_names_everything(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in (
        "fedsa-lora",
        "fedit",
        "ffa-lora",
        "local-only",
        "lora",
        "rslora",
        "vera",
        "sst2",
        "rte",
        "qnli",
        "mnli",
        "qqp",
        "mrpc",
        "cola",
        "minilm",
        "tiny-bert",
        "2410.01463",
    ):
        assert name in out


def test_compare_prints_a_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["compare", str(TINY), "--algorithms", "fedit,fedsa-lora", "--out", str(tmp_path)])
        == 0
    )
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith(("fedit", "fedsa-lora"))]
    assert len(rows) == 2
    for algo in ("fedit", "fedsa-lora"):
        summary = json.loads((tmp_path / algo / "seed_0" / "summary.json").read_text())
        row = next(r for r in rows if r.split()[0] == algo)
        assert f"{summary['final']['accuracy_mean']:.4f}" in row
    # a second call reuses the finished runs
    assert (
        main(["compare", str(TINY), "--algorithms", "fedit,fedsa-lora", "--out", str(tmp_path)])
        == 0
    )
    assert "reusing finished run" in capsys.readouterr().err


def test_snapshots_keep_before_and_after_tensors(tmp_path: Path) -> None:
    out = tmp_path / "snap"
    assert (
        main(
            ["run", str(TINY), "algorithm=fedit", "analysis.snapshot_rounds=[2]", "--out", str(out)]
        )
        == 0
    )
    files = sorted((out / "snapshots").rglob("*.safetensors"))
    assert [f.relative_to(out).as_posix() for f in files] == [
        "snapshots/round_2/0.safetensors",
        "snapshots/round_2/1.safetensors",
        "snapshots/round_2/2.safetensors",
    ]
    snap = load_file(str(files[0]))
    before = {k[len("before.") :] for k in snap if k.startswith("before.")}
    after = {k[len("after.") :] for k in snap if k.startswith("after.")}
    assert before == after and any(".lora_A." in k for k in after)
    b0 = {k: v for k, v in snap.items() if k.startswith("before.") and ".lora_A." in k}
    snap1 = load_file(str(files[1]))
    assert equal(b0, {k: snap1[k] for k in b0})  # all clients received the same global A
    assert (
        main(["run", str(TINY), "analysis.snapshot_rounds=[3]", "--out", str(tmp_path / "x")]) == 2
    )
