"""One round's uploads through Flower's SecAgg+ workflow: the server only ever holds their sum.

flwr 1.42 has SecAgg+ only in its legacy stack (``SecAggPlusWorkflow`` over a ``LegacyContext``
and a ``Strategy``; ``secaggplus_mod`` on the clients). We run that workflow unchanged for one
round of our own loop, in its four exchanges (setup: public keys; share keys: encrypted key
shares; collect masked vectors: our train message, the masked update back; unmask: the shares
that remove the masks, and those of clients that dropped out after sharing their keys). Three
thin pieces adapt it:

- :class:`_Workflow` sends our own train message (shared tensors, config) in the third
  exchange instead of a legacy ``FitIns``;
- :class:`_Sampled`, the legacy strategy, samples the round's participants and keeps the
  unmasked aggregate it is handed (the weighted mean ``sum_k w_k x_k / sum_k w_k``), and which
  clients it holds;
- :class:`_Watch`, the grid the workflow talks through, keeps every reply's metrics and
  byte count and drops malformed replies (a missing key, a masked vector of the wrong shapes)
  before the workflow sees them, so a bad client counts as one that dropped out instead of
  crashing the server.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.common import FitIns, FitRes, Parameters, bytes_to_ndarray, parameters_to_ndarrays
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key, Stage
from flwr.server.client_manager import ClientManager
from flwr.server.client_proxy import ClientProxy
from flwr.server.compat.grid_client_proxy import GridClientProxy
from flwr.server.compat.legacy_context import LegacyContext
from flwr.server.strategy import Strategy
from flwr.server.workflow import SecAggPlusWorkflow
from flwr.server.workflow.secure_aggregation.secaggplus_workflow import WorkflowState
from flwr.serverapp import Grid

from fedsa.config.schema import RunConfig
from fedsa.flower.grid import FastGrid
from fedsa.flower.screen import train_problem
from fedsa.privacy.secure import MODULUS_RANGE, QUANTIZATION_RANGE, clip_range, max_weight

log = logging.getLogger(__name__)


@dataclass
class SecureOutcome:
    """What one secure round left the server with."""

    mean: list[np.ndarray] | None
    """SecAgg+'s unmasked weighted mean of the summed updates (None: the protocol halted)."""
    summed: list[str] = field(default_factory=list)
    """The clients whose updates the mean holds."""
    replies: dict[str, Message] = field(default_factory=dict)
    """Each client's reply to the masked-vector exchange (its metrics; no tensors)."""
    rejected: dict[str, str] = field(default_factory=dict)
    """Why a participant's update is not in the sum."""
    bytes_up: dict[str, int] = field(default_factory=dict)
    """Bytes each client sent over the four exchanges (keys, shares, masked vector)."""
    bytes_down: dict[str, int] = field(default_factory=dict)
    """Bytes of the protocol's records each client was sent (the train message's tensors
    apart, which the round record counts as in the clear)."""
    masked_bytes: dict[str, int] = field(default_factory=dict)
    """Bytes of each client's masked vector alone."""


def protocol_bytes(content: RecordDict, tensors: bool) -> int:
    """Bytes of a message's SecAgg+ record, plus its tensors' if ``tensors``."""
    n = sum(int(r.count_bytes()) for r in content.array_records.values()) if tensors else 0
    rec = content.config_records.get(RECORD_KEY_CONFIGS)
    return n + (_config_bytes(rec) if rec is not None else 0)


def _size(value: object) -> int:
    if isinstance(value, bytes):
        return len(value)
    if isinstance(value, str):
        return len(value.encode())
    if isinstance(value, list):
        return sum(_size(v) for v in value)
    return 8  # a number or a bool, as Flower counts them


def _config_bytes(rec: ConfigRecord) -> int:
    """``ConfigRecord.count_bytes`` that also takes empty lists (flwr 1.42's fails on them)."""
    return sum(len(k) + _size(v) for k, v in rec.items())


def _stage(msg: Message) -> str:
    return str(msg.content.config_records[RECORD_KEY_CONFIGS][Key.STAGE])


