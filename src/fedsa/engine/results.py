"""The run directory: what a person and a program read after a run.

Layout::

    RUN_DIR/config.json               resolved config (every field, defaults included)
    RUN_DIR/metrics.jsonl             one JSON object per round
    RUN_DIR/summary.json              final-round numbers, totals, parameter counts
    RUN_DIR/global.safetensors        the server's shared tensors after the last round
    RUN_DIR/clients/<id>.safetensors  each client's private tensors
    RUN_DIR/server.safetensors        the rest of the server state, where there is any: base
                                      weights merged into (``base/<name>``, absolute values;
                                      FLoRA, FedEx-LoRA), per-client tensors, the rule's state
    RUN_DIR/checkpoints/round_<t>/    the newest checkpoints (see :mod:`fedsa.engine.checkpoint`)
    RUN_DIR/generations/round_<t>/<client>.jsonl
                                      generation tasks: per evaluated round and client, one line
                                      per test prompt (index, prompt, generated, answer,
                                      reference, correct), to read what the model answered
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from fedsa.core.errors import ConfigError, FedsaError
from fedsa.core.io import atomic_write_bytes, atomic_write_json, save_tensors
from fedsa.engine.store import ClientStore


class RunDir:
    """Writer for one run directory."""

    ARTIFACTS = (
        "metrics.jsonl",
        "summary.json",
        "global.safetensors",
        "server.safetensors",
        "config.json",
        "tracking.json",
    )
    FOLDERS = (
        *("clients", "checkpoints", "snapshots", "analysis", "generations", "plots"),
        *("tensorboard", "mlflow", "wandb"),  # the local tracker stores of the replaced run
    )

    def __init__(self, path: Path, *, overwrite: bool = False) -> None:
        """Create (or, with ``overwrite``, empty of an earlier run) the directory."""
        RunDir.check(path, overwrite=overwrite)
        self.path = Path(path)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create --out {str(self.path)!r}: {exc.strerror}") from None
        for name in self.ARTIFACTS:
            (self.path / name).unlink(missing_ok=True)
        for name in self.FOLDERS:
            shutil.rmtree(self.path / name, ignore_errors=True)

    @staticmethod
    def check(path: Path, *, overwrite: bool = False) -> None:
        """Refuse a path that is a file, or that holds a run, without changing anything."""
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise ConfigError(f"--out {str(path)!r} is a file: choose a directory path")
        held = any((path / n).exists() for n in ("metrics.jsonl", "config.json"))
        if held and not overwrite:
            raise ConfigError(
                f"--out {str(path)!r} already holds a run: choose another directory, pass "
                "--overwrite to replace it, or --resume to continue it"
            )

    @classmethod
    def reopen(cls, path: Path) -> RunDir:
        """An existing run directory, to be continued (nothing is deleted)."""
        path = Path(path)
        if not (path / "config.json").is_file():
            raise ConfigError(
                f"--resume {str(path)!r} is not a run directory (no config.json): give the "
                "--out folder of an earlier fedsa run"
            )
        run_dir = cls.__new__(cls)
        run_dir.path = path
        return run_dir

    def read_config(self) -> dict[str, Any]:
        """The saved resolved config."""
        try:
            with open(self.path / "config.json", encoding="utf-8") as fh:
                data: dict[str, Any] = json.load(fh)
        except (OSError, ValueError) as exc:
            raise FedsaError(
                f"{self.path / 'config.json'} is unreadable ({exc}): the run cannot be resumed; "
                "start a new run"
            ) from None
        return data

    def rewrite_metrics(self, records: list[dict[str, Any]]) -> None:
        """Replace ``metrics.jsonl`` by ``records`` (a resume drops rounds after its checkpoint)."""
        text = "".join(json.dumps(r) + "\n" for r in records)
        atomic_write_bytes(self.path / "metrics.jsonl", text.encode())

    def write_generations(self, round_idx: int, transcripts: Mapping[str, list[Any]]) -> None:
        """Save each client's generation records of one evaluation, one JSON object a line.

        Each file is written atomically, so a reader never sees half a record.
        """
        folder = self.path / "generations" / f"round_{round_idx}"
        for client, records in transcripts.items():
            text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
            atomic_write_bytes(folder / f"{client}.jsonl", text.encode())

    def drop_generations_after(self, round_idx: int) -> None:
        """Delete the generation records of rounds after ``round_idx`` (a resume redoes them)."""
        folder = self.path / "generations"
        for sub in folder.glob("round_*") if folder.is_dir() else ():
            suffix = sub.name.removeprefix("round_")
            if suffix.isdigit() and int(suffix) > round_idx:
                shutil.rmtree(sub, ignore_errors=True)

    def write_config(self, config: Mapping[str, Any]) -> None:
        """Save the resolved config."""
        atomic_write_json(self.path / "config.json", dict(config))

    def append_metrics(self, record: Mapping[str, Any]) -> None:
        """Append one round's record and flush it to disk, so a crash loses at most one line."""
        with open(self.path / "metrics.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def write_tensors(
        self,
        global_shared: Mapping[str, torch.Tensor],
        store: ClientStore,
        server: Mapping[str, torch.Tensor] | None = None,
    ) -> None:
        """Save the global shared tensors, private tensors and the rest of the server state.

        The server state file is written only when not empty: without the merged base weights of
        FLoRA or FedEx-LoRA the trained model would be incomplete.
        """
        if server:
            save_tensors(self.path / "server.safetensors", server)
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
