"""The private local channel between a site's thin ClientApp and its resident worker.

A Unix domain socket, never a network address: it lives in a directory only this user can enter
(mode 0700, checked before use), is created with mode 0600, and each connection must present the
node's secret (a 0600 file beside the socket, compared in constant time) and come from a process
of the same user (``SO_PEERCRED`` on Linux, checked before anything is read). Anything else is
refused before the request is served.

What travels: one request and one reply per connection, each a JSON header plus named arrays as
safetensors bytes (``safetensors.numpy``: no pickle anywhere). Only numpy is imported here, so the
ClientApp that uses this module pays no torch import.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import secrets
import socket
import stat
import struct
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from fedsa.core.errors import FedsaError

_FRAME = struct.Struct("!4sIQ")  # magic, header bytes, payload bytes
_MAGIC = b"FSW1"
_MAX_HEADER = 64 * 2**20
_MAX_PAYLOAD = 16 * 2**30
#: Longest socket path the kernel accepts (``sun_path`` is 108 bytes on Linux), with margin.
_MAX_SOCKET_PATH = 100

Arrays = dict[str, np.ndarray]


class ChannelError(FedsaError):
    """The worker channel is unusable: refused, broken, or not private to this user."""


@dataclass
class Packet:
    """One request or reply: a JSON-able header and named arrays."""

    header: dict[str, Any]
    arrays: Arrays = field(default_factory=dict)


def channel_dir(state_dir: Path) -> Path:
    """Where a node's socket and secret live: ``<state-dir>/.worker``, or a per-user temp dir.

    The temp dir (keyed by a hash of the state dir) is used only when the socket path under the
    state dir would exceed the kernel's limit on socket path length.
    """
    state_dir = Path(state_dir).resolve()
    candidate = state_dir / ".worker"
    if len(str(candidate / "sock")) <= _MAX_SOCKET_PATH:
        return candidate
    digest = hashlib.sha256(str(state_dir).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"fedsa-worker-{os.getuid()}-{digest}"


def private_dir(path: Path) -> Path:
    """Create ``path`` (mode 0700) or check it is ours and closed to others; return it."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise ChannelError(f"{path} is not a directory owned by this user: remove it")
    if info.st_mode & 0o077:
        os.chmod(path, 0o700)
    return path


def socket_path(state_dir: Path) -> Path:
    """The worker's socket for a node with this state dir."""
    return channel_dir(state_dir) / "sock"


def secret_path(state_dir: Path) -> Path:
    """The node's channel secret (32 random bytes as hex, mode 0600)."""
    return channel_dir(state_dir) / "secret"


def new_secret(state_dir: Path) -> str:
    """Write a fresh secret for this node, atomically and 0600 from the start; return it."""
    directory = private_dir(channel_dir(state_dir))
    value = secrets.token_hex(32)
    tmp = directory / f".secret.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(value)
    os.replace(tmp, directory / "secret")
    return value


def read_secret(state_dir: Path) -> str:
    """The node's secret, or ChannelError when there is none (no worker was ever started)."""
    try:
        return secret_path(state_dir).read_text("ascii").strip()
    except OSError as exc:
        raise ChannelError(f"no worker secret for {state_dir}: {exc}") from None


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    chunks: list[bytes] = []
    while n:
        chunk = sock.recv(min(n, 2**22))
        if not chunk:
            raise ChannelError("the other end closed the worker channel mid-message")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def send_packet(sock: socket.socket, packet: Packet) -> None:
    """Write one packet: frame header, JSON header, safetensors payload (empty if no arrays)."""
    arrays = {k: np.ascontiguousarray(v) for k, v in packet.arrays.items()}
    head = json.dumps({**packet.header, "order": list(arrays)}).encode()
    payload = st_save(arrays) if arrays else b""
    sock.sendall(_FRAME.pack(_MAGIC, len(head), len(payload)) + head)
    if payload:  # an empty send to a peer that already closed would fail with EPIPE
        sock.sendall(payload)


def recv_packet(sock: socket.socket) -> Packet:
    """Read one packet; ChannelError on a malformed or oversized one."""
    magic, n_head, n_payload = _FRAME.unpack(_recv_exact(sock, _FRAME.size))
    if magic != _MAGIC or n_head > _MAX_HEADER or n_payload > _MAX_PAYLOAD:
        raise ChannelError("not a fedsa worker frame (bad magic or size)")
    try:
        header = json.loads(_recv_exact(sock, n_head))
    except ValueError as exc:
        raise ChannelError(f"worker frame header is not JSON: {exc}") from None
    if not isinstance(header, dict):
        raise ChannelError("worker frame header must be a JSON object")
    payload = _recv_exact(sock, n_payload) if n_payload else b""
    arrays: Arrays = dict(st_load(payload)) if payload else {}
    order = header.get("order")
    if isinstance(order, list) and sorted(order) == sorted(arrays):
        arrays = {k: arrays[k] for k in order}  # safetensors sorts names; keep the sender's order
    return Packet(header, arrays)


def peer_uid(sock: socket.socket) -> int | None:
    """The user id of the process at the other end (Linux ``SO_PEERCRED``; None elsewhere)."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return None
    creds = sock.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i"))
    return int(struct.unpack("3i", creds)[1])


def secret_ok(request: Packet, secret: str) -> bool:
    """Whether ``request`` carries the node's secret (compared in constant time)."""
    given = request.header.get("secret")
    return isinstance(given, str) and hmac.compare_digest(given.encode(), secret.encode())


@contextlib.contextmanager
def listening(state_dir: Path) -> Iterator[socket.socket]:
    """A listening Unix socket (mode 0600 from creation) in the node's private channel dir."""
    directory = private_dir(channel_dir(state_dir))
    path = directory / "sock"
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # a previous worker's socket (the supervisor runs one worker at a time)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(str(path))
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    sock.listen(8)
    try:
        yield sock
    finally:
        sock.close()
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def call(state_dir: Path, request: Packet, timeout: float | None = None) -> Packet:
    """Send ``request`` to the node's worker and return its reply.

    Raises:
        ChannelError: no worker is listening, it refused the connection, or it died mid-call.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(socket_path(state_dir)))
        # read after connecting: a worker writes its secret before it binds the socket
        header = {**request.header, "secret": read_secret(state_dir)}
        send_packet(sock, Packet(header, request.arrays))
        reply = recv_packet(sock)
    except OSError as exc:
        raise ChannelError(f"worker channel: {exc}") from None
    finally:
        sock.close()
    if "refused" in reply.header:
        raise ChannelError(f"worker refused the request: {reply.header['refused']}")
    return reply


def as_mapping(values: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON-able copy of a Flower config/metric record or node config (scalars only)."""
    return {str(k): v for k, v in values.items() if isinstance(v, bool | int | float | str)}
