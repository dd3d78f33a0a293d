"""Secure aggregation (SecAgg+) of the shared tensors on Flower: the server only sees the sum.

The ServerApp's round loop and the real ClientApp (with Flower's ``secaggplus_mod`` and its
cryptography) run over an in-memory grid here, so the test can record every message the server
code is handed and every update a client masked, and drop or corrupt a client's reply at a
chosen exchange. The same protocol over a real SuperLink and SuperNodes is in
``tests/test_flower.py::test_secure_aggregation_deployment``.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tests.conftest import require_flwr

require_flwr()

from flwr.app import Message  # noqa: E402
from flwr.common import bytes_to_ndarray  # noqa: E402
from flwr.common.secure_aggregation.secaggplus_constants import (  # noqa: E402
    RECORD_KEY_CONFIGS,
    Key,
    Stage,
)
from flwr.supercore.task_identity import TaskIdentity  # noqa: E402

from fedsa.config.load import load_config  # noqa: E402
from fedsa.config.schema import RunConfig  # noqa: E402
from fedsa.core.errors import ConfigError, UpdateError  # noqa: E402
from fedsa.core.io import load_tensors  # noqa: E402
from fedsa.engine import simulation  # noqa: E402
from fedsa.engine.runner import run  # noqa: E402
from fedsa.flower import client_app, server_app, site, uplink  # noqa: E402
from fedsa.flower.server_app import Settings, run_federation  # noqa: E402
from fedsa.privacy import secure  # noqa: E402
from fedsa.privacy.accounting import expected_participants  # noqa: E402
from tests.test_flower_hooks import InMemoryGrid  # noqa: E402

TINY = Path(__file__).parents[1] / "configs" / "tiny.toml"
Tamper = Callable[[str, int, int, Message], Message | None]
"""(stage, round, node, reply) -> the reply the server gets, or None to drop it."""


class SecureGrid(InMemoryGrid):
    """Hands each message to the real ClientApp (mods included) of its node; records replies."""

    def __init__(self, clients: int, tamper: Tamper | None = None) -> None:
        super().__init__(clients)
        self.tamper = tamper
        self.pulled: list[tuple[str, Message]] = []  # (stage or message type, reply)
        self._kinds: dict[str, str] = {}

    def push_messages(self, messages: Iterable[Message]) -> list[str]:
        ids = []
        for msg in messages:
            mid = f"m{next(self._ids)}"
            msg.metadata.__dict__["_message_id"] = mid  # the SuperLink's job
            node = msg.metadata.dst_node_id
            rec = msg.content.config_records.get(RECORD_KEY_CONFIGS)
            kind = str(rec[Key.STAGE]) if rec is not None else msg.metadata.message_type
            # a copy, as the network delivers one (the mod edits what it is given)
            reply: Message | None = client_app.app(copy.deepcopy(msg), self.contexts[node])
            if self.tamper is not None and rec is not None:
                t = int(msg.metadata.group_id)
                reply = self.tamper(kind, t, node, reply)
            if reply is not None:
                self.replies[mid], self._kinds[mid] = reply, kind
            ids.append(mid)
        return ids

    def pull_messages(self, ids: Iterable[str]) -> list[Message]:
        ids = list(ids)
        out = super().pull_messages(ids)
        by_id = {m.metadata.reply_to_message_id: m for m in out}
        self.pulled += [(self._kinds.pop(i), by_id[i]) for i in list(ids) if i in by_id]
        return out


@pytest.fixture(autouse=True)
def _identity() -> None:
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1
    np.random.seed(0)  # SecAgg+'s stochastic rounding draws from numpy's global generator


Masked = dict[tuple[int, str], tuple[dict[str, np.ndarray], float]]


@pytest.fixture
def masked(monkeypatch: pytest.MonkeyPatch) -> Masked:
    """Every update a client handed to SecAgg+ and its weight, by (round, client)."""
    seen: Masked = {}
    real = site.SiteRunner.handle

    def spy(self: site.SiteRunner, request: Any, context: Any = None) -> Any:
        reply = real(self, request, context)
        if "secure" in reply.header["records"]:
            key = (int(request.header["config"]["round"]), str(reply.header["client"]))
            seen[key] = (dict(reply.arrays), float(reply.header["records"]["secure"]["weight"]))
        return reply

    monkeypatch.setattr(site.SiteRunner, "handle", spy)
    return seen


@pytest.fixture
def handed(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, list[np.ndarray], list[str]]]:
    """What the server code got from SecAgg+ each round: (round, mean, clients it holds)."""
    got: list[tuple[int, list[np.ndarray], list[str]]] = []
    real = uplink.released_uploads

    def spy(mean: Any, names: Any, clients: Any, shared: Any, cfg: Any, t: int) -> Any:
        got.append((t, [np.array(m) for m in mean], list(clients)))
        return real(mean, names, clients, shared, cfg, t)

    monkeypatch.setattr(uplink, "released_uploads", spy)
    return got


def _secure(overrides: list[str]) -> RunConfig:
    return load_config(TINY, ["privacy.secure_aggregation=true", *overrides])


def _in_the_clear(cfg: RunConfig) -> RunConfig:
    return dataclasses.replace(
        cfg, privacy=dataclasses.replace(cfg.privacy, secure_aggregation=False)
    )


def _flower(
    cfg: RunConfig, out: Path, grid: SecureGrid, timeout: float = 60.0
) -> list[dict[str, Any]]:
    """Run ``cfg`` over ``grid``; ``timeout``: how long an exchange waits for a dropped reply."""
    settings = Settings(cfg, out, timeout, 10.0, True, False, False, 0.0)
    run_federation(grid, settings)  # type: ignore[arg-type]
    return [json.loads(line) for line in (out / "metrics.jsonl").open()]


def test_client_update_is_the_clipped_delta_and_refuses_what_secagg_would_clip() -> None:
    cfg = _secure(["privacy.mode=client", "privacy.clip_norm=0.5", "federation.weighting=uniform"])
    received = {"b": torch.zeros(2), "a": torch.ones(3)}
    upload = {"b": torch.tensor([3.0, 0.0]), "a": torch.tensor([1.0, 1.0, 5.0])}
    out = secure.client_update(upload, received, cfg, 1.0)
    assert list(out) == ["a", "b"]  # sorted: every client masks its arrays in one order
    norm = torch.sqrt(sum(t.pow(2).sum() for t in out.values()))
    assert float(norm) == pytest.approx(0.5)  # one norm over all tensors: 5 -> 0.5
    assert torch.allclose(out["b"], torch.tensor([0.3, 0.0], dtype=torch.float64))
    assert secure.clip_range(cfg) == 0.5  # under DP no coordinate can exceed the clip norm
    plain = _secure(["privacy.secagg_clip_range=2.0"])
    assert plain.federation.weighting == "examples"  # weights are quantised as count / 1000
    with pytest.raises(UpdateError, match="raise privacy.secagg_clip_range"):
        secure.client_update(upload, received, plain, 1000.0)  # 4 x 1000/1000 leaves [-2, 2]
    assert secure.client_update(upload, received, plain, 100.0)["a"][2] == 4.0  # 0.4 fits
    with pytest.raises(UpdateError, match="raise privacy.secagg_max_weight"):
        secure.client_update(upload, received, plain, 1001.0)


def _check_sums(cfg: RunConfig, masked: Masked, handed: list[Any]) -> None:
    """Each round's aggregate is the weighted mean of what its clients masked, to quantisation."""
    assert handed
    for t, mean, clients in handed:
        ups = [masked[(t, c)] for c in clients]
        names = sorted(ups[0][0])
        ratios = [w / secure.max_weight(cfg) for _, w in ups]
        bound = secure.quantization_step(cfg) * len(clients) / sum(ratios)
        for i, name in enumerate(names):
            plain = sum(r * u[name] for r, (u, _) in zip(ratios, ups, strict=True)) / sum(ratios)
            err = float(np.abs(mean[i] - plain).max())
            assert 0 < err <= bound, (t, name, err, bound)


