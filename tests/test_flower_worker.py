"""The resident worker and its private channel: privacy of the channel, a thin ClientApp, safe
retries of private state, and a deployment that survives SIGKILLed workers mid-run.

Loopback and Unix sockets only; every process started here is tracked and checked gone.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import require_flwr

pytestmark = pytest.mark.flower

require_flwr()

from fedsa.config.load import load_config  # noqa: E402
from fedsa.core.io import load_tensors  # noqa: E402
from fedsa.engine.prepare import prepare  # noqa: E402
from fedsa.engine.simulation import run_rounds  # noqa: E402
from fedsa.flower.channel import (  # noqa: E402
    ChannelError,
    Packet,
    call,
    channel_dir,
    recv_packet,
    send_packet,
    socket_path,
)
from fedsa.flower.codec import experiment_key  # noqa: E402
from fedsa.flower.launch import Federation, Node, _alive, descendants  # noqa: E402
from fedsa.flower.state import pick_state, previous_path, state_path, store_private  # noqa: E402

TINY = Path(__file__).resolve().parents[1] / "configs" / "tiny.toml"
CLIENTS = ("0", "1", "2")


def wait_for(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def worker_pid(state_dir: Path) -> int:
    return int((channel_dir(state_dir) / "pid").read_text())


@pytest.fixture
def worker() -> Iterator[tuple[Path, subprocess.Popen[bytes]]]:
    """A resident worker process on its own, with a state dir others may enter (mode 0755),
    so that only the channel's own directory keeps another user out."""
    base = Path(tempfile.mkdtemp(prefix="fedsa-worker-test-"))
    base.chmod(0o755)
    state_dir = base / "state"
    proc = subprocess.Popen(
        [sys.executable, "-m", "fedsa.flower.worker", "--state-dir", str(state_dir)]
    )
    try:
        wait_for(lambda: socket_path(state_dir).exists(), 180, "the worker's socket")
        yield state_dir, proc
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        gone = not socket_path(state_dir).exists()  # removed on exit
        shutil.rmtree(base)
    assert not _alive(proc.pid)
    assert gone


def raw_request(path: Path, header: dict[str, object]) -> dict[str, object]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(30)
        sock.connect(str(path))
        send_packet(sock, Packet(header))
        return recv_packet(sock).header


_PROBE = """
import json, socket, struct, sys
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1])
except PermissionError:
    print("PermissionError"); sys.exit(0)
head = json.dumps({"kind": "ping", "secret": "x"}).encode()
try:
    s.sendall(struct.pack("!4sIQ", b"FSW1", len(head), 0) + head)
except BrokenPipeError:
    pass
data = s.recv(65536)
reply = json.loads(data[16:16 + struct.unpack("!4sIQ", data[:16])[1]])
print("refused: " + " ".join(reply["refused"].split()[:3]))
"""


