"""``fedsa flower local`` stopped by SIGTERM (``kill``, a CI timeout) leaves no process behind.

Python's default SIGTERM ends a process without unwinding, so before the launcher turned it into
``SystemExit`` a killed ``fedsa flower local`` left its SuperLink, SuperNodes, workers and
SuperExecs running. Here the command is started for a long run, SIGTERMed once its run is
submitted (the ServerApp's log exists), and every process it had started must be gone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import require_flwr

require_flwr()

from fedsa.flower.procs import _alive, descendants  # noqa: E402

TINY = Path(__file__).resolve().parents[1] / "configs" / "tiny.toml"


def test_sigterm_stops_every_process_the_command_started(tmp_path: Path) -> None:
    work = tmp_path / "work"
    argv = [sys.executable, "-m", "fedsa.cli", "flower", "local", str(TINY)]
    argv += ["federation.rounds=200", "--out", str(tmp_path / "run"), "--workdir", str(work)]
    started: list[int] = []
    proc = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 240
        while not list(work.glob("serverapp-*.log")) and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            time.sleep(0.5)
        assert list(work.glob("serverapp-*.log")), "the run was not submitted within 240 s"
        time.sleep(2.0)  # a round or so under way
        started = descendants(proc.pid)  # reparented to init once the command exits
        names = {Path(f"/proc/{p}/cmdline").read_bytes()[:200] for p in started if _alive(p)}
        assert any(b"flower-superlink" in n for n in names), names
        assert any(b"fedsa.flower.worker" in n for n in names), names
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=90)
        assert code != 0  # stopped, not finished
        deadline = time.monotonic() + 30
        while any(_alive(p) for p in started) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = [p for p in started if _alive(p)]
        assert left == [], f"processes still running after SIGTERM: {left}"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        for pid in [*started, *descendants(proc.pid)]:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
