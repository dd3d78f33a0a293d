"""A site's node: Flower's SuperNode, a warm SuperExec and the resident worker, supervised together.

``python -m fedsa.flower.node --state-dir DIR -- <flower-supernode arguments>`` starts, as its
children, the worker (:mod:`fedsa.flower.worker`: torch, the model and the data stay loaded), the
warm SuperExec (:mod:`fedsa.flower.superexec`: each message's ClientApp process forks from a
parent that already imported flwr) and the SuperNode (with ``--isolation process`` and a
per-node SuperExec secret in ``DIR/superexec.secret``, mode 0600). It restarts the worker or the
SuperExec whenever one dies (the ClientApp falls back to in-process work while the worker is
away; the SuperNode keeps its messages while the SuperExec is), and ends all of them when the
SuperNode exits or on SIGTERM/SIGINT. Everything stays in this process's group, so stopping the
group (as :class:`fedsa.flower.launch.Daemon` does) stops all of it. ``--no-worker`` runs no
worker (every message then does its work in Flower's per-message process); ``--cold-exec`` lets
the SuperNode start Flower's own SuperExec (a fresh Python process per message).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
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


def runtime_address(supernode_argv: Sequence[str]) -> str:
    """The SuperNode's Runtime API address from its arguments (flwr's defaults where absent)."""

    def value(flag: str, default: str) -> str:
        for i, arg in enumerate(supernode_argv):
            if arg == flag and i + 1 < len(supernode_argv):
                return supernode_argv[i + 1]
            if arg.startswith(flag + "="):
                return arg.split("=", 1)[1]
        return default

    host = value("--host", "127.0.0.1")
    host = f"[{host}]" if ":" in host and not host.startswith("[") else host  # IPv6
    return f"{host}:{value('--port', '9094')}"


def warm_exec_refusal(supernode_argv: Sequence[str]) -> str | None:
    """Why the warm SuperExec cannot serve this SuperNode (None: it can)."""
    for flag in ("--isolation", "--ssl-certfile", "--superexec-auth-secret-file"):
        if any(a == flag or a.startswith(flag + "=") for a in supernode_argv):
            return f"the SuperNode was given {flag}"
    return None


def write_secret(state_dir: Path) -> Path:
    """A fresh SuperExec secret, readable by this user only (the SuperNode and we share it)."""
    path = state_dir / "superexec.secret"
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(secrets.token_hex(32).encode())
    return path


@dataclass
class Child:
    """One restartable child of the node: its command and its restart history."""

    name: str
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None
    restarts: list[float] = field(default_factory=list)


class Supervisor:
    """The node's children (SuperNode, warm SuperExec, worker) and their restart policy."""

    def __init__(
        self, state_dir: Path, supernode_argv: list[str], worker: bool, warm_exec: bool = True
    ) -> None:
        """Nothing starts until :meth:`run`.

        With ``warm_exec`` (and a SuperNode whose arguments allow it) the SuperNode runs with
        ``--isolation process`` and :mod:`fedsa.flower.superexec` serves its tasks; otherwise
        the SuperNode starts Flower's own SuperExec.
        """
        self.state_dir = state_dir
        self.env = flower_env()
        self.env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), self.env["PATH"]])
        self.supernode_argv = list(supernode_argv)
        self.children: list[Child] = []
        self.stopping = False
        parent = ["--parent-pid", str(os.getpid())]
        if worker:
            argv = [sys.executable, "-m", "fedsa.flower.worker", "--state-dir", str(state_dir)]
            self.children.append(Child("resident worker", argv + parent))
        why = warm_exec_refusal(supernode_argv) if warm_exec else "it was turned off"
        if why is None:
            secret = str(write_secret(state_dir))
            self.supernode_argv += ["--isolation", "process"]
            self.supernode_argv += ["--superexec-auth-secret-file", secret]
            argv = [sys.executable, "-m", "fedsa.flower.superexec", "--insecure"]
            argv += ["--runtime-api-address", runtime_address(supernode_argv)]
            argv += ["--superexec-auth-secret-file", secret]
            self.children.append(Child("warm SuperExec", argv + parent))
        else:
            log.info("Flower's own SuperExec serves this node: %s", why)

    def start(self, child: Child, first: bool) -> None:
        """Start a child; a restart does not inherit the test-only crash injections."""
        from fedsa.flower.superexec import CRASH_ENV as EXEC_CRASH
        from fedsa.flower.worker import CRASH_ENV

        env = dict(self.env)
        if not first:
            env.pop(CRASH_ENV, None)
            env.pop(EXEC_CRASH, None)
        child.proc = subprocess.Popen(child.argv, env=env)
        log.info("%s started (pid %d)", child.name, child.proc.pid)

    def _check(self, child: Child) -> None:
        if child.proc is None or child.proc.poll() is None:
            return
        now = time.monotonic()
        child.restarts = [t for t in child.restarts if now - t < _RESTART_WINDOW_S]
        if len(child.restarts) >= _MAX_RESTARTS:
            return  # crash loop: the ClientApp's fallback (or the SuperNode's queue) waits
        log.warning("%s exited (code %s): restarting it", child.name, child.proc.returncode)
        child.restarts.append(now)
        self.start(child, first=False)

    def _signal(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True

    def run(self) -> int:
        """Run until the SuperNode exits or a stop signal; return the SuperNode's exit code."""
        signal.signal(signal.SIGTERM, self._signal)
        signal.signal(signal.SIGINT, self._signal)
        for child in self.children:
            self.start(child, first=True)
        supernode = subprocess.Popen(self.supernode_argv, env=self.env)
        try:
            while not self.stopping and supernode.poll() is None:
                for child in self.children:
                    self._check(child)
                time.sleep(0.2)
        finally:
            _stop_child(supernode)
            for child in self.children:
                if child.proc is not None:
                    _stop_child(child.proc)
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
    p.add_argument("--no-worker", action="store_true", help="no resident worker")
    p.add_argument(
        "--cold-exec", action="store_true", help="Flower's own SuperExec (a cold process a message)"
    )
    opts = p.parse_args(args)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s fedsa-node: %(message)s"
    )
    state_dir = Path(opts.state_dir).resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    argv = [bin_path("flower-supernode"), *rest]
    sup = Supervisor(state_dir, argv, worker=not opts.no_worker, warm_exec=not opts.cold_exec)
    return sup.run()


if __name__ == "__main__":
    sys.exit(main())
