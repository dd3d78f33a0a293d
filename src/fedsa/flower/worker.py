"""The resident worker: one long-lived process per site that does the ClientApp's heavy work.

flwr 1.42 runs every message in a fresh ``flwr-clientapp`` process, which would pay the imports of
torch, transformers and peft and the load of the model and data shard at every round. The worker
pays them once: it imports them at start, keeps a :class:`~fedsa.flower.site.SiteRunner` (model,
tokenised data, private state) for its whole life, and serves the node's thin ClientApp over the
private channel of :mod:`fedsa.flower.channel`, one request at a time (a SuperNode handles one
message at a time).

Started by :mod:`fedsa.flower.node` beside the SuperNode (``python -m fedsa.flower.worker
--state-dir DIR --parent-pid PID``); exits when its parent does, or on SIGTERM.

``FEDSA_WORKER_CRASH_AFTER_SAVE=<round>`` is a fault injection for tests: the worker SIGKILLs
itself after saving that round's private state and before replying, the worst moment for a crash.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from fedsa.flower.channel import (
    ChannelError,
    Packet,
    channel_dir,
    listening,
    new_secret,
    peer_uid,
    recv_packet,
    secret_ok,
    send_packet,
)
from fedsa.flower.site import SiteRunner

log = logging.getLogger(__name__)

CRASH_ENV = "FEDSA_WORKER_CRASH_AFTER_SAVE"
#: torch threads of the worker; several nodes on one host must share its cores, and torch's
#: default (one thread per core in every process) then oversubscribes them many times over.
THREADS_ENV = "FEDSA_WORKER_THREADS"
#: Niceness the worker adds to its own (``fedsa flower local`` sets 5: see
#: :attr:`fedsa.flower.launch.Node.nice`).
NICE_ENV = "FEDSA_WORKER_NICE"
#: Seconds a client may take to send its request (the work itself is not bounded here).
_READ_TIMEOUT_S = 60.0


def serve_one(conn: socket.socket, runner: SiteRunner, secret: str) -> None:
    """Answer one connection: refuse strangers, else run the request and send the reply."""
    uid = peer_uid(conn)
    if uid is not None and uid != os.getuid():
        log.warning("refused a connection from uid %d", uid)
        send_packet(conn, Packet({"refused": f"peer uid {uid} is not this worker's user"}))
        return
    conn.settimeout(_READ_TIMEOUT_S)
    request = recv_packet(conn)
    if not secret_ok(request, secret):
        log.warning("refused a connection without the node's channel secret")
        send_packet(conn, Packet({"refused": "wrong or missing channel secret"}))
        return
    if request.header.get("kind") == "ping":
        send_packet(conn, Packet({"pong": os.getpid()}))
        return
    try:
        reply = runner.handle(request)
    except Exception as exc:  # the ClientApp turns it into Flower's error reply
        log.exception("request failed")
        reply = Packet({"error": f"{type(exc).__name__}: {exc}"})
    crash = os.environ.get(CRASH_ENV)
    kind, t = request.header.get("kind"), request.header["config"].get("round", -1)
    if crash and kind == "train" and int(t) == int(crash):
        log.warning("%s=%s: killing myself before replying", CRASH_ENV, crash)
        os.kill(os.getpid(), signal.SIGKILL)
    conn.settimeout(None)
    send_packet(conn, reply)


def _stop(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def serve(state_dir: Path, parent_pid: int | None = None, max_requests: int = 0) -> None:
    """Serve the node's ClientApp until the parent exits, SIGTERM, or ``max_requests`` (0: no end).

    Loads torch and the rest of the client stack before opening the socket, so a ClientApp that
    finds the socket finds a worker that is ready.
    """
    signal.signal(signal.SIGTERM, _stop)
    nice = int(os.environ.get(NICE_ENV, "0") or 0)
    if nice > 0:
        os.nice(nice)
    threads = os.environ.get(THREADS_ENV, "")
    if threads:
        import torch

        torch.set_num_threads(max(1, int(threads)))
    runner = SiteRunner()
    secret = new_secret(state_dir)
    (channel_dir(state_dir) / "pid").write_text(str(os.getpid()), encoding="ascii")
    served = 0
    with listening(state_dir) as sock:
        sock.settimeout(1.0)
        log.info("resident worker %d ready on %s", os.getpid(), channel_dir(state_dir) / "sock")
        while max_requests <= 0 or served < max_requests:
            if parent_pid is not None and os.getppid() != parent_pid:
                log.info("parent %d is gone: worker exits", parent_pid)
                return
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            served += 1
            with conn:
                try:
                    serve_one(conn, runner, secret)
                except (ChannelError, OSError) as exc:
                    log.warning("dropped a connection: %s", exc)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m fedsa.flower.worker --state-dir DIR [--parent-pid PID]``."""
    p = argparse.ArgumentParser(prog="fedsa-flower-worker", description=__doc__.splitlines()[0])
    p.add_argument("--state-dir", required=True, help="the node's state dir (holds the channel)")
    p.add_argument("--parent-pid", type=int, default=None, help="exit when this parent exits")
    args = p.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s fedsa-worker: %(message)s"
    )
    serve(Path(args.state_dir).resolve(), args.parent_pid)
    return 0


if __name__ == "__main__":
    sys.exit(main())
