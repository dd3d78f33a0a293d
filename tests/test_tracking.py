"""``[tracking] report_to``: what the trackers hold, read back with their own libraries, equals
``metrics.jsonl`` and ``config.json``; tracking never changes a digest or blocks a resume.

Everything is local: TensorBoard event files, an MLflow SQLite store and W&B offline files under
the run directory, trackio under a temporary ``TRACKIO_DIR``; nothing reaches the network. A
missing tracker package skips its test on a developer machine but fails it under ``CI=true``
(the ``dev`` extra installs them all).
"""

from __future__ import annotations

import glob
import importlib
import json
import os
import shutil
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fedsa.cli import main
from fedsa.config.load import config_diff, load_config
from fedsa.config.schema import NOT_COMPUTED, RunConfig
from fedsa.core.errors import ConfigError
from fedsa.engine.results import read_metrics
from fedsa.engine.runner import run
from fedsa.tracking.base import round_scalars
from fedsa.tracking.fanout import Trackers
from fedsa.tracking.mlflow_tracker import local_uri

TINY = Path(__file__).parents[1] / "configs" / "tiny.toml"
# RunConfig().sha256() and the tiny config's digest on main before [tracking] existed: resume,
# checkpoints and `fedsa compare` reuse all key on them, so they must not move.
DEFAULT_SHA = "2ae31fd7d608e22c2a183ca1bf8e298ac43e35ebd13e6bc339de39598903a696"
TINY_SHA = "8f65bcdbd2d27214ecdd07d99d961608957f629d105fd31867539aa150d2bfbe"
OFFLINE = {
    "WANDB_MODE": "offline",
    "WANDB_SILENT": "true",
    "HF_HUB_OFFLINE": "1",
}
UNSET = ("MLFLOW_TRACKING_URI", "WANDB_API_KEY", "WANDB_BASE_URL", "TRACKIO_SPACE_ID")
UNSET += ("TRACKIO_SERVER_URL",)


def _need(package: str) -> None:
    try:
        importlib.import_module(package)
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail(
                f"{package} is not installed (required under CI=true): pip install -e .[dev]"
            )
        pytest.skip(f"{package} is not installed: pip install 'fedsa[{package}]'")


def _has(package: str) -> bool:
    try:
        importlib.import_module(package)
    except ImportError:
        return False
    return True


def _offline(mp: pytest.MonkeyPatch, home: Path) -> None:
    for key, value in OFFLINE.items():
        mp.setenv(key, value)
    for key in UNSET:
        mp.delenv(key, raising=False)
    for key in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        mp.setenv(key, str(home / key.lower()))


@pytest.fixture(scope="module")
def tracked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, RunConfig]]:
    """One tiny run logged to TensorBoard, MLflow and (where installed) W&B offline."""
    _need("tensorboard")
    _need("mlflow")
    backends = ["tensorboard", "mlflow"] + (["wandb"] if _has("wandb") else [])
    home = tmp_path_factory.mktemp("tracking")
    cfg = load_config(TINY, [f"tracking.report_to={json.dumps(backends)}"])
    with pytest.MonkeyPatch.context() as mp:
        _offline(mp, home)
        run(cfg, home / "run")
        yield home / "run", cfg


def _evaluated(out: Path) -> list[dict[str, Any]]:
    return [m for m in read_metrics(out) if "eval" in m]


