"""The Flower ClientApp: a thin relay to the site's resident worker, in-process as a fallback.

flwr 1.42 handles every message in a fresh process, so this module imports no torch,
transformers or peft: it hands the message's shared arrays and config to the node's resident
worker (:mod:`fedsa.flower.worker`) over the private channel (:mod:`fedsa.flower.channel`) and
turns the worker's reply into Flower's reply. When no worker is reachable (none started, still
loading, or it died mid-message) it logs that and does the same work in this process with the
same code (:class:`fedsa.flower.site.SiteRunner`), which pays the imports and the model load.
Either way only the shared tensors go back; the private ones stay in the node's ``state-dir``.

Node config keys (``flower-supernode --node-config 'client-id=0 state-dir="/var/fedsa"'``):

- ``client-id``: this site's client id in the config (``0`` .. ``num_clients-1``); required.
- ``state-dir``: folder for durable private state and the worker's channel (without it, state
  lasts one run only and no worker is used).
- ``data-dir``: this site's data folder (overrides ``data.data_dir`` of the server's config).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from fedsa.core.errors import ConfigError, FedsaError
from fedsa.flower.channel import ChannelError, Packet, as_mapping, call
from fedsa.flower.packing import pack_numpy, unpack_numpy
from fedsa.flower.secagg_client import fitres_content, secaggplus_when_asked

log = logging.getLogger(__name__)

app = ClientApp(mods=[secaggplus_when_asked])

#: Set by :mod:`fedsa.flower.superexec` in a ClientApp process it forked from its warm parent.
WARM_ENV = "FEDSA_WARM_CLIENTAPP"


class WorkerError(FedsaError):
    """The resident worker ran the request and it failed (a bad config, a data error)."""


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
    try:
        start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0
    return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))


def _request(msg: Message, context: Context, kind: str) -> Packet:
    node = as_mapping(context.node_config)
    node["client-id"] = node_client_id(context)
    header = {
        "kind": kind,
        "config": as_mapping(msg.content.config_records["config"]),
        "node": node,
        "run-id": int(context.run_id),
    }
    records = msg.content.array_records
    arrays = unpack_numpy(records["shared"])
    for form in ("base", "merge"):  # base-weight changes of a rule that makes any (prefixed)
        if form in records:
            arrays.update({f"{form}/{k}": v for k, v in unpack_numpy(records[form]).items()})
    return Packet(header, arrays)


def _in_process(request: Packet, context: Context) -> Packet:
    from fedsa.flower.site import SiteRunner  # torch, transformers, peft: seconds of imports

    return SiteRunner().handle(request, context)


def _work(msg: Message, context: Context, kind: str) -> Message:
    """Run one train/evaluate message on the worker, else in this process; build the reply."""
    age, start = process_age(), time.perf_counter()
    request = _request(msg, context, kind)
    state_dir = context.node_config.get("state-dir")
    reply: Packet | None = None
    if state_dir:
        try:
            reply = call(Path(str(state_dir)), request)
        except ChannelError as exc:
            log.warning("no resident worker (%s): doing this message in-process", exc)
    resident = reply is not None
    if reply is None:
        reply = _in_process(request, context)
    if "error" in reply.header:
        raise WorkerError(f"resident worker: {reply.header['error']}")
    content = RecordDict({"client": ConfigRecord({"client-id": str(reply.header["client"])})})
    secure = reply.header["records"].pop("secure", None)
    for name, values in reply.header["records"].items():
        content[name] = MetricRecord(values)
    if secure is not None:  # for secaggplus_mod to mask: the update in FitRes form, no names
        content = fitres_content(content, reply.arrays, float(secure["weight"]))
    elif reply.arrays:
        content["upload"] = pack_numpy(reply.arrays)
    timing = dict(reply.header["records"]["timing"])
    timing.update(
        {"startup-s": age, "handler-s": time.perf_counter() - start, "resident": float(resident)}
    )
    timing["warm"] = float(os.environ.get(WARM_ENV) == "1")
    content["timing"] = MetricRecord(timing)
    return Message(content=content, reply_to=msg)


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
    return _work(msg, context, "train")


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """Personalised evaluation of the received global tensors with this client's private ones."""
    return _work(msg, context, "evaluate")
