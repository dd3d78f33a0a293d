"""The task interface: how a task's data is loaded, encoded and evaluated.

The round loop, the client step and every evaluation call a task only through these types, so
none of them branches on the task kind (classification or generation). A task kind is a
:class:`Task` (registered in :mod:`fedsa.tasks.registry`); what it prepares for one run holds a
:class:`TaskEval`, the scorer of a client's personalised model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from peft import TaskType
from transformers import PreTrainedModel

from fedsa.config.schema import RunConfig
from fedsa.tasks.batching import Encoded
from fedsa.tasks.examples import TaskData
from fedsa.tasks.instruct import InstructData

Loaded = TaskData | InstructData
"""A task's raw examples: labelled sentences (GLUE) or prompt/response pairs."""


class TaskEval(Protocol):
    """Scores the adapter state the model holds now on examples of the evaluation split."""

    @property
    def batch_size(self) -> int:
        """Evaluation batch size."""

    @property
    def device(self) -> torch.device:
        """Where the model lives."""

    def evaluate(
        self,
        model: torch.nn.Module,
        indices: Sequence[int],
        records: list[dict[str, Any]] | None = None,
        before_each: Callable[[int], None] | None = None,
    ) -> dict[str, float]:
        """Metrics over ``dev[indices]``: ``accuracy`` (the headline), ``loss``, ``n`` at least.

        Generation tasks append one record per example to ``records`` when it is given (what was
        asked, generated, extracted and expected); classifiers leave it as it is.

        With ``before_each``, the examples are scored one at a time and ``before_each(i)`` runs
        just before example ``i`` is: FedDPA sets each input's own adapter mix there. The metrics
        are still those of the whole shard (balanced accuracy and macro-F1 from one confusion
        matrix over every example, not a mean of one-example scores).
        """

    def inputs(self, split: str) -> Encoded:
        """The model inputs of ``split`` (``train`` or ``dev``) without targets.

        Prompts only for generation; for methods that compare representations of inputs (FedDPA).
        """

    def prior(self, train_indices: Sequence[int], eval_indices: Sequence[int]) -> float | None:
        """Accuracy of always predicting the majority training label (None: no class labels)."""


@dataclass(frozen=True)
class Prepared:
    """A task's encoded splits and scorer for one run.

    ``base`` is the base model when loading it was part of preparing (causal LMs), else None.
    """

    train: Encoded
    dev: Encoded
    scorer: TaskEval
    base: PreTrainedModel | None


@dataclass(frozen=True)
class Task:
    """A task kind: its loader, encoder, base model and PEFT task type."""

    kind: str
    """``classification`` or ``generation``."""
    task_type: TaskType
    load: Callable[[RunConfig, Path | None], Loaded]
    prepare: Callable[[RunConfig, Loaded, torch.device], Prepared]
    load_base: Callable[[RunConfig, int], PreTrainedModel]
    """``(config, number of labels) -> the seeded base model`` (labels are ignored by LMs)."""
