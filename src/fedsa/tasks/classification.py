"""Classification tasks (GLUE, synthetic): load, tokenise, and score a client's model.

Each client is evaluated with its own model (global shared tensors + its private tensors) on its
own evaluation shard: accuracy and mean cross-entropy of the task head's predictions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from peft import TaskType
from transformers import PreTrainedModel

from fedsa.config.schema import RunConfig
from fedsa.models.loaders import load_classifier, load_tokenizer
from fedsa.tasks.base import Loaded, Prepared, Task
from fedsa.tasks.batching import Encoded, collate, concat, length_sorted_chunks
from fedsa.tasks.cache import encode_split
from fedsa.tasks.client_tasks import MixedTaskData, load_mixed
from fedsa.tasks.examples import TaskData
from fedsa.tasks.glue import load_task
from fedsa.tasks.scores import skew_scores


def evaluate(
    model: torch.nn.Module,
    data: Encoded,
    indices: Sequence[int],
    batch_size: int,
    device: torch.device,
    before_each: Callable[[int], None] | None = None,
) -> dict[str, float]:
    """Accuracy, mean loss, balanced accuracy and macro-F1 of ``model`` on ``data[indices]``.

    With ``before_each``, examples go through the model one at a time, each after
    ``before_each(index)`` (see :meth:`fedsa.tasks.base.TaskEval.evaluate`).
    """
    model.eval()
    correct = 0
    loss_sum = 0.0
    preds: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    classes = 2
    chunks = (
        [[i] for i in indices]
        if before_each is not None
        else length_sorted_chunks(data, indices, batch_size)
    )
    with torch.inference_mode():
        for chunk in chunks:
            if before_each is not None:
                before_each(chunk[0])
            batch = {k: v.to(device) for k, v in collate(data, chunk).items()}
            out = model(**batch)
            pred = out.logits.argmax(dim=-1)  # (B,)
            correct += int((pred == batch["labels"]).sum())
            loss_sum += float(out.loss) * len(chunk)
            classes = int(out.logits.shape[-1])
            preds.append(pred.cpu().numpy())
            labels.append(batch["labels"].cpu().numpy())
    n = len(indices)
    skew = skew_scores(np.concatenate(labels), np.concatenate(preds), classes)
    return {"accuracy": correct / n, "loss": loss_sum / n, "n": float(n), **skew}


@dataclass(frozen=True)
class ClassificationEval:
    """The :class:`~fedsa.tasks.base.TaskEval` of a classification task."""

    train: Encoded
    dev: Encoded
    batch_size: int
    device: torch.device

    def evaluate(
        self,
        model: torch.nn.Module,
        indices: Sequence[int],
        records: list[dict[str, Any]] | None = None,
        before_each: Callable[[int], None] | None = None,
    ) -> dict[str, float]:
        """Accuracy, loss and size on ``dev[indices]`` (no records: the labels say it all)."""
        return evaluate(model, self.dev, indices, self.batch_size, self.device, before_each)

    def inputs(self, split: str) -> Encoded:
        """The encoded split itself (its labels are never fed to the model as inputs)."""
        return self.train if split == "train" else self.dev

    def prior(self, train_indices: Sequence[int], eval_indices: Sequence[int]) -> float | None:
        """Accuracy on ``dev[eval_indices]`` of the majority label of ``train[train_indices]``."""
        top = int(np.bincount(self.train.labels[list(train_indices)]).argmax())
        return float((self.dev.labels[list(eval_indices)] == top).mean())


def _load(cfg: RunConfig, data_dir: Path | None) -> Loaded:
    if cfg.data.client_tasks:
        return load_mixed(cfg, data_dir)
    return load_task(
        cfg.data.task, data_dir, max_train_examples=cfg.data.max_train_examples, seed=cfg.seed
    )


def _prepare(cfg: RunConfig, task: Loaded, device: torch.device) -> Prepared:
    assert isinstance(task, TaskData)
    tokenizer = load_tokenizer(cfg.model.name)
    parts = task.parts if isinstance(task, MixedTaskData) else (task,)
    train = concat([encode_split(p.train, tokenizer, cfg, "train", p.task) for p in parts])
    dev = concat([encode_split(p.dev, tokenizer, cfg, "dev", p.task) for p in parts])
    return Prepared(train, dev, ClassificationEval(train, dev, cfg.eval.batch_size, device), None)


def _load_base(cfg: RunConfig, num_labels: int) -> PreTrainedModel:
    return load_classifier(cfg.model.name, num_labels, cfg.seed)


CLASSIFICATION = Task(
    kind="classification",
    task_type=TaskType.SEQ_CLS,
    load=_load,
    prepare=_prepare,
    load_base=_load_base,
)