def test_secure_sum_equals_plain_sum_and_server_sees_only_masked_vectors(
    tmp_path: Path, masked: Masked, handed: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = _secure(["algorithm=fedit", "federation.rounds=2"])  # example-count weights
    rule_inputs: list[list[Any]] = []
    states: dict[str, list[Any]] = {"flower": [], "inproc": []}  # (state in, state out) a round

    def spy_on(module: Any, key: str) -> None:
        real_update = module.server_update

        def spy(algorithm: Any, state: Any, uploads: Any, **kw: Any) -> Any:
            if key == "flower":
                rule_inputs.append(list(uploads))
            out = real_update(algorithm, state, uploads, **kw)
            states[key].append((state.shared, out.shared))
            return out

        monkeypatch.setattr(module, "server_update", spy)

    spy_on(server_app, "flower")
    spy_on(simulation, "inproc")
    grid = SecureGrid(3)
    records = _flower(cfg, tmp_path / "flower", grid)
    assert [r["secagg"]["summed"] for r in records] == [["0", "1", "2"]] * 2
    assert [t for t, _, _ in handed] == [1, 2]
    _check_sums(cfg, masked, handed)
    # the server code never held an individual update: no tensors in any reply, and each
    # masked vector is uniform on [0, 2^32), far from its quantised values in [0, 2^22)
    stages = [kind for kind, _ in grid.pulled]
    for stage in (Stage.SETUP, Stage.SHARE_KEYS, Stage.COLLECT_MASKED_VECTORS, Stage.UNMASK):
        assert stages.count(stage) == 6, stage  # 3 clients x 2 rounds, four exchanges a round
    for kind, reply in grid.pulled:
        assert all(len(r) == 0 for r in reply.content.array_records.values()), kind
        if kind == Stage.COLLECT_MASKED_VECTORS:
            rec = reply.content.config_records[RECORD_KEY_CONFIGS]
            arrays = [bytes_to_ndarray(b) for b in rec[Key.MASKED_PARAMETERS]]  # type: ignore[union-attr]
            values = np.concatenate([a.ravel() for a in arrays[1:]])
            assert values.max() > 2**31 and (values > 2**23).mean() > 0.99
    # the server rule was handed the release only: every upload it saw holds the same tensors,
    # the received ones plus the unmasked mean (no client's own update)
    assert len(rule_inputs) == 2
    for (_, mean, _), uploads in zip(handed, rule_inputs, strict=True):
        assert len(uploads) == 3 and all(u.tensors is uploads[0].tensors for u in uploads)
        names = sorted(uploads[0].tensors)
        got = uploads[0].tensors[names[0]].double() - uploads[0].received[names[0]].double()
        assert torch.allclose(got, torch.from_numpy(mean[0]), atol=1e-7)
    assert all(r["bytes_up"] > 0 and r["secagg"]["bytes_down_protocol"] > 0 for r in records)
    # round 1 starts both runs from the same global, so the clients' updates are the same bits:
    # the new globals differ by the quantisation bound of the mean alone (plus float32 storage)
    run(_in_the_clear(cfg), tmp_path / "inproc")
    (start_f, one_f), (start_i, one_i) = states["flower"][0], states["inproc"][0]
    assert start_f.keys() == start_i.keys() == one_f.keys()
    assert all(torch.equal(start_f[k], start_i[k]) for k in start_f)
    n = len(handed[0][2])
    sizes = [w for (t, _), (_, w) in masked.items() if t == 1]
    bound = secure.quantization_step(cfg) * n / (sum(sizes) / secure.max_weight(cfg))
    for k in one_f:
        err = float((one_f[k].double() - one_i[k].double()).abs().max())
        storage = float(torch.finfo(torch.float32).eps * one_i[k].abs().max())
        assert 0 < err <= bound + storage, (k, err, bound)
    # round 2 trains from globals that differ by that much, and AdamW's normalised steps can
    # turn a tiny difference in a near-zero gradient into a step of the learning rate's size:
    # the end stays near the in-process run, measured against how far training moved it
    a = load_tensors(tmp_path / "inproc" / "global.safetensors")
    b = load_tensors(tmp_path / "flower" / "global.safetensors")
    assert a.keys() == b.keys() == start_i.keys()
    moved = max(float((a[k] - start_i[k]).abs().max()) for k in a)
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 0.1 * moved
    assert any(not torch.equal(a[k], b[k]) for k in a)  # quantised: not the clear bits


def test_secure_aggregation_with_dp_equals_in_process_dp(tmp_path: Path, handed: list[Any]) -> None:
    """Clipped on the clients, summed by SecAgg+, noised by the server: in-process's release."""
    dp = ["privacy.mode=client", "privacy.clip_norm=0.05", "privacy.noise_multiplier=0.5"]
    dp += ["privacy.noise_seed=7", "federation.weighting=uniform", "federation.rounds=1"]
    cfg = _secure(dp)
    records = _flower(cfg, tmp_path / "flower", SecureGrid(3))
    run(_in_the_clear(cfg), tmp_path / "inproc")
    a = load_tensors(tmp_path / "inproc" / "global.safetensors")
    b = load_tensors(tmp_path / "flower" / "global.safetensors")
    # each client's clipped update is quantised with step 2 S / 2^22; the sum of 3 is divided
    # by q N = 3; float32 storage adds its own rounding
    step = secure.quantization_step(cfg) * 3 / expected_participants(cfg)
    for k in a:
        torch.testing.assert_close(b[k], a[k], atol=step + 1e-7, rtol=1e-6, msg=k)
    assert any(not torch.equal(a[k], b[k]) for k in a)
    inproc = [json.loads(x) for x in (tmp_path / "inproc" / "metrics.jsonl").open()]
    assert records[0]["privacy"] == inproc[0]["privacy"]  # the same accountant, same epsilon
    assert records[0]["secagg"]["clip_range"] == 0.05


def _drop(stage: str, nodes: set[int]) -> Tamper:
    def tamper(kind: str, t: int, node: int, reply: Message | None) -> Message | None:
        return None if kind == stage and t == 1 and node in nodes else reply

    return tamper


def test_one_dropout_above_the_threshold_still_completes_the_round(
    tmp_path: Path, masked: Masked, handed: list[Any]
) -> None:
    """Client 1 sends its key shares, then never its masked vector: its masks are rebuilt."""
    cfg = _secure(["data.num_clients=4", "federation.rounds=1"])
    grid = SecureGrid(4, _drop(Stage.COLLECT_MASKED_VECTORS, {101}))
    records = _flower(cfg, tmp_path / "flower", grid, timeout=2.0)
    assert records[0]["secagg"]["summed"] == ["0", "2", "3"] and not records[0]["skipped"]
    assert "no reply" in records[0]["rejected"]["1"]
    assert (1, "1") in masked  # it did train and mask; the sum is of the other three alone
    _check_sums(cfg, masked, handed)


def test_too_many_dropouts_halt_the_round_and_leave_the_state(tmp_path: Path) -> None:
    cfg = _secure(["data.num_clients=4", "federation.rounds=1"])
    grid = SecureGrid(4, _drop(Stage.COLLECT_MASKED_VECTORS, {101, 102, 103}))
    records = _flower(cfg, tmp_path / "flower", grid, timeout=2.0)
    assert records[0]["skipped"] and records[0]["secagg"]["summed"] == []
    assert "halted" in records[0]["rejected"]["0"]


def test_a_malformed_masked_vector_counts_as_a_dropout(
    tmp_path: Path, masked: Masked, handed: list[Any]
) -> None:
    def truncate(kind: str, t: int, node: int, reply: Message | None) -> Message | None:
        if reply is not None and kind == Stage.COLLECT_MASKED_VECTORS and node == 102:
            rec = reply.content.config_records[RECORD_KEY_CONFIGS]
            rec[Key.MASKED_PARAMETERS] = rec[Key.MASKED_PARAMETERS][:-1]  # type: ignore[index]
        return reply

    cfg = _secure(["data.num_clients=4", "federation.rounds=1"])
    records = _flower(cfg, tmp_path / "flower", SecureGrid(4, truncate))
    assert records[0]["secagg"]["summed"] == ["0", "1", "3"]
    assert "masked vector has" in records[0]["rejected"]["2"]
    _check_sums(cfg, masked, handed)


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        (["algorithm=flora"], "stacks every client's A and B"),
        (["algorithm=local-only"], "it shares nothing"),
        (["federation.max_update_norm=1.0"], "cannot then check federation.max_update_norm"),
        (["privacy.secagg_threshold=0"], "must be in (0, 1]"),
        (["privacy.secagg_shares=1.5"], "must be in (0, 1]"),
        (["privacy.secagg_max_weight=0.5"], "must be >= 1"),
    ],
)
def test_secure_aggregation_refuses_what_it_cannot_do(overrides: list[str], reason: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(reason)):
        _secure(overrides)


def test_in_process_runs_refuse_secure_aggregation(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="runs on Flower only"):
        run(_secure([]), tmp_path / "run")
    assert not (tmp_path / "run").exists()  # nothing written
