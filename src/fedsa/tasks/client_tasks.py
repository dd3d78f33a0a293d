"""Task-heterogeneous federations: every client its own GLUE task (``data.client_tasks``).

``data.client_tasks = ["sst2", "qnli", "mnli"]`` gives client k the task
``client_tasks[k % len]`` (FedDPA's setting, and the strongest case for a personalised ``B``):
its own training data, its own evaluation shard from that task's dev set, its own label space
and a head that never leaves it. Clients that share a task split its training set by
``data.partition`` among themselves. Each task is loaded and tokenised on its own (a pair task
and a single-sentence task tokenise differently, and each keeps its own cache entry), then the
splits are concatenated: task ``j``'s examples sit at ``offsets[j]`` in the train and dev splits,
labels keep their task's own ids, and the one model's head has ``max(n_k)`` outputs, restricted
per client by :mod:`fedsa.adapters.label_space`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fedsa.config.schema import RunConfig
from fedsa.tasks.examples import TaskData
from fedsa.tasks.glue import TASKS, load_task
from fedsa.tasks.partition import split_with_eval


@dataclass(frozen=True)
class MixedTaskData(TaskData):
    """Several tasks' examples, concatenated task by task in ``parts`` order."""

    parts: tuple[TaskData, ...] = ()
    """Each distinct task's own data, in the order of first appearance in ``client_tasks``."""

    def offsets(self, split: str) -> list[int]:
        """Where each part starts in ``split`` (``train`` or ``dev``), plus the total at the end."""
        sizes = [len(p.train if split == "train" else p.dev) for p in self.parts]
        return [0, *np.cumsum(sizes).tolist()]


def client_task(cfg: RunConfig, client: str | int) -> str:
    """Client ``client``'s task: ``client_tasks[k % len]``, else ``data.task``."""
    tasks = cfg.data.client_tasks
    return tasks[int(client) % len(tasks)] if tasks else cfg.data.task


def head_labels(cfg: RunConfig) -> int:
    """Outputs of the one model's head: the most labels of any client's task (0: no classes)."""
    names = cfg.data.client_tasks or (cfg.data.task,)
    return max((TASKS[t].num_labels for t in names if t in TASKS), default=0)


def client_labels(cfg: RunConfig, client: str | int) -> int:
    """Client ``client``'s own label count under ``data.client_tasks`` (0: the whole head)."""
    return TASKS[client_task(cfg, client)].num_labels if cfg.data.client_tasks else 0


def load_mixed(cfg: RunConfig, data_dir: Path | None) -> MixedTaskData:
    """Every distinct client task, each subsampled to ``data.max_train_examples``."""
    names = list(dict.fromkeys(cfg.data.client_tasks))
    parts = tuple(
        load_task(t, data_dir, max_train_examples=cfg.data.max_train_examples, seed=cfg.seed)
        for t in names
    )
    return MixedTaskData(
        task="+".join(names),
        train=[ex for p in parts for ex in p.train],
        dev=[ex for p in parts for ex in p.dev],
        label_names=tuple(str(i) for i in range(head_labels(cfg))),
        source=", ".join(f"{p.task}: {p.source}" for p in parts),
        parts=parts,
    )


def split_by_task(cfg: RunConfig, data: MixedTaskData) -> tuple[list[list[int]], list[list[int]]]:
    """Each task's training set split among its clients, and their evaluation shards from its dev.

    Indices are into the concatenated splits; a client's examples all come from its own task.
    """
    n = cfg.data.num_clients
    train_parts: list[list[int]] = [[] for _ in range(n)]
    eval_parts: list[list[int]] = [[] for _ in range(n)]
    train_off, dev_off = data.offsets("train"), data.offsets("dev")
    for j, part in enumerate(data.parts):
        clients = [k for k in range(n) if client_task(cfg, k) == part.task]
        labels, dev = [ex.label for ex in part.train], [ex.label for ex in part.dev]
        seed = int(np.random.SeedSequence([cfg.seed, j]).generate_state(1)[0])
        shards, evals = split_with_eval(labels, dev, len(clients), cfg.data, seed)
        for k, shard, ev in zip(clients, shards, evals, strict=True):
            train_parts[k] = [train_off[j] + i for i in shard]
            eval_parts[k] = [dev_off[j] + i for i in ev]
    return train_parts, eval_parts
