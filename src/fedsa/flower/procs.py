"""Processes we start: find their descendants, tell whether they live, stop whole trees.

Flower daemons spawn children (``flower-superexec``, per-message ``flwr-clientapp``), some in
sessions of their own, and our node supervisor adds the resident worker: stopping a daemon must
reach all of them, and tests must be able to check that none is left.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from fedsa.core.errors import FedsaError


class FlowerRunError(FedsaError):
    """A Flower run failed, timed out, or a daemon did not come up."""


def bin_path(name: str) -> str:
    """A Flower command next to this Python (the venv's), else from ``PATH``."""
    local = Path(sys.executable).parent / name
    found = str(local) if local.exists() else shutil.which(name)
    if found is None:
        raise FlowerRunError(
            f"{name} not found: install the extra with pip install 'fedsa[flower]'"
        )
    return found


def descendants(pid: int) -> list[int]:
    """All live descendants of ``pid`` (Linux ``/proc``; empty elsewhere)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out: list[int] = []
    todo = [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        out += kids
        todo += kids
    return out


def _alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


@dataclass
class Daemon:
    """A Flower daemon in its own session; ``stop`` ends its whole process group."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    @classmethod
    def start(cls, name: str, argv: list[str], env: dict[str, str], log: Path) -> Daemon:
        """Start ``argv`` with output to ``log``, in a new session (its own process group)."""
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as fh:
            proc = subprocess.Popen(
                argv, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        return cls(name, proc, log)

    def alive(self) -> bool:
        """Whether the daemon's main process still runs."""
        return self.proc.poll() is None

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM the process group and every descendant, then SIGKILL what is left.

        Descendants are collected first because Flower starts some children in sessions of their
        own (the SuperLink's ``flower-superexec``), out of reach of the group signal.
        """
        tree = [self.proc.pid, *descendants(self.proc.pid)]
        _signal_group(self.proc.pid, signal.SIGTERM)
        for pid in tree[1:]:
            _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(_alive(p) for p in tree):
            self.proc.poll()  # reap the leader so it does not linger as a zombie
            time.sleep(0.1)
        _signal_group(self.proc.pid, signal.SIGKILL)
        for pid in tree:
            _signal(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5.0)

    def tail(self, lines: int = 30) -> str:
        """The end of the daemon's log, for error messages."""
        text = self.log.read_text("utf-8", errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])
