"""How a round's train replies reach the server rule: in the clear, or through SecAgg+.

:func:`gather_plain` screens each client's upload (:func:`fedsa.flower.screen.screen_reply`)
and hands the rule the accepted uploads with their weights, as the in-process engine does.
:func:`gather_secure` runs the round's uploads through SecAgg+ (:mod:`fedsa.flower.secagg`):
no individual upload ever reaches the server, so it screens what it can (each reply's metrics
and the masked vector's shapes) and hands the rule the release rebuilt from the sum
(:func:`fedsa.privacy.secure.released_uploads`). The round loop picks one of the two per run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flwr.app import Message
from flwr.serverapp import Grid

from fedsa.algorithms.hooks import Upload
from fedsa.config.schema import RunConfig
from fedsa.core.params import Tensors
from fedsa.engine.server_step import upload_weight
from fedsa.flower.exchange import exchange
from fedsa.flower.grid import FastGrid
from fedsa.flower.screen import Accepted, screen_reply
from fedsa.flower.secagg import secure_round
from fedsa.privacy.secure import clip_range, max_weight, released_uploads

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RoundIO:
    """What one round sends, and what each participant's upload must look like."""

    t: int
    cfg: RunConfig
    nodes: dict[str, int]
    train: dict[str, Message]
    evals: dict[str, Message]
    expected: dict[str, Tensors]
    received: dict[str, Tensors]
    timeout: float
    poll_s: float


@dataclass
class Gathered:
    """What came back: every addressed client's reply, and what the server rule gets."""

    replies: dict[str, Message | None]
    accepted: dict[str, Accepted]
    rejected: dict[str, str]
    uploads: list[Upload]
    released: bool = False
    """The uploads already are the round's (private) release: DP is not applied again."""
    extra_down: dict[str, int] = field(default_factory=dict)
    """Bytes each client was sent beyond its train message's tensors (SecAgg+'s records)."""
    secagg: dict[str, Any] | None = None
    """The round's SecAgg+ facts for ``metrics.jsonl`` (None in the clear)."""


Gather = Callable[[Grid, RoundIO], Gathered]


def gather_plain(grid: Grid, r: RoundIO) -> Gathered:
    """Send every message, screen each train reply, weight the accepted uploads."""
    msgs = [*r.train.values(), *r.evals.values()]
    got = exchange(grid, msgs, r.timeout, poll_s=r.poll_s)
    replies = {c: got.get(r.nodes[c]) for c in [*r.train, *r.evals]}
    accepted: dict[str, Accepted] = {}
    rejected: dict[str, str] = {}
    for c in r.train:
        verdict = screen_reply(replies[c], r.expected[c], c, r.cfg.federation.max_update_norm)
        if isinstance(verdict, str):
            log.warning("round %d: rejected client %s: %s", r.t, c, verdict)
            rejected[c] = verdict
        else:
            accepted[c] = verdict
    uploads = [
        Upload(c, a.upload, upload_weight(r.cfg, a.num_examples), r.received[c])
        for c, a in accepted.items()
    ]
    return Gathered(replies, accepted, rejected, uploads)


def gather_secure(grid: Grid, r: RoundIO) -> Gathered:
    """Evaluate the others in the clear while the participants' uploads go through SecAgg+."""
    fast = FastGrid.over(grid, r.poll_s)
    ids = set(fast.push_messages(list(r.evals.values()))) if r.evals else set()
    names = sorted(next(iter(r.expected.values()))) if r.expected else []
    first = next(iter(r.received.values())) if r.received else {}
    shapes = [tuple(first[n].shape) for n in names]
    contents = {c: m.content for c, m in r.train.items()}
    out = secure_round(fast, contents, r.nodes, shapes, r.cfg, r.t, r.timeout, r.poll_s)
    got = fast.wait(ids, r.timeout) if ids else {}
    replies: dict[str, Message | None] = {c: out.replies.get(c) for c in r.train}
    replies.update({c: got.get(r.nodes[c]) for c in r.evals})
    accepted: dict[str, Accepted] = {}
    for c in out.summed:
        train = out.replies[c].content.metric_records["train"]
        n, loss = int(train["num-examples"]), float(train["train-loss"])  # type: ignore[arg-type]
        accepted[c] = Accepted({}, n, loss, out.bytes_up.get(c, 0), out.masked_bytes.get(c, 0))
    rejected = {c: why for c, why in out.rejected.items() if c not in accepted}
    for c, why in rejected.items():
        log.warning("round %d: client %s not in the secure sum: %s", r.t, c, why)
    uploads: list[Upload] = []
    if out.mean is not None and accepted:
        uploads = released_uploads(out.mean, names, list(accepted), first, r.cfg, r.t)
    secagg = {
        "summed": list(accepted),
        "clip_range": clip_range(r.cfg),
        "max_weight": max_weight(r.cfg),
        "bytes_up_protocol": sum(out.bytes_up.values()),
        "bytes_down_protocol": sum(out.bytes_down.values()),
    }
    return Gathered(replies, accepted, rejected, uploads, True, out.bytes_down, secagg)
