"""A ``Grid`` that polls for replies every 0.1 s instead of Flower's hard-coded 3 s.

flwr 1.42's ``HttpGrid.send_and_receive`` sleeps 3 s between pulls, so a wave of messages whose
replies arrive after 0.5 s still waits 3 s. :class:`FastGrid` wraps the ServerApp's grid and
re-implements ``send_and_receive`` with the grid's own public ``push_messages`` and
``pull_messages`` and a short sleep; everything else is delegated unchanged. Strategies and our
own round loop both get the fast path.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from flwr.app import Message, RecordDict
from flwr.serverapp import Grid

if TYPE_CHECKING:
    from flwr.supercore.run import Run

#: Seconds between pulls for replies.
POLL_S = 0.1


class FastGrid(Grid):
    """Delegates to ``inner``; ``send_and_receive`` polls every ``poll_s`` seconds."""

    def __init__(self, inner: Grid, poll_s: float = POLL_S) -> None:
        """Wrap ``inner`` (the grid Flower passed to the ServerApp's main)."""
        self.inner: Grid = inner.inner if isinstance(inner, FastGrid) else inner
        self.poll_s = poll_s

    @classmethod
    def over(cls, grid: Grid, poll_s: float) -> FastGrid:
        """``grid`` itself if it is a FastGrid (polling every ``poll_s``), else one around it."""
        fast = grid if isinstance(grid, FastGrid) else cls(grid, poll_s)
        fast.poll_s = poll_s
        return fast

    def set_run(self, run: Run) -> None:  # noqa: D102 - delegated
        self.inner.set_run(run)

    @property
    def run(self) -> Run:  # noqa: D102 - delegated
        return self.inner.run

    def create_message(  # noqa: D102 - delegated
        self,
        content: RecordDict,
        message_type: str,
        dst_node_id: int,
        group_id: str,
        ttl: float | None = None,
    ) -> Message:
        return self.inner.create_message(content, message_type, dst_node_id, group_id, ttl)

    def get_node_ids(self) -> Iterable[int]:  # noqa: D102 - delegated
        return self.inner.get_node_ids()

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:  # noqa: D102
        return self.inner.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:  # noqa: D102
        return self.inner.pull_messages(message_ids)

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        """Push ``messages`` and pull replies every ``poll_s`` until all are in or ``timeout``."""
        return list(self.collect(messages, timeout).values())

    def collect(
        self,
        messages: Iterable[Message],
        timeout: float | None,
        done: Callable[[dict[int, Message]], bool] | None = None,
    ) -> dict[int, Message]:
        """Like ``send_and_receive``, keyed by sender node; ``done`` may end the wait early."""
        return self.wait(set(self.inner.push_messages(messages)), timeout, done)

    def wait(
        self,
        ids: set[str],
        timeout: float | None,
        done: Callable[[dict[int, Message]], bool] | None = None,
    ) -> dict[int, Message]:
        """Replies to the pushed messages ``ids``, keyed by sender, until all are in or timeout."""
        ids = set(ids)
        deadline = None if timeout is None else time.monotonic() + timeout
        replies: dict[int, Message] = {}
        while ids and (deadline is None or time.monotonic() < deadline):
            for reply in self.inner.pull_messages(list(ids)):
                ids.discard(reply.metadata.reply_to_message_id)
                replies[reply.metadata.src_node_id] = reply
            if done is not None and done(replies):
                break
            if ids:
                time.sleep(self.poll_s)
        return replies