def test_tensorboard_holds_every_round_as_metrics_jsonl(tracked: tuple[Path, RunConfig]) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out, cfg = tracked
    acc = EventAccumulator(str(out / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    scalars = set(acc.Tags()["scalars"])

    def series(tag: str) -> dict[int, float]:
        return {e.step: e.value for e in acc.Scalars(tag)}

    records = read_metrics(out)
    assert len(records) == 2 and all("eval" in r for r in records)
    for key in ("accuracy_mean", "accuracy_min", "accuracy_std", "accuracy_weighted"):
        want = {r["round"]: np.float32(r["eval"][key]) for r in records}
        assert series(f"eval/{key}") == want, key
    for key in ("bytes_up", "bytes_down", "cum_bytes_up", "cum_bytes_down"):
        assert series(f"comm/{key}") == {r["round"]: float(r[key]) for r in records}, key
    assert series("train/loss") == {r["round"]: np.float32(r["train_loss"]) for r in records}
    for cid in records[-1]["eval"]["clients"]:
        assert {f"clients/{cid}/accuracy", f"clients/{cid}/train_loss"} <= scalars
        want = {r["round"]: np.float32(r["eval"]["clients"][cid]["accuracy"]) for r in records}
        assert series(f"clients/{cid}/accuracy") == want
    assert {"plots/accuracy_vs_round", "plots/client_accuracy"} <= set(acc.Tags()["images"])
    (text,) = acc.Tensors("config/text_summary")  # add_text is stored as a tensor summary
    assert f'"r": {cfg.adapter.r}' in text.tensor_proto.string_val[0].decode()


def test_mlflow_run_holds_metrics_params_and_artefacts(tracked: tuple[Path, RunConfig]) -> None:
    from mlflow.tracking import MlflowClient

    out, cfg = tracked
    client = MlflowClient(tracking_uri=local_uri(out))
    experiment = client.get_experiment_by_name("fedsa")
    assert experiment is not None
    (found,) = client.search_runs([experiment.experiment_id])
    assert found.info.status == "FINISHED"
    assert found.info.run_name == "run"
    assert found.data.tags["algorithm"] == cfg.algorithm
    history = client.get_metric_history(found.info.run_id, "eval/accuracy_mean")
    want = [(r["round"], r["eval"]["accuracy_mean"]) for r in _evaluated(out)]
    assert sorted((m.step, m.value) for m in history) == want  # doubles: exact
    cid = next(iter(_evaluated(out)[-1]["eval"]["clients"]))
    assert client.get_metric_history(found.info.run_id, f"clients/{cid}/train_loss")
    params = found.data.params
    assert params["adapter.r"] == str(cfg.adapter.r)
    assert params["optim.lr"] == str(cfg.optim.lr)
    assert params["algorithm"] == cfg.algorithm
    assert json.loads(params["adapter.target_modules"]) == list(cfg.adapter.target_modules)
    assert not any(k.startswith("tracking.") for k in params)
    files = {a.path for a in client.list_artifacts(found.info.run_id)}
    files |= {a.path for a in client.list_artifacts(found.info.run_id, "plots")}
    want_files = {"config.json", "summary.json", "plots/accuracy_vs_round.png"}
    assert want_files | {"plots/client_accuracy.png"} <= files


def _wandb_records(path: Path) -> list[Any]:
    """The records of an offline ``.wandb`` file, decoded with W&B's own protobuf schema.

    wandb 0.31 has no Python reader any more (its Go core reads the file), so the LevelDB-log
    framing (7-byte file header; 32 KiB blocks of ``crc32, length, type`` chunks) is undone here.
    """
    from wandb.proto import wandb_internal_pb2

    data, pos, chunk, out = path.read_bytes(), 7, b"", []
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:  # a block's tail too short for a header is padding
            pos += 32768 - pos % 32768
            continue
        _, size, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk += data[pos + 7 : pos + 7 + size]
        pos += 7 + size
        if kind in (1, 4):  # FULL or LAST
            record = wandb_internal_pb2.Record()
            record.ParseFromString(chunk)
            out.append(record)
            chunk = b""
        elif kind == 0 and size == 0:
            break
    return out


def test_wandb_offline_run_holds_the_history(tracked: tuple[Path, RunConfig]) -> None:
    _need("wandb")
    out, cfg = tracked
    (run_dir,) = glob.glob(str(out / "wandb" / "offline-run-*"))
    (file,) = glob.glob(f"{run_dir}/run-*.wandb")
    records = _wandb_records(Path(file))
    rows = [
        {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item}
        for r in records
        if r.WhichOneof("record_type") == "history"
    ]
    got = [(row["_step"], row["eval/accuracy_mean"]) for row in rows]
    assert got == [(r["round"], r["eval"]["accuracy_mean"]) for r in _evaluated(out)]
    config: dict[str, Any] = {}
    for r in records:
        if r.WhichOneof("record_type") == "config":
            config.update({u.key: json.loads(u.value_json) for u in r.config.update})
    assert config["adapter"]["r"] == cfg.adapter.r
    assert (Path(run_dir) / "files" / "plots" / "accuracy_vs_round.png").is_file()
    assert (Path(run_dir) / "files" / "summary.json").is_file()


TRACKIO_SCRIPT = r"""
import json, sys
from fedsa.cli import main
code = main(["run", sys.argv[1], "tracking.report_to=trackio", "tracking.project=fedsa-test",
             "tracking.run_name=tiny", "--out", sys.argv[2]])
from trackio.sqlite_storage import SQLiteStorage
logs = SQLiteStorage.get_logs("fedsa-test", "tiny")
configs = SQLiteStorage.get_all_run_configs("fedsa-test")
print(json.dumps({"code": code, "logs": logs, "configs": configs}, default=str))
"""


def test_trackio_run_holds_the_rounds(tmp_path: Path) -> None:
    _need("trackio")
    env = {k: v for k, v in os.environ.items() if k not in UNSET}
    env.update(OFFLINE, TRACKIO_DIR=str(tmp_path / "trackio"))
    out = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-c", TRACKIO_SCRIPT, str(TINY), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("fedsa-lora"), done.stdout  # no chatter
    got = json.loads(lines[1])
    assert got["code"] == 0
    steps = {e["step"]: e["eval/accuracy_mean"] for e in got["logs"] if "eval/accuracy_mean" in e}
    assert steps == {r["round"]: r["eval"]["accuracy_mean"] for r in _evaluated(out)}
    (config,) = got["configs"].values()
    assert config["adapter.r"] == "4"


def test_tracking_leaves_the_digest_and_the_resume_check_alone() -> None:
    assert RunConfig().sha256() == DEFAULT_SHA
    tiny = load_config(TINY)
    assert tiny.sha256() == TINY_SHA
    other = load_config(TINY, ['tracking.report_to=["mlflow"]', "tracking.project=x"])
    assert other.sha256() == TINY_SHA
    old = tiny.to_dict()
    old.pop("tracking")  # a config.json written before [tracking] existed
    assert config_diff(old, other.to_dict(), NOT_COMPUTED) == []
    assert config_diff(old, other.to_dict()) != []  # without the ignore it would differ


def test_resume_with_other_tracking_continues_the_same_mlflow_run(tmp_path: Path) -> None:
    _need("tensorboard")
    _need("mlflow")
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    with pytest.MonkeyPatch.context() as mp:
        _offline(mp, tmp_path)
        run(load_config(TINY, ['tracking.report_to=["mlflow"]']), out)
        saved = json.loads((out / "config.json").read_text())
        saved.pop("tracking")  # as written before [tracking] existed
        (out / "config.json").write_text(json.dumps(saved))
        shutil.rmtree(out / "checkpoints" / "round_000002")  # as if killed after round 1
        cfg = load_config(TINY, ['tracking.report_to=["mlflow", "tensorboard"]'])
        run(cfg, out, resume=True)
    acc = EventAccumulator(str(out / "tensorboard"))
    acc.Reload()
    assert [e.step for e in acc.Scalars("eval/accuracy_mean")] == [2]  # only what it ran
    client = MlflowClient(tracking_uri=local_uri(out))
    (found,) = client.search_runs([client.get_experiment_by_name("fedsa").experiment_id])
    last = {m.step: m.value for m in client.get_metric_history(found.info.run_id, "eval/loss_mean")}
    assert last == {r["round"]: r["eval"]["loss_mean"] for r in _evaluated(out)}
    assert found.info.status == "FINISHED"


def test_an_unknown_tracker_is_a_one_line_error() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(TINY, ['tracking.report_to=["tensorbord"]'])
    message = str(info.value)
    assert (
        "did you mean 'tensorboard'" in message and "mlflow, tensorboard, trackio, wandb" in message
    )
    assert "\n" not in message


def test_a_missing_tracker_package_fails_before_the_run_dir_is_touched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)  # `import mlflow` now raises ImportError
    cfg = load_config(TINY, ['tracking.report_to=["mlflow"]'])
    with pytest.raises(ConfigError) as info:
        run(cfg, tmp_path / "run")
    assert str(info.value) == (
        "tracking.report_to includes 'mlflow' but mlflow is not installed: "
        "pip install 'fedsa[mlflow]' (or remove 'mlflow' from tracking.report_to)"
    )
    assert not (tmp_path / "run").exists()
    argv = ["run", str(TINY), "tracking.report_to=mlflow", "--out", str(tmp_path / "cli")]
    assert main(argv) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0
    assert not (tmp_path / "cli").exists()


class _Broken:
    run_id = ""

    def __init__(self) -> None:
        self.rounds: list[int] = []
        self.closed = False

    def log_params(self, params: Any) -> None: ...

    def log_round(self, step: int, scalars: Any) -> None:
        self.rounds.append(step)
        raise RuntimeError("server gone")

    def log_artifacts(self, paths: Any) -> None: ...

    def close(self, *, failed: bool = False) -> None:
        self.closed = True


def test_a_failing_tracker_is_dropped_and_the_others_go_on(tmp_path: Path) -> None:
    broken, kept = _Broken(), _Broken()
    kept.log_round = lambda step, scalars: kept.rounds.append(step)  # type: ignore[method-assign]
    with Trackers(RunConfig(), {"a": broken, "b": kept}, tmp_path) as trackers:
        for t in (1, 2):
            trackers.on_round({"round": t, "bytes_up": 1, "train_loss": None})
    assert broken.rounds == [1] and kept.rounds == [1, 2]
    assert kept.closed and not broken.closed  # dropped: never called again


def test_round_scalars_names() -> None:
    record = {
        "round": 3,
        "skipped": True,
        "train_loss": None,
        "train_loss_per_client": {},
        "bytes_up": 0,
        "bytes_down": 10,
        "cum_bytes_up": 5,
        "cum_bytes_down": 30,
        "eval": {
            "clients": {"0": {"accuracy": 0.5, "loss": 0.7, "n": 4}},
            "accuracy_mean": 0.5,
            "accuracy_weighted": 0.5,
            "accuracy_min": 0.5,
            "accuracy_std": 0.0,
            "loss_mean": 0.7,
        },
    }
    got = round_scalars(record)
    assert "train/loss" not in got  # no client trained: missing, not zero
    assert got["round/skipped"] == 1.0 and got["comm/cum_bytes_down"] == 30.0
    assert got["clients/0/accuracy"] == 0.5 and got["clients/0/loss"] == 0.7
    assert got["eval/accuracy_std"] == 0.0