def masked_vectors(rec: ConfigRecord) -> list[bytes] | None:
    """The serialised masked arrays of a reply's SecAgg+ record (None if there are none)."""
    vectors = rec.get(Key.MASKED_PARAMETERS)
    if not isinstance(vectors, list) or not all(isinstance(b, bytes) for b in vectors):
        return None
    return [b for b in vectors if isinstance(b, bytes)]


def _masked_problem(rec: ConfigRecord, shapes: Sequence[tuple[int, ...]]) -> str:
    vectors = masked_vectors(rec)
    if vectors is None:
        return "no masked vector"
    if len(vectors) != 1 + len(shapes):
        return f"masked vector has {len(vectors)} arrays, expected {1 + len(shapes)}"
    for i, (raw, shape) in enumerate(zip(vectors, [(1,), *shapes], strict=True)):
        try:
            arr = bytes_to_ndarray(raw)
        except ValueError as exc:
            return f"masked array {i} cannot be decoded: {exc}"
        if arr.shape != tuple(shape) or arr.dtype.kind not in "iu":
            return f"masked array {i} is {arr.dtype}{list(arr.shape)}, expected int{list(shape)}"
    return ""


#: The two fields each reply of the other exchanges must hold, and their types.
_FIELDS: dict[str, tuple[tuple[str, type], tuple[str, type]]] = {
    Stage.SETUP: ((Key.PUBLIC_KEY_1, bytes), (Key.PUBLIC_KEY_2, bytes)),
    Stage.SHARE_KEYS: ((Key.DESTINATION_LIST, list), (Key.CIPHERTEXT_LIST, list)),
    Stage.UNMASK: ((Key.NODE_ID_LIST, list), (Key.SHARE_LIST, list)),
}


def reply_problem(stage: str, reply: Message, shapes: Sequence[tuple[int, ...]]) -> str:
    """Why a reply to a SecAgg+ exchange cannot be used ('' when it can)."""
    if reply.has_error():
        return f"client error {reply.error.code}: {(reply.error.reason or '').strip()[-300:]}"
    rec = reply.content.config_records.get(RECORD_KEY_CONFIGS)
    if rec is None:
        return "reply lacks the SecAgg+ record"
    if stage in _FIELDS:
        (k1, t1), (k2, t2) = _FIELDS[stage]
        first, second = rec.get(k1), rec.get(k2)
        if not isinstance(first, t1) or not isinstance(second, t2):
            return f"reply lacks {k1!r} or {k2!r}"
        if isinstance(first, list) and isinstance(second, list) and len(first) != len(second):
            return f"{k1!r} and {k2!r} differ in length"
    if stage != Stage.COLLECT_MASKED_VECTORS:
        return ""
    why = train_problem(reply.content.metric_records.get("train"))
    if why:
        return why
    if "fitres.num_examples" not in reply.content.metric_records:
        return "reply lacks fitres.num_examples"
    return _masked_problem(rec, shapes)


class _Watch(FastGrid):
    """The workflow's grid: fast polling, every message counted, malformed replies dropped."""

    def __init__(self, inner: Grid, poll_s: float, shapes: Sequence[tuple[int, ...]]) -> None:
        super().__init__(inner, poll_s)
        self.shapes = list(shapes)
        self.up: dict[int, int] = {}
        self.down: dict[int, int] = {}
        self.masked: dict[int, int] = {}
        self.collected: dict[int, Message] = {}
        self.rejected: dict[int, str] = {}

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        """One exchange of the protocol: the good replies only."""
        messages = list(messages)
        for m in messages:
            node = m.metadata.dst_node_id
            self.down[node] = self.down.get(node, 0) + protocol_bytes(m.content, False)
        stage = _stage(messages[0]) if messages else ""
        good = []
        for node, reply in self.collect(messages, timeout).items():
            self.up[node] = self.up.get(node, 0) + protocol_bytes(reply.content, True)
            why = reply_problem(stage, reply, self.shapes)
            if why:
                self.rejected.setdefault(node, f"secure aggregation, {stage}: {why}")
                continue
            if stage == Stage.COLLECT_MASKED_VECTORS:
                rec = reply.content.config_records[RECORD_KEY_CONFIGS]
                self.masked[node] = sum(map(len, masked_vectors(rec) or []))
                self.collected[node] = reply
            good.append(reply)
        return good


