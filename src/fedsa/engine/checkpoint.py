"""Crash-safe checkpoints: everything a run needs to continue bitwise as if never interrupted.

A checkpoint is a directory ``RUN_DIR/checkpoints/round_<t>/`` holding

- ``state.safetensors``: the server's shared tensors (``shared/<name>``), the rest of its state
  when an algorithm has any (``server/...``: per-client tensors, base-weight changes, the server
  rule's state; see :class:`~fedsa.engine.server_step.ServerState`), the private tensors of
  every client that has trained (``private/<client>/<name>``) and torch's RNG state;
- ``state.json``: the round, the config fingerprint, every metrics record so far (which includes
  the sampled clients of each round) and the numpy and Python RNG states;
- ``manifest.json``: the SHA-256 of both files, so truncation or a flipped byte is detected.

Nothing else persists across rounds: each client round builds a fresh optimizer (see
:mod:`fedsa.engine.train`) and draws its batches and dropout from (seed, round, client). The
directory is assembled under a temporary name, every file is fsynced, and it is renamed into
place in one
step; older checkpoints are deleted only after that, keeping the newest ``checkpoint.keep``.
Loading uses safetensors and JSON only, so a checkpoint cannot execute code.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
import shutil
import signal
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load, save

from fedsa.config.schema import RunConfig
from fedsa.core.errors import CheckpointError
from fedsa.core.params import Tensors

log = logging.getLogger(__name__)

FORMAT = 1
PATTERN = re.compile(r"^round_(\d{6})$")
KILL_ENV = "FEDSA_FAULT_KILL_IN_CHECKPOINT"
"""Test hook: the round whose checkpoint write the process SIGKILLs itself in the middle of."""


@dataclass
class Checkpoint:
    """The loop state after round ``round``."""

    round: int
    shared: Tensors
    private: dict[str, Tensors]
    """Private tensors of the clients that have trained; the others hold the initial ones."""
    history: list[dict[str, Any]]
    server: Tensors = field(default_factory=dict)
    """The server's state beyond ``shared`` (:meth:`ServerState.extra_tensors`; usually empty)."""
    rng: dict[str, Any] = field(default_factory=dict)
    """numpy and Python generator states (filled when read; captured afresh when saved)."""
    rng_tensors: Tensors = field(default_factory=dict)
    """torch (and CUDA) generator states."""

    def restore_rng(self) -> None:
        """Put the global generators back as they were when this checkpoint was written."""
        if self.rng:
            restore_rng(self.rng, self.rng_tensors)


