"""A finished run directory, opened for use: its config, numbers and every client's model.

Export, prediction and the Python API all need the same thing: client k's personalised model,
built exactly as the engine evaluated it. That model is the seeded PEFT model of the run's own
config with, written into it by the algorithm's own install step, what the server would send the
client (``global.safetensors`` plus any per-client tensors and base-weight changes kept in
``server.safetensors``) and the client's private tensors (``clients/<id>.safetensors``). Reusing
the install step is what makes an exported model equal to the evaluated one: no second code path
decides which tensors make up a client.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import torch

from fedsa.adapters.layout import Layout
from fedsa.adapters.variants import HEAD_MARKER
from fedsa.algorithms.hooks import ClientStart
from fedsa.algorithms.registry import ALGORITHMS
from fedsa.algorithms.spec import Algorithm
from fedsa.config.load import config_from_dict
from fedsa.config.schema import RunConfig
from fedsa.core.errors import ConfigError, DataError
from fedsa.core.io import load_tensors
from fedsa.core.params import Tensors, read_from
from fedsa.engine.client import install_start
from fedsa.engine.prepare import build_model, resolve_device
from fedsa.engine.results import RunDir, read_metrics, read_summary
from fedsa.engine.server_step import ServerState, sent_view, start_rank
from fedsa.tasks.client_tasks import client_labels, head_labels
from fedsa.tasks.glue import TASKS
from fedsa.tasks.instruct import is_generation_task


def _load(path: Path, what: str) -> Tensors:
    try:
        return load_tensors(path)
    except (OSError, ValueError) as exc:
        raise DataError(
            f"{path} is unreadable ({type(exc).__name__}): the run directory is damaged; "
            f"rerun it or restore {what} from a checkpoint"
        ) from None


@dataclass
class ClientModel:
    """One client's model, ready to use (``model`` holds the client's state)."""

    client: str
    model: torch.nn.Module
    """The PEFT model (``PeftModel``) with the client's adapter, head and base changes."""
    layout: Layout
    initial_private: Tensors
    """The common initial private tensors (what a client that never trained holds)."""


class SavedRun:
    """A finished run directory: config, metrics, summary and the tensors of every client."""

    def __init__(self, path: Path) -> None:
        """Open ``path``; refuse anything but a finished fedsa run directory, with the fix."""
        self.path = Path(path)
        if not (self.path / "config.json").is_file():
            raise ConfigError(
                f"{str(self.path)!r} is not a run directory (no config.json): give the --out "
                "folder of a fedsa run"
            )
        if not (self.path / "global.safetensors").is_file():
            raise ConfigError(
                f"the run in {str(self.path)!r} has not finished (no global.safetensors): "
                f"finish it with `fedsa run --resume {self.path}`"
            )
        self.cfg: RunConfig = config_from_dict(RunDir.reopen(self.path).read_config())
        self.algorithm: Algorithm = ALGORITHMS[self.cfg.algorithm]

    @cached_property
    def metrics(self) -> list[dict[str, Any]]:
        """Every round's record of ``metrics.jsonl``."""
        return read_metrics(self.path)

    @cached_property
    def summary(self) -> dict[str, Any]:
        """``summary.json``."""
        return read_summary(self.path)

    @property
    def client_ids(self) -> list[str]:
        """The run's client ids, in order."""
        return [str(k) for k in range(self.cfg.data.num_clients)]

    @property
    def is_generation(self) -> bool:
        """Whether the run fine-tuned a causal LM (generation task) rather than a classifier."""
        return is_generation_task(self.cfg.data.task)

    @property
    def label_names(self) -> tuple[str, ...]:
        """Class names of a classification task, by label id (empty for generation tasks)."""
        if self.is_generation:
            return ()
        if self.cfg.data.client_tasks:  # each client its own labels on a head of max(n_k) rows
            raise ConfigError(
                f"{self.path} gives clients their own tasks (data.client_tasks): export and "
                "predict do not support such runs yet; load a client with SavedRun.client_model"
            )
        return TASKS[self.cfg.data.task].label_names

    @cached_property
    def server(self) -> ServerState:
        """The server's final state: shared tensors, per-client tensors, base-weight changes."""
        shared = _load(self.path / "global.safetensors", "global.safetensors")
        extra_path = self.path / "server.safetensors"
        extra = _load(extra_path, "server.safetensors") if extra_path.is_file() else {}
        return ServerState.restore(shared, extra)

    def check_client(self, client: str) -> str:
        """``client`` as a known id, else a one-line error listing the valid ones."""
        client = str(client)
        if client not in self.client_ids:
            ids = self.client_ids
            shown = ", ".join(ids[:5]) + (f", ... {ids[-1]}" if len(ids) > 5 else "")
            raise ConfigError(
                f"--client {client!r} is not a client of this run: use one of {shown}"
            )
        return client

    def private(self, client: str) -> Tensors | None:
        """The client's saved private tensors (None: it keeps none, or never saved any)."""
        path = self.path / "clients" / f"{self.check_client(client)}.safetensors"
        return _load(path, path.name) if path.is_file() else None

    def build(self, device: str = "cpu") -> tuple[torch.nn.Module, Layout, Tensors, Tensors]:
        """The run's freshly built model, its layout, and its initial frozen and private tensors."""
        num_labels = 0 if self.is_generation else head_labels(self.cfg)
        model, layout = build_model(self.cfg, num_labels, resolve_device(device))
        return model, layout, read_from(model, layout.frozen), read_from(model, layout.private)

    def install(
        self,
        model: torch.nn.Module,
        layout: Layout,
        frozen: Tensors,
        initial: Tensors,
        client: str | None,
    ) -> None:
        """Write client ``client``'s complete state into ``model`` with the algorithm's step.

        ``client=None`` installs the global model: the server's shared tensors (no per-client
        ones) and the common initial private tensors, what a client new to the federation gets.
        """
        private = None if client is None else self.private(client)
        if private is not None and set(private) != set(initial):
            raise DataError(
                f"{self.path / 'clients' / str(client)}.safetensors does not hold this run's "
                "private tensors (names differ from the config's adapter): the run directory is "
                "damaged"
            )
        state, cfg = self.server, self.cfg
        start = ClientStart(
            frozen=frozen,
            shared=dict(state.shared) if client is None else sent_view(state, client, cfg, layout),
            private=initial if private is None else private,
            initial_private=initial,
            base=state.base,
            rank=0 if client is None else start_rank(cfg, client),
            labels=0 if client is None else client_labels(cfg, client),
        )
        install_start(model, self.algorithm, start, layout, cfg)
        model.eval()

    def client_model(self, client: str | int, device: str = "cpu") -> ClientModel:
        """Client ``client``'s personalised model, exactly as the engine evaluated it."""
        cid = self.check_client(str(client))
        model, layout, frozen, initial = self.build(device)
        self.install(model, layout, frozen, initial, cid)
        return ClientModel(cid, model, layout, initial)

    def head_names(self, layout: Layout) -> tuple[str, ...]:
        """Parameter names of the task head's trained copy (empty for causal LMs)."""
        return tuple(n for n in layout.shared + layout.private if HEAD_MARKER in n)
