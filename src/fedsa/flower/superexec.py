"""A site's SuperExec whose per-message ClientApp processes fork from a warm parent.

flwr 1.42 runs every message in a new ``flwr-clientapp`` process that exits after one message
(``flwr/supernode/runtime/run_clientapp.py``). Started with ``subprocess.Popen``, each of them
pays Python's start and flwr's imports (0.7 CPU-s on an idle core; 2-7 s a round on a 2-core
host where three start at once). This module is Flower's own SuperExec (``flower-superexec``:
its command line, Runtime API client, task loop, authentication and signal handling, unchanged)
with one part swapped: the executor. :class:`ForkExecutor` starts each ClientApp process by
forking a fork server that imported flwr's ClientApp runtime and our thin ClientApp once, then
runs Flower's own ``run_clientapp`` in it, so the process model (one process per message, the
same token, the same exit) stays Flower's while the imports are paid once per node.

The node supervisor (:mod:`fedsa.flower.node`) runs it beside a SuperNode started with
``--isolation process`` (Flower's switch for "the SuperExec runs outside the SuperNode") and a
per-node SuperExec secret, so only this process can acquire the node's tasks.

Tied to flwr 1.42: ``run_superexec`` picks its executor by name through its module-level
``get_executor``, which :func:`main` replaces; ``tests/test_flower_superexec.py`` fails if that
seam moves.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
from collections.abc import Sequence
from multiprocessing import forkserver
from multiprocessing.context import ForkServerContext
from typing import Any

import fedsa.flower  # noqa: F401  (Flower's safe settings, before flwr is imported)
from fedsa.flower.client_app import WARM_ENV

log = logging.getLogger("fedsa.flower.superexec")

#: What the fork server imports once: Flower's ClientApp runtime and our ClientApp (no torch).
PRELOAD = ("flwr.supernode.runtime.run_clientapp", "fedsa.flower.client_app")

#: Retry schedule of a forked ClientApp pulling its message from the node's own object store:
#: first retry after 50 ms, doubling to at most 1 s (flwr's defaults: 1 s doubling to 10 s).
PULL_BACKOFF = {"initial_backoff": 0.05, "backoff_cap": 1.0}

#: Test-only crash injection: SIGKILL this SuperExec once that many ClientApps have finished.
CRASH_ENV = "FEDSA_SUPEREXEC_CRASH_AFTER"


def _run_clientapp(
    address: str, token: str, insecure: bool, certificates: str | None, parent_pid: int | None,
    install: bool,
) -> None:  # fmt: skip
    """The body of a forked ClientApp process: what ``flwr-clientapp`` runs, retrying sooner.

    The SuperNode creates the task before it has pulled the message's arrays from the SuperLink
    (``_pull_and_store_message``), so a ClientApp that starts at once (as a forked one does)
    often finds them missing and, with flwr's schedule, sleeps a whole second on loopback. Only
    this process's retry schedule changes (:data:`PULL_BACKOFF`), not what is pulled or from
    where.
    """
    from flwr.supercore.inflatable import inflatable_utils
    from flwr.supercore.tls import validate_and_resolve_root_certificates
    from flwr.supernode.runtime.run_clientapp import run_clientapp

    pull = inflatable_utils.pull_and_inflate_object_from_tree
    if pull.__kwdefaults__ is not None:
        pull.__kwdefaults__.update(PULL_BACKOFF)
    os.environ[WARM_ENV] = "1"  # the reply's timing says this process forked warm
    run_clientapp(
        runtime_api_address=address,
        token=token,
        insecure=insecure,
        certificates=validate_and_resolve_root_certificates(certificates, insecure),
        parent_pid=parent_pid,
        runtime_dependency_install=install,
    )


class ForkExecutor:
    """Flower's executor protocol; ClientApp tasks fork from the warm server, others as Flower.

    Any other task type (a SuperNode sends none today) and any failure to fork go to Flower's
    own :class:`SubprocessExecutor`, so a message is never dropped for want of a warm parent.
    """

    def __init__(self) -> None:
        """Start the fork server now, so the first message does not pay its imports."""
        from flwr.supercore.superexec.executor.subprocess_executor import SubprocessExecutor

        self.cold = SubprocessExecutor()
        self.ctx: ForkServerContext = multiprocessing.get_context("forkserver")
        self.ctx.set_forkserver_preload(list(PRELOAD))
        forkserver.ensure_running()
        self.procs: list[Any] = []
        self.finished = 0
        self.crash_after = int(os.environ.get(CRASH_ENV, "0"))

    def get_eligible_capacity(
        self, supported_task_types: set[Any], *, insecure: bool = False,
        root_certificates_path: str | None = None,
    ) -> tuple[set[Any], set[str]]:  # fmt: skip
        """No capacity limit, as Flower's subprocess executor."""
        return supported_task_types, set()

    def wait_for_capacity(self, *args: Any, **kwargs: Any) -> None:
        """Nothing to wait for."""

    def launch(self, spec: Any) -> Any:
        """Fork a ClientApp process for ``spec``'s token; Flower's way for anything else."""
        from flwr.supercore.constant import TaskType
        from flwr.supercore.superexec.executor import LaunchResult

        if spec.task_type != TaskType.CLIENT_APP:
            return self.cold.launch(spec)
        args = (
            spec.runtime_api_address, spec.token, spec.insecure, spec.root_certificates_path,
            spec.parent_pid, spec.runtime_dependency_install,
        )  # fmt: skip
        try:
            proc = self.ctx.Process(target=_run_clientapp, args=args, name="flwr-clientapp")
            proc.start()
        except (OSError, EOFError, RuntimeError) as exc:
            log.warning("fork server unavailable (%s): starting flwr-clientapp cold", exc)
            return self.cold.launch(spec)
        self.procs.append(proc)
        return LaunchResult.accepted()

    def reconcile(self) -> None:
        """Reap finished ClientApp processes (called once per task poll)."""
        alive = [p for p in self.procs if p.is_alive()]  # is_alive() reaps a finished one
        self.finished += len(self.procs) - len(alive)
        self.procs = alive
        if self.crash_after and self.finished >= self.crash_after:
            log.warning("%s=%d: SIGKILLing this SuperExec", CRASH_ENV, self.crash_after)
            os.kill(os.getpid(), signal.SIGKILL)

    def close(self) -> None:
        """Nothing to release: running ClientApps watch this process and end with it."""


def main(argv: Sequence[str] | None = None) -> None:
    """``flower-superexec ARGS`` with :class:`ForkExecutor` as its executor."""
    import flwr.supercore.superexec.run_superexec as loop
    from flwr.supercore.cli.flower_superexec import flower_superexec

    def warm_executor(executor_type: Any, *args: Any, **kwargs: Any) -> Any:
        return ForkExecutor()

    loop.get_executor = warm_executor  # type: ignore[attr-defined]
    sys.argv = ["flower-superexec", *(sys.argv[1:] if argv is None else argv)]
    flower_superexec()


if __name__ == "__main__":
    main()
