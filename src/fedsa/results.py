"""The run directory: what a person and a program read after a run.

Layout::

    RUN_DIR/config.json               resolved config (every field, defaults included)
    RUN_DIR/metrics.jsonl             one JSON object per round
    RUN_DIR/summary.json              final-round numbers, totals, parameter counts
    RUN_DIR/global.safetensors        the server's shared tensors after the last round
    RUN_DIR/clients/<id>.safetensors  each client's private tensors
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from fedsa.errors import ConfigError
from fedsa.store import ClientStore, atomic_write_json, save_tensors


class RunDir:
    """Writer for one run directory."""

    def __init__(self, path: Path, *, overwrite: bool = False) -> None:
        """Create (or, with ``overwrite``, reuse) the directory; refuse to mix two runs."""
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise ConfigError(f"--out {str(self.path)!r} is a file: choose a directory path")
        if (self.path / "metrics.jsonl").exists() and not overwrite:
            raise ConfigError(
                f"--out {str(self.path)!r} already holds a run: choose another directory "
                "or pass --overwrite"
            )
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create --out {str(self.path)!r}: {exc.strerror}") from None
        (self.path / "metrics.jsonl").unlink(missing_ok=True)

    def write_config(self, config: Mapping[str, Any]) -> None:
        """Save the resolved config."""
        atomic_write_json(self.path / "config.json", dict(config))

    def append_metrics(self, record: Mapping[str, Any]) -> None:
        """Append one round's record and flush it to disk, so a crash loses at most one line."""
        with open(self.path / "metrics.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def write_tensors(self, global_shared: Mapping[str, torch.Tensor], store: ClientStore) -> None:
        """Save the global shared tensors and every client's private tensors."""
        save_tensors(self.path / "global.safetensors", global_shared)
        store.save(self.path / "clients")

    def write_summary(self, summary: Mapping[str, Any]) -> None:
        """Save the run summary."""
        atomic_write_json(self.path / "summary.json", dict(summary))


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """All round records of a run directory."""
    with open(Path(path) / "metrics.jsonl", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def read_summary(path: Path) -> dict[str, Any]:
    """The summary of a run directory."""
    with open(Path(path) / "summary.json", encoding="utf-8") as fh:
        data: dict[str, Any] = json.load(fh)
    return data
