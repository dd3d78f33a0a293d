"""The Flower ServerApp and ClientApp run the algorithms' own hooks: no second implementation.

The apps' round logic (:func:`fedsa.flower.server_app.run_federation` and the ClientApp's
handlers) runs here over an in-memory grid that hands each message to the ClientApp handler of
its node in this process, so test-only algorithms registered with ``monkeypatch`` reach both
sides. Each must give the in-process engine's tensors and metrics: a round schedule that sends
one factor a round, and a server rule that merges into the base weights (server state, base
tensors sent to clients, an install step that restarts the adapter). The real deployment
(SuperLink, SuperNodes, processes) is covered by ``tests/test_flower.py``.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.conftest import require_flwr

require_flwr()

from flwr.app import Context, Message, RecordDict  # noqa: E402
from flwr.supercore.task_identity import TaskIdentity  # noqa: E402

from fedsa.algorithms.registry import ALGORITHMS  # noqa: E402
from fedsa.config.load import load_config  # noqa: E402
from fedsa.core.io import load_tensors  # noqa: E402
from fedsa.engine.runner import run  # noqa: E402
from fedsa.flower import client_app  # noqa: E402
from fedsa.flower.server_app import Settings, run_federation  # noqa: E402
from tests.test_hooks import ALTERNATING, MERGE  # noqa: E402

TINY = Path(__file__).parents[1] / "configs" / "tiny.toml"
Handler = Callable[[Message, Context], Message]
HANDLERS: dict[str, Handler] = {
    "query": client_app.query,
    "train": client_app.train,
    "evaluate": client_app.evaluate,
}


class InMemoryGrid:
    """Delivers each pushed message to its node's ClientApp handler at once (no network)."""

    def __init__(self, clients: int) -> None:
        self.contexts = {
            node: Context(1, node, {"client-id": str(node - 100)}, RecordDict(), {})
            for node in range(100, 100 + clients)
        }
        self.replies: dict[str, Message] = {}
        self._ids = itertools.count()

    def get_node_ids(self) -> list[int]:
        return list(self.contexts)

    def push_messages(self, messages: Iterable[Message]) -> list[str]:
        ids = []
        for msg in messages:
            mid = f"m{next(self._ids)}"
            msg.metadata.__dict__["_message_id"] = mid  # the SuperLink's job
            reply = HANDLERS[msg.metadata.message_type](
                msg, self.contexts[msg.metadata.dst_node_id]
            )
            self.replies[mid] = reply
            ids.append(mid)
        return ids

    def pull_messages(self, ids: Iterable[str]) -> list[Message]:
        return [self.replies.pop(i) for i in list(ids) if i in self.replies]


