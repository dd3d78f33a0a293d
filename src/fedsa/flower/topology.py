"""What a federation started by :mod:`fedsa.flower.launch` is made of: its sites and TLS files.

Kept apart from the launcher so that the settings of a SuperNode (its client id, state dir,
worker, threads, niceness) read as one list.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from pathlib import Path


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Tls:
    """TLS files: the CA certificate, and on the SuperLink's side its certificate and key."""

    ca: Path
    cert: Path | None = None
    key: Path | None = None


@dataclass
class Node:
    """One SuperNode's settings."""

    client_id: str
    state_dir: Path
    data_dir: str = ""
    auth_key: Path | None = None
    """Private key (``ssh-keygen -t ecdsa``) for SuperNode authentication."""
    max_retries: int = 30
    """Connection attempts before the SuperNode gives up."""
    worker: bool = True
    """Start the resident worker beside the SuperNode (:mod:`fedsa.flower.node`)."""
    warm_exec: bool = True
    """Serve the node's messages by the warm SuperExec (:mod:`fedsa.flower.superexec`)."""
    env: dict[str, str] = field(default_factory=dict)
    """Extra environment for this node's processes."""
    threads: int = 1
    """torch threads of its worker: the nodes of a loopback federation share this host's cores."""
    nice: int = 5
    """Niceness of its worker: on a shared host, training yields to the nodes' light Flower
    processes (SuperNode, SuperExec, ClientApp), whose delays every client of a round waits on."""
