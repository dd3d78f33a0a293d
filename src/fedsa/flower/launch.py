"""Start and stop Flower daemons, submit a run and wait for it: the loopback trial and tests.

No ``flwr`` import here: everything goes through Flower's own commands (``flower-superlink``,
``flower-supernode``, ``flwr``) started with :func:`fedsa.flower.flower_env`, so the settings that
keep Flower from reaching outside are always set. Daemons start in their own session and are
stopped by process group (each spawns a ``flower-superexec`` child), and every run is bounded by a
timeout: a ServerApp that fails or hangs makes :meth:`Federation.run` raise with the reason.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedsa.flower import POLL_ENV, SERVERAPP_POLL_S, USER_SET, flower_env
from fedsa.flower.bundle import write_app_bundle
from fedsa.flower.procs import Daemon, FlowerRunError, _alive, bin_path, descendants  # noqa: F401 - re-exported for tests
from fedsa.flower.topology import Node as Node  # re-exported: scripts import it from here
from fedsa.flower.topology import Tls as Tls
from fedsa.flower.topology import free_port


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


_EXCEPTION = re.compile(r"^[\w.]*(Error|Exception): ")


@dataclass
class Federation:
    """A SuperLink and its SuperNodes on this host, plus the ``flwr`` connection to them."""

    workdir: Path
    tls: Tls | None = None
    supernode_auth: bool = False
    port: int = 0
    remote: str = ""
    """``host:port`` of a SuperLink started elsewhere (then only ``run`` and friends apply)."""
    daemons: list[Daemon] = field(default_factory=list)
    nodes: dict[str, Daemon] = field(default_factory=dict)
    superlink: Daemon | None = None
    workers: dict[str, Path] = field(default_factory=dict)
    """State dirs of the nodes started with a resident worker, by client id."""
    _sigterm: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir).resolve()
        self.home = self.workdir / "flwr-home"
        self.env = flower_env(self.home)
        # the daemons start their own children (flower-superexec, flwr-clientapp) from PATH
        bindir = str(Path(sys.executable).parent)
        self.env["PATH"] = os.pathsep.join([bindir, self.env.get("PATH", "")])
        self.port = self.port or free_port()
        self.app = write_app_bundle(self.workdir / "app")
        self._write_connection()

    @property
    def address(self) -> str:
        """The SuperLink's address (Fleet, Control and ServerApp APIs share one port)."""
        return self.remote or f"127.0.0.1:{self.port}"

    def _write_connection(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        lines = ["[superlink]", 'default = "fedsa"', "", "[superlink.fedsa]"]
        lines.append(f'address = "{self.address}"')
        if self.tls is None:
            lines.append("insecure = true")
        else:
            lines.append(f'root-certificates = "{self.tls.ca}"')
        (self.home / "config.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")

    def start_superlink(self, timeout: float = 60.0) -> None:
        """Start the SuperLink and wait until its health endpoint answers.

        Its state is Flower's in-memory one: a loopback federation lives for one command, and a
        state file costs the SuperLink about twice the CPU per request (SQLite on disk), CPU
        the sites' training shares on one host (``docs/benchmarks.md``, Flower). A SuperLink
        that must outlive a restart is ``fedsa flower superlink --database FILE``.
        """
        argv = [bin_path("flower-superlink"), "--disable-runtime-dependency-installation"]
        argv += ["--port", str(self.port)]
        argv += self._tls_args()
        if self.supernode_auth:
            argv.append("--enable-supernode-auth")
        env = dict(self.env)
        if POLL_ENV not in USER_SET:  # the user's setting wins, as for the nodes
            env[POLL_ENV] = SERVERAPP_POLL_S
        self.superlink = Daemon.start("superlink", argv, env, self.workdir / "superlink.log")
        self.daemons.append(self.superlink)
        self._wait_health(timeout)

    def _tls_args(self) -> list[str]:
        if self.tls is None:
            return ["--insecure"]
        if self.tls.cert is None or self.tls.key is None:
            raise FlowerRunError("a SuperLink with TLS needs a certificate and its private key")
        return [
            "--ssl-ca-certfile", str(self.tls.ca),
            "--ssl-certfile", str(self.tls.cert),
            "--ssl-keyfile", str(self.tls.key),
        ]  # fmt: skip

    def _wait_health(self, timeout: float) -> None:
        scheme = "http" if self.tls is None else "https"
        ctx = None if self.tls is None else ssl.create_default_context(cafile=str(self.tls.ca))
        deadline = time.monotonic() + timeout
        assert self.superlink is not None
        while time.monotonic() < deadline:
            if not self.superlink.alive():
                raise FlowerRunError(f"SuperLink exited at start:\n{self.superlink.tail()}")
            try:
                with urllib.request.urlopen(
                    f"{scheme}://{self.address}/health", timeout=2, context=ctx
                ):
                    return
            except OSError:
                time.sleep(0.3)
        raise FlowerRunError(
            f"SuperLink not healthy after {timeout:.0f}s:\n{self.superlink.tail()}"
        )

    def start_node(self, node: Node) -> Daemon:
        """Start one SuperNode serving ``node.client_id``, with its resident worker."""
        conf = f'client-id={node.client_id} state-dir="{node.state_dir}"'
        if node.data_dir:
            conf += f' data-dir="{node.data_dir}"'
        argv = [sys.executable, "-m", "fedsa.flower.node", "--state-dir", str(node.state_dir)]
        if not node.worker:
            argv.append("--no-worker")
        if not node.warm_exec:
            argv.append("--cold-exec")
        argv += ["--", "--superlink", self.address]
        argv += ["--port", str(free_port()), "--node-config", conf]
        argv += ["--max-retries", str(node.max_retries)]
        if self.tls is None:
            argv.append("--insecure")
        else:
            argv += ["--root-certificates", str(self.tls.ca)]
        if node.auth_key is not None:
            argv += ["--auth-supernode-private-key", str(node.auth_key)]
        log = self.workdir / f"supernode-{node.client_id}.log"
        env = {**self.env, "FEDSA_WORKER_THREADS": str(node.threads), **node.env}
        env.setdefault("FEDSA_WORKER_NICE", str(node.nice))
        daemon = Daemon.start(f"supernode-{node.client_id}", argv, env, log)
        self.daemons.append(daemon)
        self.nodes[node.client_id] = daemon
        if node.worker:
            self.workers[node.client_id] = Path(node.state_dir).resolve()
        return daemon

    def wait_workers(self, timeout: float = 300.0) -> dict[str, int]:
        """Wait until every node's resident worker answers; their process ids by client id.

        Not needed for correctness (a ClientApp without a worker works in-process), but a run
        submitted before the workers are up pays the in-process cost for its first messages.
        """
        from fedsa.flower.node import wait_workers

        found = wait_workers({c: (d, self.nodes[c]) for c, d in self.workers.items()}, timeout)
        if isinstance(found, str):
            raise FlowerRunError(found)
        return found

    def stop_node(self, client_id: str) -> None:
        """Stop one SuperNode (its process group, the worker included)."""
        self.nodes.pop(client_id).stop()
        self.workers.pop(client_id, None)

    def flwr(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        """Run a ``flwr`` CLI command against this federation's connection."""
        return subprocess.run(
            [bin_path("flwr"), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.workdir,
            check=False,
        )

    def register_node(self, public_key: Path) -> None:
        """Register a SuperNode's public key with the SuperLink (SuperNode authentication)."""
        done = self.flwr("supernode", "register", str(public_key), "fedsa")
        if done.returncode != 0:
            raise FlowerRunError(f"flwr supernode register failed: {done.stdout}{done.stderr}")

    def run(self, run_config: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Submit a run, wait for it to finish, and return its ``flwr ls`` entry.

        Raises:
            FlowerRunError: the run did not complete (the ServerApp failed or was stopped, with
                the end of its log), or it exceeded ``timeout`` seconds (it is then stopped).
        """
        from fedsa.flower.runconfig import write_run_config

        rc_file = write_run_config(self.workdir / "run-config.toml", run_config)
        done = self.flwr(
            "run", str(self.app), "fedsa", "--run-config", str(rc_file), "--format", "json"
        )
        if done.returncode != 0:
            raise FlowerRunError(f"flwr run failed: {done.stdout.strip()} {done.stderr.strip()}")
        run_id = str(json.loads(done.stdout)["run-id"])
        deadline = time.monotonic() + timeout
        self._stream_log(run_id, deadline)
        pause = 0.5
        while time.monotonic() < deadline:
            info = self.run_info(run_id)
            status = str(info.get("status", ""))
            if status.startswith("finished"):
                if status != "finished:completed":
                    raise FlowerRunError(f"run {run_id} {status}:\n{self.run_log(run_id)}")
                return info
            # each check is a `flwr` process (about 1 CPU-second): back off to spare the rounds
            time.sleep(pause)
            pause = min(pause * 1.5, 5.0)
        self.flwr("stop", run_id, "fedsa")
        raise FlowerRunError(
            f"run {run_id} did not finish within {timeout:.0f}s and was stopped:\n"
            f"{self.run_log(run_id)}"
        )

    def _stream_log(self, run_id: str, deadline: float) -> None:
        """Wait for the run to finish by streaming its ServerApp log to ``serverapp-ID.log``.

        ``flwr log --stream`` is one process that the SuperLink ends when the run finishes
        (it checks every 0.5 s), where polling ``flwr ls`` starts a Python process with flwr's
        imports (about 0.6 CPU-s) every few seconds, CPU the rounds of a loopback federation need.
        It returns early (a lost connection, a deadline) without harm: the status poll in
        :meth:`run` follows it either way.
        """
        argv = [bin_path("flwr"), "log", run_id, "fedsa", "--stream"]
        log_file = self.workdir / f"serverapp-{run_id}.log"
        with log_file.open("wb") as out, contextlib.suppress(subprocess.TimeoutExpired):
            subprocess.run(
                argv, env=self.env, stdout=out, stderr=subprocess.STDOUT, cwd=self.workdir,
                timeout=max(1.0, deadline - time.monotonic()), check=False,
            )  # fmt: skip

    def run_info(self, run_id: str) -> dict[str, Any]:
        """The run's entry from ``flwr ls --run-id ID --format json`` (empty if unreadable)."""
        done = self.flwr("ls", "fedsa", "--run-id", run_id, "--format", "json")
        try:
            runs = json.loads(done.stdout).get("runs", [])
        except json.JSONDecodeError:
            return {}
        return dict(runs[0]) if runs else {}

    def run_log(self, run_id: str, lines: int = 25) -> str:
        """The ServerApp's error (its last exception line) first, then the end of its log."""
        done = self.flwr("log", run_id, "fedsa", "--show", timeout=30)
        text = (done.stdout + done.stderr).strip()
        if not text and self.superlink is not None:
            text = self.superlink.tail()
        kept = [ln for ln in text.splitlines() if "HTTP Request:" not in ln]
        errors = [ln for ln in kept if _EXCEPTION.match(ln)]
        head = f"reason: {errors[-1]}\n" if errors else ""
        return head + "\n".join(kept[-lines:])

    def stop(self) -> None:
        """Stop every daemon started here (SuperNodes first)."""
        for daemon in reversed(self.daemons):
            daemon.stop()
        self.nodes.clear()
        self.workers.clear()

    def pids(self) -> list[int]:
        """Process-group ids of every daemon started here (to check none is left)."""
        return [d.proc.pid for d in self.daemons]

    def __enter__(self) -> Federation:
        """Stop every daemon on leaving, SIGTERM included (``kill``, a CI timeout, systemd).

        Python's default SIGTERM ends the process without unwinding, which would leave the
        SuperLink, the nodes and their workers running; in the main thread SIGTERM becomes
        ``SystemExit`` for the time of the ``with`` block, so :meth:`__exit__` runs.
        """
        if threading.current_thread() is threading.main_thread():
            self._sigterm = signal.signal(signal.SIGTERM, _exit_on_signal)
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.stop()
        finally:
            if self._sigterm is not None:
                signal.signal(signal.SIGTERM, self._sigterm)
                self._sigterm = None