@pytest.fixture(autouse=True)
def _registered(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for algo in (ALTERNATING, MERGE):
        monkeypatch.setitem(ALGORITHMS, algo.name, algo)
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1
    yield


def _both_engines(cfg: Any, tmp_path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run ``cfg`` in-process and over the in-memory grid; their global tensors must be equal."""
    summary = run(cfg, tmp_path / "inproc")
    settings = Settings(cfg, tmp_path / "flower", 60.0, 10.0, True, False, False, 0.0)
    flower: dict[str, Any] = run_federation(InMemoryGrid(cfg.data.num_clients), settings)  # type: ignore[arg-type]
    a = load_tensors(tmp_path / "inproc" / "global.safetensors")
    b = load_tensors(tmp_path / "flower" / "global.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    return summary, flower


EXACT_AND_ALIGNED = [
    *("rolora", "flora", "fedex-lora", "flexlora", "fedsvd", "fed-alora", "fedrot-lora")
]


@pytest.mark.parametrize("algorithm", [ALTERNATING.name, MERGE.name, *EXACT_AND_ALIGNED])
def test_flower_apps_equal_in_process_with_hooks(algorithm: str, tmp_path: Path) -> None:
    cfg = load_config(TINY, [f"algorithm={algorithm}", "federation.rounds=2"])
    summary, flower = _both_engines(cfg, tmp_path)
    assert flower["final_clients"] == summary["final_clients"]
    # the same tensor bytes reach each client (base changes too: none, the last one, or dense)
    inproc = [json.loads(x) for x in (tmp_path / "inproc" / "metrics.jsonl").open()]
    fl = [json.loads(x) for x in (tmp_path / "flower" / "metrics.jsonl").open()]
    assert [r["bytes_down_per_client"] for r in inproc] == [
        r["payload_bytes_down_per_client"] for r in fl
    ]
    if algorithm in (MERGE.name, "flora", "fedex-lora"):  # base changes: sent and in state
        extra = load_tensors(tmp_path / "flower" / "server.safetensors")
        assert any(k.startswith("base/") for k in extra)
        mine = load_tensors(tmp_path / "inproc" / "server.safetensors")
        base = {k: v for k, v in mine.items() if k.startswith("base/")}
        assert base and all(torch.equal(v, extra[k]) for k, v in base.items())


def test_flower_sites_keep_the_same_generations_on_their_nodes(tmp_path: Path) -> None:
    """A site writes what its model answered into its own state dir, never to the server."""
    tiny_llama = TINY.parent / "tiny-llama.toml"
    cfg = load_config(tiny_llama, ["federation.rounds=2", "data.num_clients=2"])
    run(cfg, tmp_path / "inproc")
    grid = InMemoryGrid(cfg.data.num_clients)
    for node, context in grid.contexts.items():
        context.node_config["state-dir"] = str(tmp_path / f"state-{node}")
    settings = Settings(cfg, tmp_path / "flower", 60.0, 10.0, True, False, False, 0.0)
    run_federation(grid, settings)  # type: ignore[arg-type]
    assert not (tmp_path / "flower" / "generations").exists()
    for node in grid.contexts:
        client = str(node - 100)
        for t in (1, 2):
            [site] = (tmp_path / f"state-{node}").glob(f"*/generations/round_{t}/{client}.jsonl")
            mine = tmp_path / "inproc" / "generations" / f"round_{t}" / f"{client}.jsonl"
            assert site.read_text() == mine.read_text()


def test_flower_server_logs_to_the_trackers_as_in_process(tmp_path: Path) -> None:
    """``[tracking]`` on the Flower server: every finished round reaches MLflow, as in-process."""
    if os.environ.get("CI") != "true":  # in dev, so CI has it: there a missing one fails
        pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    from fedsa.tracking.mlflow_tracker import local_uri

    cfg = load_config(TINY, ["federation.rounds=2", 'tracking.report_to=["mlflow"]'])
    settings = Settings(cfg, tmp_path / "flower", 60.0, 10.0, True, False, False, 0.0)
    run_federation(InMemoryGrid(cfg.data.num_clients), settings)  # type: ignore[arg-type]
    records = [json.loads(x) for x in (tmp_path / "flower" / "metrics.jsonl").open()]
    client = MlflowClient(tracking_uri=local_uri(tmp_path / "flower"))
    experiment = client.get_experiment_by_name("fedsa")
    assert experiment is not None
    (found,) = client.search_runs([experiment.experiment_id])
    assert found.info.status == "FINISHED"
    history = client.get_metric_history(found.info.run_id, "eval/accuracy_mean")
    assert sorted((m.step, m.value) for m in history) == [
        (r["round"], r["eval"]["accuracy_mean"]) for r in records
    ]
    assert found.data.params["algorithm"] == cfg.algorithm


def test_flower_applies_the_same_dp_release_and_accountant(tmp_path: Path) -> None:
    """Client-level DP on Flower is the in-process server rule: with a noise seed, equal bytes."""
    dp = ["privacy.mode=client", "federation.weighting=uniform", "privacy.noise_seed=3"]
    cfg = load_config(
        TINY, [*dp, "federation.rounds=3", "data.num_clients=4", "federation.clients_per_round=2"]
    )
    summary, flower = _both_engines(cfg, tmp_path)
    inproc = [json.loads(x) for x in (tmp_path / "inproc" / "metrics.jsonl").open()]
    fl = [json.loads(x) for x in (tmp_path / "flower" / "metrics.jsonl").open()]
    assert [r["participants"] for r in inproc] == [r["participants"] for r in fl]
    assert [r["privacy"] for r in inproc] == [r["privacy"] for r in fl]
    assert flower["final_clients"] == summary["final_clients"]
    assert flower["privacy"] == summary["privacy"]
