"""The Flower ClientApp: one site's side of every algorithm, by the core's own client step.

Each message is handled in a fresh process (Flower's default isolation), so the handler rebuilds
the run's pieces from the config the server sent (``fedsa.engine.prepare.prepare``: the same
data, split and seeded model as the in-process engine), picks this node's client by the stable
``client-id``
from its node config, and calls :func:`fedsa.engine.client.client_round` unchanged. Only the shared
tensors go back; the private ones stay in ``context.state`` and the node's ``state-dir``.

Node config keys (``flower-supernode --node-config 'client-id=0 state-dir="/var/fedsa"'``):

- ``client-id``: this site's client id in the config (``0`` .. ``num_clients-1``); required.
- ``state-dir``: folder for durable private state (without it, state lasts one run only).
- ``data-dir``: this site's data folder (overrides ``data.data_dir`` of the server's config).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from fedsa.core.errors import ConfigError

if TYPE_CHECKING:
    from fedsa.algorithms.hooks import ClientStart
    from fedsa.engine.prepare import Federation

# torch, transformers and peft are imported inside the handlers that need them: every message
# runs in a fresh process, and the client-id query should not pay seconds of imports.

app = ClientApp()


def node_client_id(context: Context) -> str:
    """The stable client id of this node (``client-id``, or Flower's usual ``partition-id``)."""
    for key in ("client-id", "partition-id"):
        if key in context.node_config:
            return str(context.node_config[key])
    raise ConfigError(
        "SuperNode has no client id: start it with --node-config 'client-id=<k>' (k in 0..N-1)"
    )


def process_age() -> float:
    """Seconds since this process started (Linux ``/proc``; 0 elsewhere).

    Every message runs in a new process, so this is what Flower's process start, its app loading
    and our imports cost before the handler ran.
    """
    import os

    try:
        start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0
    return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))


def _state_dir(context: Context) -> Path | None:
    value = context.node_config.get("state-dir")
    return Path(str(value)) if value else None


class _Site:
    """What one message handler needs: the run's pieces and this node's client."""

    def __init__(self, msg: Message, context: Context) -> None:
        from fedsa.engine.prepare import prepare
        from fedsa.flower.codec import config_from_record, experiment_key, from_record
        from fedsa.flower.state import load_private

        self.settings = msg.content.config_records["config"]
        sent = config_from_record(self.settings)
        self.experiment = experiment_key(sent)
        cfg = sent
        data_dir = context.node_config.get("data-dir")
        if data_dir:
            cfg = dataclasses.replace(
                sent, data=dataclasses.replace(sent.data, data_dir=str(data_dir))
            )
        self.client = node_client_id(context)
        self.fed: Federation = prepare(cfg)
        if self.client not in self.fed.client_ids:
            raise ConfigError(
                f"node client-id {self.client!r} is not a client of this config "
                f"(0..{len(self.fed.client_ids) - 1}): fix --node-config client-id"
            )
        self.k = self.fed.client_ids.index(self.client)
        self.round = int(self.settings["round"])  # type: ignore[arg-type]
        self.state_dir = _state_dir(context)
        records = msg.content.array_records
        self.shared = from_record(records["shared"])
        self.base = from_record(records["base"]) if "base" in records else {}
        self.private = load_private(
            context, self.state_dir, self.experiment, self.client, self.fed.init_private
        )

    def start(self) -> ClientStart:
        """What this client starts from: the received tensors and its own private ones."""
        from fedsa.algorithms.hooks import ClientStart

        fed = self.fed
        return ClientStart(fed.frozen, self.shared, self.private, fed.init_private, self.base)

    def evaluate(self) -> MetricRecord:
        """Personalised metrics: received global shared + own private, on own eval shard."""
        from fedsa.engine.simulation import evaluate_client

        fed = self.fed
        fed.algorithm.install(fed.model, self.start())
        metrics: dict[str, Any] = dict(evaluate_client(fed, self.k))
        prior = fed.scorer.prior(fed.client_train[self.k], fed.client_eval[self.k])
        if prior is not None:
            metrics["majority"] = prior
        return MetricRecord(metrics)

    def client_record(self) -> ConfigRecord:
        return ConfigRecord({"client-id": self.client})


def _timing(age: float, start: float, ready: float) -> MetricRecord:
    """Where a message's time went on the client: process start, ``prepare``, the work itself."""
    return MetricRecord(
        {"startup-s": age, "prepare-s": ready - start, "work-s": time.perf_counter() - ready}
    )


@app.query()
def query(msg: Message, context: Context) -> Message:
    """Tell the server which client this node is (cheap: loads no model or data)."""
    content = RecordDict({"client": ConfigRecord({"client-id": node_client_id(context)})})
    return Message(content=content, reply_to=msg)


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Local training by the core's client step; reply with the shared tensors only.

    With ``eval-before`` set, the client first evaluates the received global tensors with its
    current private state, which is exactly the previous round's personalised evaluation: the
    server then needs no separate evaluate message for this client.
    """
    age, start = process_age(), time.perf_counter()
    from fedsa.engine.client import client_round, client_seed
    from fedsa.flower.codec import to_record
    from fedsa.flower.state import store_private

    site = _Site(msg, context)
    ready = time.perf_counter()
    fed = site.fed
    content = RecordDict({"client": site.client_record()})
    if bool(site.settings.get("eval-before", False)):
        content["eval"] = site.evaluate()
    result = client_round(
        fed.model,
        fed.layout,
        fed.algorithm,
        start=site.start(),
        data=fed.train,
        indices=fed.client_train[site.k],
        cfg=fed.cfg,
        round_idx=site.round,
        seed=client_seed(fed.cfg.seed, site.round, site.k),
        device=fed.device,
    )
    store_private(context, site.state_dir, site.experiment, site.client, result.private, site.round)
    content["upload"] = to_record(result.upload)
    content["train"] = MetricRecord(
        {"train-loss": result.train_loss, "num-examples": result.num_examples}
    )
    content["timing"] = _timing(age, start, ready)
    return Message(content=content, reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """Personalised evaluation of the received global tensors with this client's private ones."""
    age, start = process_age(), time.perf_counter()
    site = _Site(msg, context)
    ready = time.perf_counter()
    content = RecordDict({"client": site.client_record(), "eval": site.evaluate()})
    content["timing"] = _timing(age, start, ready)
    return Message(content=content, reply_to=msg)
