"""Which :class:`~fedsa.tasks.base.Task` kind serves a ``data.task`` name."""

from __future__ import annotations

from fedsa.tasks.base import Task
from fedsa.tasks.classification import CLASSIFICATION
from fedsa.tasks.generation import GENERATION
from fedsa.tasks.glue import TASKS
from fedsa.tasks.instruct import GENERATION_TASKS

TASK_NAMES: tuple[str, ...] = (*TASKS, *GENERATION_TASKS)
"""Every ``data.task`` value, classification first (the order of ``fedsa list``)."""


def task_for(name: str) -> Task:
    """The task kind of ``data.task = name`` (names are checked when the config is loaded)."""
    return GENERATION if name in GENERATION_TASKS else CLASSIFICATION
