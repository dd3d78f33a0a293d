"""The ServerApp's message waves: send and collect replies fast, and find which node is which.

Both are plain request/reply over the grid; the round loop (:mod:`fedsa.flower.server_app`) and
the secure-aggregation round (:mod:`fedsa.flower.secagg`) use them.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from flwr.app import Message, RecordDict
from flwr.serverapp import Grid

from fedsa.core.errors import ConfigError
from fedsa.flower.grid import POLL_S, FastGrid

#: Longest wait for one wave of client-id queries before nodes that joined since are asked too.
QUERY_WAVE_S = 20.0


def exchange(
    grid: Grid,
    messages: list[Message],
    timeout: float,
    done: Callable[[dict[int, Message]], bool] | None = None,
    poll_s: float = POLL_S,
) -> dict[int, Message]:
    """Send messages and collect replies (keyed by sender node) until all are in or ``timeout``.

    Pulls every ``poll_s`` seconds (:class:`~fedsa.flower.grid.FastGrid`) rather than
    ``Grid.send_and_receive``'s fixed 3 s, which alone would add up to 3 s to every message
    wave; ``done`` may end the wait early.
    """
    return FastGrid.over(grid, poll_s).collect(messages, timeout, done)


def discover(grid: Grid, client_ids: list[str], timeout: float) -> dict[str, int]:
    """Map each client id to the node that serves it, asking nodes as they connect.

    A node that does not answer (a stale entry of a stopped SuperNode) does not hold up the run:
    the wait ends as soon as every client id has a node.

    Raises:
        ConfigError: two nodes claim one client id, or not every client is there in time.
    """
    deadline = time.monotonic() + timeout
    found: dict[str, int] = {}
    answered: set[int] = set()  # nodes that replied; silent ones are asked again

    def claim(replies: dict[int, Message]) -> bool:
        for node, reply in replies.items():
            if reply.has_error() or "client" not in reply.content.config_records:
                continue
            cid = str(reply.content.config_records["client"]["client-id"])
            if cid in found and found[cid] != node:
                raise ConfigError(
                    f"two SuperNodes claim client-id {cid}: give each node its own client-id"
                )
            if cid in client_ids:
                found[cid] = node
        return len(found) == len(client_ids)

    while not claim({}):
        new = [n for n in grid.get_node_ids() if n not in answered]
        left = min(deadline - time.monotonic(), QUERY_WAVE_S)
        if new and left > 0:
            replies = exchange(grid, [Message(RecordDict(), n, "query") for n in new], left, claim)
            answered.update(replies)
        if len(found) < len(client_ids) and time.monotonic() > deadline:
            missing = sorted(set(client_ids) - set(found))
            raise ConfigError(
                f"clients {missing} did not connect within {timeout:.0f}s: start their "
                "SuperNodes (--node-config client-id=<k>) or raise node-timeout"
            )
        if len(found) < len(client_ids):
            time.sleep(POLL_S)
    return found