class _Sampled(Strategy):
    """The legacy strategy: this round's participants in, the unmasked aggregate out."""

    def __init__(self, proxies: list[ClientProxy]) -> None:
        self.proxies = proxies
        self.mean: list[np.ndarray] | None = None
        self.summed: list[int] = []

    def initialize_parameters(self, client_manager: ClientManager) -> Parameters | None:  # noqa: D102
        return None

    def configure_fit(  # noqa: D102 - the round's participants, with placeholder FitIns
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, FitIns]]:
        return [(p, FitIns(parameters, {})) for p in self.proxies]

    def aggregate_fit(  # noqa: D102 - every result carries the same unmasked aggregate
        self,
        server_round: int,
        results: list[tuple[ClientProxy, FitRes]],
        failures: list[tuple[ClientProxy, FitRes] | BaseException],
    ) -> tuple[Parameters | None, dict[str, Any]]:
        self.summed = [proxy.node_id for proxy, _ in results]
        if results:
            self.mean = parameters_to_ndarrays(results[0][1].parameters)
        return None, {}

    def configure_evaluate(self, *args: Any) -> list[Any]:  # noqa: D102
        return []

    def aggregate_evaluate(self, *args: Any) -> tuple[None, dict[str, Any]]:  # noqa: D102
        return None, {}

    def evaluate(self, *args: Any) -> None:  # noqa: D102
        return None


class _Workflow(SecAggPlusWorkflow):
    """SecAgg+ whose masked-vector exchange carries our train messages' content."""

    def __init__(self, contents: Mapping[int, RecordDict], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.contents = contents

    def setup_stage(self, grid: Grid, context: LegacyContext, state: WorkflowState) -> bool:
        """Flower's setup, then our message content for each sampled node."""
        ok = bool(super().setup_stage(grid, context, state))
        state.nid_to_fitins = {nid: self.contents[nid] for nid in state.nid_to_fitins}
        return ok


def secure_round(
    grid: Grid,
    contents: Mapping[str, RecordDict],
    nodes: Mapping[str, int],
    shapes: Sequence[tuple[int, ...]],
    cfg: RunConfig,
    round_idx: int,
    timeout: float,
    poll_s: float,
) -> SecureOutcome:
    """Run SecAgg+ over ``contents`` (client -> train message content) for one round."""
    who = {nodes[c]: c for c in contents}
    if len(contents) < 2:
        why = f"SecAgg+ needs at least 2 participants, the round sampled {len(contents)}"
        return SecureOutcome(None, rejected=dict.fromkeys(contents, why))
    watch = _Watch(grid, poll_s, shapes)
    strategy = _Sampled([GridClientProxy(n, watch, 0) for n in who])
    context = LegacyContext(Context(0, 0, {}, RecordDict(), {}), strategy=strategy)
    context.state.config_records["config"] = ConfigRecord({"current_round": round_idx})
    context.state.array_records["parameters"] = ArrayRecord()
    workflow = _Workflow(
        {nodes[c]: content for c, content in contents.items()},
        num_shares=float(cfg.privacy.secagg_shares),
        reconstruction_threshold=float(cfg.privacy.secagg_threshold),
        max_weight=max_weight(cfg),
        clipping_range=clip_range(cfg),
        quantization_range=QUANTIZATION_RANGE,
        modulus_range=MODULUS_RANGE,
        timeout=timeout,
    )
    workflow(watch, context)
    out = SecureOutcome(
        strategy.mean,
        summed=sorted((who[n] for n in strategy.summed), key=int),
        replies={who[n]: r for n, r in watch.collected.items()},
        rejected={who[n]: why for n, why in watch.rejected.items()},
        bytes_up={who[n]: b for n, b in watch.up.items() if n in who},
        bytes_down={who[n]: b for n, b in watch.down.items() if n in who},
        masked_bytes={who[n]: b for n, b in watch.masked.items()},
    )
    if out.mean is None:
        why = "secure aggregation halted: too few clients kept up with the protocol"
        out.rejected.update({c: why for c in contents if c not in out.rejected})
        out.summed = []
    silent = "no reply to a secure aggregation exchange within the round timeout"
    for c in contents:
        if c not in out.summed and c not in out.rejected:
            out.rejected[c] = silent
    return out