def capture_rng() -> tuple[dict[str, Any], Tensors]:
    """The global random generators' states, as JSON and tensors."""
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    assert isinstance(keys, np.ndarray)
    py_state = random.getstate()
    meta = {
        "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "python": [py_state[0], list(py_state[1]), py_state[2]],
    }
    tensors: Tensors = {"rng/torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():  # type: ignore[no-untyped-call]
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng/cuda/{i}"] = state
    return meta, tensors


def restore_rng(meta: dict[str, Any], tensors: Tensors) -> None:
    """Put the generators back exactly as :func:`capture_rng` found them."""
    name, keys, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, internal, gauss = meta["python"]
    random.setstate((version, tuple(internal), gauss))
    torch.set_rng_state(tensors["rng/torch"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("rng/cuda/")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)


def _write(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Checkpointer:
    """Writes, lists, verifies and loads the checkpoints of one run directory."""

    def __init__(self, run_path: Path, cfg: RunConfig) -> None:
        """Checkpoints of ``cfg`` live under ``run_path/checkpoints``."""
        self.root = Path(run_path) / "checkpoints"
        self.cfg = cfg
        self.sha = cfg.sha256()

    def due(self, round_idx: int) -> bool:
        """Whether a checkpoint is written after ``round_idx``."""
        every = self.cfg.checkpoint.every
        last = round_idx == self.cfg.federation.rounds
        return every > 0 and (round_idx % every == 0 or last)

    def save(self, ckpt: Checkpoint) -> Path:
        """Write ``ckpt`` atomically, then delete all but the newest ``checkpoint.keep``.

        Raises:
            CheckpointError: the disk is full or not writable; earlier checkpoints are intact.
        """
        final = self.root / f"round_{ckpt.round:06d}"
        tmp: Path | None = None
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=self.root))
            rng_meta, rng_tensors = capture_rng()
            tensors = {f"shared/{k}": v for k, v in ckpt.shared.items()}
            for client, state in ckpt.private.items():
                tensors.update({f"private/{client}/{k}": v for k, v in state.items()})
            tensors.update({f"server/{k}": v for k, v in ckpt.server.items()})
            tensors.update(rng_tensors)
            blob = save({k: v.detach().cpu().contiguous() for k, v in tensors.items()})
            meta = {
                "format": FORMAT,
                "round": ckpt.round,
                "config_sha256": self.sha,
                "clients": sorted(ckpt.private),
                "history": ckpt.history,
                "rng": rng_meta,
            }
            text = json.dumps(meta).encode()
            _write(tmp / "state.safetensors", blob)
            if os.environ.get(KILL_ENV) == str(ckpt.round):
                os.kill(os.getpid(), signal.SIGKILL)  # crash-test hook: die mid-checkpoint
            _write(tmp / "state.json", text)
            digests = {
                "state.safetensors": hashlib.sha256(blob).hexdigest(),
                "state.json": hashlib.sha256(text).hexdigest(),
            }
            _write(tmp / "manifest.json", json.dumps({"sha256": digests}).encode())
            _fsync_dir(tmp)
            if final.exists():  # a stale one from before a resume: replace it
                shutil.rmtree(final)
            os.rename(tmp, final)
            tmp = None
            _fsync_dir(self.root)
        except OSError as exc:
            raise CheckpointError(
                f"cannot write checkpoint {final}: {exc.strerror or exc}; free space or fix "
                f"permissions, then continue with: fedsa run --resume {self.root.parent}"
            ) from None
        finally:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
        self._prune()
        return final

    def _prune(self) -> None:
        rounds = self.rounds()
        for t in rounds[self.cfg.checkpoint.keep :]:
            shutil.rmtree(self.root / f"round_{t:06d}", ignore_errors=True)
        for stale in self.root.glob(".tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)

    def rounds(self) -> list[int]:
        """Rounds that have a checkpoint directory, newest first (valid or not)."""
        if not self.root.is_dir():
            return []
        found = (PATTERN.match(p.name) for p in self.root.iterdir() if p.is_dir())
        return sorted((int(m.group(1)) for m in found if m), reverse=True)

    def read(self, round_idx: int) -> Checkpoint:
        """Load and verify one checkpoint.

        Raises:
            CheckpointError: a file is missing, truncated, altered, or from another config.
        """
        path = self.root / f"round_{round_idx:06d}"
        try:
            manifest = json.loads((path / "manifest.json").read_bytes())
            blobs = {name: (path / name).read_bytes() for name in manifest["sha256"]}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{path.name}: unreadable ({exc})") from None
        for name in ("state.safetensors", "state.json"):
            if name not in blobs or hashlib.sha256(blobs[name]).hexdigest() != manifest[
                "sha256"
            ].get(name):
                raise CheckpointError(f"{path.name}: {name} fails its checksum (truncated/altered)")
        meta = json.loads(blobs["state.json"])
        if meta.get("format") != FORMAT or meta.get("round") != round_idx:
            raise CheckpointError(f"{path.name}: unknown format or round number")
        if meta["config_sha256"] != self.sha:
            raise CheckpointError(f"{path.name}: written by another config")
        tensors = load(blobs["state.safetensors"])
        shared = {k[len("shared/") :]: v for k, v in tensors.items() if k.startswith("shared/")}
        private: dict[str, Tensors] = {c: {} for c in meta["clients"]}
        for key, value in tensors.items():
            if key.startswith("private/"):
                _, client, name = key.split("/", 2)
                private[client][name] = value
        server = {k[len("server/") :]: v for k, v in tensors.items() if k.startswith("server/")}
        rng_tensors = {k: v for k, v in tensors.items() if k.startswith("rng/")}
        return Checkpoint(
            round_idx, shared, private, meta["history"], server, meta["rng"], rng_tensors
        )

    def latest(self) -> Checkpoint | None:
        """The newest checkpoint that verifies, warning about each newer one that does not.

        Returns None when there are no checkpoints at all.

        Raises:
            CheckpointError: checkpoints exist but none verifies.
        """
        problems: list[str] = []
        for t in self.rounds():
            try:
                ckpt = self.read(t)
            except CheckpointError as exc:
                problems.append(str(exc))
                continue
            for problem in problems:
                log.warning("skipping checkpoint %s", problem)
            if problems:
                log.warning("resuming from the older checkpoint of round %d", t)
            return ckpt
        if problems:
            raise CheckpointError(
                f"no valid checkpoint in {self.root} ({'; '.join(problems)}): restore one from a "
                "backup, or delete the folder to restart from round 0"
            )
        return None