def as_nobody(path: Path) -> str:
    """What user 65534 gets when it tries the worker's socket (the system Python, no venv)."""
    done = subprocess.run(
        ["/usr/bin/python3", "-c", _PROBE, str(path)],
        user=65534, group=65534, cwd="/", capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return done.stdout.strip()


def test_channel_is_private_and_refuses_strangers(
    worker: tuple[Path, subprocess.Popen[bytes]],
) -> None:
    state_dir, proc = worker
    directory = channel_dir(state_dir)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE(socket_path(state_dir).stat().st_mode) == 0o600
    assert stat.S_IMODE((directory / "secret").stat().st_mode) == 0o600
    assert stat.S_ISSOCK(socket_path(state_dir).stat().st_mode)  # a Unix socket, no address
    assert call(state_dir, Packet({"kind": "ping"}), 30).header["pong"] == proc.pid

    refused = raw_request(socket_path(state_dir), {"kind": "ping"})
    assert refused == {"refused": "wrong or missing channel secret", "order": []}
    wrong = raw_request(socket_path(state_dir), {"kind": "ping", "secret": "0" * 64})
    assert "refused" in wrong
    (directory / "secret").write_text("f" * 64)  # a client holding a stale secret
    with pytest.raises(ChannelError, match="refused"):
        call(state_dir, Packet({"kind": "ping"}), 30)

    if os.getuid() == 0 and Path("/usr/bin/python3").exists():
        # another user cannot reach the socket (its directory is 0700) ...
        assert as_nobody(socket_path(state_dir)) == "PermissionError"
        # ... and, were the modes opened by mistake, the worker refuses it by its uid
        directory.chmod(0o755)
        socket_path(state_dir).chmod(0o666)
        try:
            assert as_nobody(socket_path(state_dir)) == "refused: peer uid 65534"
        finally:
            directory.chmod(0o700)
            socket_path(state_dir).chmod(0o600)
    assert proc.poll() is None  # the worker survived every refused connection


def test_thin_client_app_imports_no_torch() -> None:
    code = (
        "import sys; import fedsa.flower.client_app\n"
        "heavy = [m for m in ('torch', 'transformers', 'peft') if m in sys.modules]\n"
        "assert heavy == [], heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_channel_keeps_names_order_and_dtypes() -> None:
    arrays = {
        "z.lora_A": np.arange(6, dtype=np.float32).reshape(2, 3),
        "a.head": np.array([1, 2], dtype=np.int64),
    }
    left, right = socket.socketpair()
    with left, right:
        send_packet(left, Packet({"kind": "x"}, arrays))
        got = recv_packet(right)
    assert list(got.arrays) == ["z.lora_A", "a.head"]
    for k, v in arrays.items():
        assert got.arrays[k].dtype == v.dtype and np.array_equal(got.arrays[k], v)


def test_retried_round_trains_from_the_state_before_it(tmp_path: Path) -> None:
    """A worker killed after saving round 2 must not make the retry start from round 2's state."""
    one, two = {"b": torch.ones(2)}, {"b": torch.full((2,), 2.0)}
    store_private(None, tmp_path, "exp", "1", one, 1, run_id=7)
    store_private(None, tmp_path, "exp", "1", two, 2, run_id=7)
    current, prev = state_path(tmp_path, "exp", "1"), previous_path(tmp_path, "exp", "1")
    assert pick_state(tmp_path, "exp", "1", 7, 2, training=True) == prev  # the retry of round 2
    assert pick_state(tmp_path, "exp", "1", 7, 3, training=True) == current
    assert pick_state(tmp_path, "exp", "1", 7, 2, training=False) == current  # eval of round 2
    assert pick_state(tmp_path, "exp", "1", 8, 1, training=True) == current  # a new run goes on
    store_private(None, tmp_path, "exp", "1", two, 2, run_id=7)  # the retry saves round 2 again
    assert torch.equal(load_tensors(prev)["b"], one["b"])  # and keeps round 1 as previous
    assert pick_state(tmp_path, "other", "1", 7, 1, training=True) is None


def test_run_survives_killed_workers(tmp_path: Path) -> None:
    """Node 1's worker dies after saving round 2 but before replying; node 2's is SIGKILLed from
    outside after round 1; node 0's warm SuperExec SIGKILLs itself after its second message.
    The run completes, equals the in-process engine, and every worker
    and daemon started is gone afterwards."""
    cfg = load_config(TINY, ["algorithm=fedsa-lora", "federation.rounds=4"])
    fed = Federation(tmp_path / "work")
    started: set[int] = set()
    try:
        fed.start_superlink()
        for c in CLIENTS:
            env = {"FEDSA_WORKER_CRASH_AFTER_SAVE": "2"} if c == "1" else {}
            if c == "0":  # node 0's warm SuperExec SIGKILLs itself after its 2nd ClientApp
                env = {"FEDSA_SUPEREXEC_CRASH_AFTER": "2"}
            fed.start_node(Node(c, tmp_path / f"state-{c}", env=env))
        first = fed.wait_workers(timeout=240)
        started.update(first.values())
        for pid in fed.pids():
            started.update([pid, *descendants(pid)])
        out = tmp_path / "run"
        rc = {"config-json": json.dumps(cfg.to_dict()), "out-dir": str(out)}
        rc.update({"round-timeout": 180.0, "node-timeout": 120.0})
        result: dict[str, object] = {}
        thread = threading.Thread(target=lambda: result.update(fed.run(rc, timeout=600)))
        thread.start()
        metrics = out / "metrics.jsonl"
        wait_for(lambda: metrics.exists() and metrics.read_text().strip(), 300, "round 1")
        os.kill(first["2"], signal.SIGKILL)
        thread.join(timeout=600)
        assert not thread.is_alive() and str(result.get("status")) == "finished:completed"
        for pid in fed.pids():
            started.update([pid, *descendants(pid)])
        # both killed workers were restarted by their node
        for c in ("1", "2"):
            wait_for(lambda c=c: worker_pid(tmp_path / f"state-{c}") != first[c], 120, "restart")
            started.add(worker_pid(tmp_path / f"state-{c}"))
    finally:
        fed.stop()
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [r["round"] for r in records] == [1, 2, 3, 4]
    assert all(r["rejected"] == {} for r in records)
    assert records[1]["client_timing"]["1"]["resident"] == 0.0  # round 2 of node 1: fallback
    log = (tmp_path / "work" / "supernode-1.log").read_text()
    assert "no resident worker" in log and "restarting it" in log  # the fallback says so
    log0 = (tmp_path / "work" / "supernode-0.log").read_text()
    assert "warm SuperExec exited" in log0 and "restarting it" in log0
    # the restarted SuperExec served node 0's later messages warm again
    assert all(r["client_timing"]["0"]["warm"] == 1.0 for r in records)
    state, store, _ = run_rounds(prepare(cfg))
    shared = state.shared
    for name, value in load_tensors(out / "global.safetensors").items():
        torch.testing.assert_close(value, shared[name], rtol=1e-5, atol=1e-6)
    key = experiment_key(cfg)
    for c in CLIENTS:
        saved = load_tensors(state_path(tmp_path / f"state-{c}", key, c))
        for name, value in saved.items():
            torch.testing.assert_close(value, store.get(c)[name], rtol=1e-5, atol=1e-6)
    assert len(started) > 10
    left = [p for p in started if _alive(p)]
    assert left == [], f"processes still running: {left}"
