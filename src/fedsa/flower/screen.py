"""Server-side screening of train replies: one function that accepts or rejects each reply.

Everything a remote client sends is checked before it can reach the average: the reply must have
arrived, carry no error, hold exactly the expected shared tensors (names, shapes, dtypes, finite
values, optional norm bound: the in-process engine's own
:func:`fedsa.algorithms.aggregate.screen_updates`)
and a positive finite example count. A bad reply is dropped with a reason that the round's
metrics record keeps (``rejected``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from flwr.app import Message, MetricRecord

from fedsa.algorithms.aggregate import screen_updates
from fedsa.core.params import Tensors, nbytes
from fedsa.flower.codec import from_record, record_bytes


@dataclass(frozen=True)
class Accepted:
    """A train reply that passed screening."""

    upload: Tensors
    num_examples: int
    train_loss: float
    record_bytes: int
    """Bytes of the received ArrayRecord as Flower counts them (what crossed the network)."""
    payload_bytes: int
    """Bytes of tensor data alone (``numel x element size``, as the in-process engine counts)."""


def train_problem(train: MetricRecord | None) -> str:
    """Why a train reply's metrics are unusable: a positive example count, a finite loss."""
    n = None if train is None else train.get("num-examples")
    loss = None if train is None else train.get("train-loss")
    if not isinstance(n, int) or n <= 0:
        return f"num-examples must be a positive integer, got {n!r}"
    if not isinstance(loss, float | int) or not math.isfinite(loss):
        return f"train-loss must be a finite number, got {loss!r}"
    return ""


def screen_reply(
    reply: Message | None, reference: Tensors, client: str, max_norm: float = 0.0
) -> Accepted | str:
    """Parse and check one client's train reply; the reason as a string if it is rejected.

    Args:
        reply: the reply message, None when none arrived within the round timeout.
        reference: the global shared tensors the client was sent (expected names/shapes/dtypes).
        client: the client id, for the reason text.
        max_norm: ``federation.max_update_norm`` (0: no bound).
    """
    if reply is None:
        return "no reply within the round timeout"
    if reply.has_error():
        return f"client error {reply.error.code}: {(reply.error.reason or '').strip()[-300:]}"
    content = reply.content
    if "upload" not in content.array_records or "train" not in content.metric_records:
        return "reply lacks the 'upload' ArrayRecord or the 'train' MetricRecord"
    try:
        upload = from_record(content.array_records["upload"])
    except (TypeError, ValueError) as exc:
        return f"upload cannot be decoded: {exc}"
    train = content.metric_records["train"]
    why = train_problem(train)
    if why:
        return why
    n, loss = int(train["num-examples"]), float(train["train-loss"])  # type: ignore[arg-type]
    _, rejected = screen_updates({client: upload}, reference, max_norm=max_norm)
    if rejected:
        return rejected[client]
    return Accepted(
        upload=upload,
        num_examples=n,
        train_loss=loss,
        record_bytes=record_bytes(content.array_records["upload"]),
        payload_bytes=nbytes(upload),
    )
