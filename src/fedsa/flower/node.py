"""A site's node: Flower's SuperNode plus the resident worker beside it, supervised together.

``python -m fedsa.flower.node --state-dir DIR -- <flower-supernode arguments>`` starts the worker
(:mod:`fedsa.flower.worker`) and the SuperNode as its children, restarts the worker whenever it
dies (the ClientApp falls back to in-process work until the new one is ready), and ends both when
the SuperNode exits or on SIGTERM/SIGINT. Everything stays in this process's group, so stopping
the group (as :class:`fedsa.flower.launch.Daemon` does) stops all of it. ``--no-worker`` runs the
SuperNode alone (every message then does its work in Flower's per-message process).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from fedsa.flower import flower_env
from fedsa.flower.channel import ChannelError, Packet, call
from fedsa.flower.procs import Daemon, bin_path

log = logging.getLogger("fedsa.flower.node")

#: Restarts allowed within :data:`_RESTART_WINDOW_S` before the node waits that long again.
_MAX_RESTARTS = 5
_RESTART_WINDOW_S = 60.0


def _stop_child(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait(timeout=grace)


class Supervisor:
    """The node's two children and the worker's restart policy."""

    def __init__(self, state_dir: Path, supernode_argv: list[str], worker: bool) -> None:
        """Nothing starts until :meth:`run`."""
        self.state_dir = state_dir
        self.supernode_argv = supernode_argv
        self.use_worker = worker
        self.env = flower_env()
        self.env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), self.env["PATH"]])
        self.worker: subprocess.Popen[bytes] | None = None
        self.restarts: list[float] = []
        self.stopping = False

    def start_worker(self, first: bool) -> None:
        """Start the worker; a restart does not inherit the test-only crash injection."""
        from fedsa.flower.worker import CRASH_ENV

        env = dict(self.env)
        if not first:
            env.pop(CRASH_ENV, None)
        argv = [sys.executable, "-m", "fedsa.flower.worker", "--state-dir", str(self.state_dir)]
        argv += ["--parent-pid", str(os.getpid())]
        self.worker = subprocess.Popen(argv, env=env)
        log.info("resident worker started (pid %d)", self.worker.pid)

    def _check_worker(self) -> None:
        if self.worker is None or self.worker.poll() is None:
            return
        now = time.monotonic()
        self.restarts = [t for t in self.restarts if now - t < _RESTART_WINDOW_S]
        if len(self.restarts) >= _MAX_RESTARTS:
            return  # crash loop: leave the ClientApp on its in-process fallback for a while
        log.warning("resident worker exited (code %s): restarting it", self.worker.returncode)
        self.restarts.append(now)
        self.start_worker(first=False)

    def _signal(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True

    def run(self) -> int:
        """Run until the SuperNode exits or a stop signal; return the SuperNode's exit code."""
        signal.signal(signal.SIGTERM, self._signal)
        signal.signal(signal.SIGINT, self._signal)
        if self.use_worker:
            self.start_worker(first=True)
        supernode = subprocess.Popen(self.supernode_argv, env=self.env)
        try:
            while not self.stopping and supernode.poll() is None:
                if self.use_worker:
                    self._check_worker()
                time.sleep(0.2)
        finally:
            _stop_child(supernode)
            if self.worker is not None:
                _stop_child(self.worker)
        return int(supernode.returncode or 0)


def wait_workers(nodes: dict[str, tuple[Path, Daemon]], timeout: float) -> dict[str, int] | str:
    """Ping each node's worker until all answer: their pids by client id, or why not."""
    deadline = time.monotonic() + timeout
    pids: dict[str, int] = {}
    while len(pids) < len(nodes):
        for cid, (state_dir, daemon) in nodes.items():
            if cid in pids:
                continue
            if not daemon.alive():
                return f"node {cid} exited:\n{daemon.tail()}"
            with contextlib.suppress(ChannelError):
                pids[cid] = int(call(state_dir, Packet({"kind": "ping"}), 5.0).header["pong"])
        if len(pids) < len(nodes):
            if time.monotonic() > deadline:
                missing = sorted(set(nodes) - set(pids))
                tails = "\n".join(nodes[c][1].tail(10) for c in missing)
                return f"workers of nodes {missing} not ready in {timeout:.0f}s:\n{tails}"
            time.sleep(0.3)
    return pids


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``--state-dir DIR [--no-worker] -- SUPERNODE_ARGS`` and supervise."""
    args = list(sys.argv[1:] if argv is None else argv)
    rest: list[str] = []
    if "--" in args:
        cut = args.index("--")
        args, rest = args[:cut], args[cut + 1 :]
    p = argparse.ArgumentParser(prog="fedsa-flower-node", description=__doc__.splitlines()[0])
    p.add_argument("--state-dir", required=True, help="the node's state dir")
    p.add_argument("--no-worker", action="store_true", help="run the SuperNode alone")
    opts = p.parse_args(args)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s fedsa-node: %(message)s"
    )
    state_dir = Path(opts.state_dir).resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    sup = Supervisor(state_dir, [bin_path("flower-supernode"), *rest], not opts.no_worker)
    return sup.run()


if __name__ == "__main__":
    sys.exit(main())
