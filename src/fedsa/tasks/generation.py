"""Generation tasks (GSM8K, instruction data, arith): causal LMs scored by exact match.

The same engine and algorithms fine-tune causal LMs; only preparation and scoring differ, and
both sit behind :class:`~fedsa.tasks.base.Task`. Scoring greedily decodes each evaluation prompt
and compares the extracted final answer with the reference (:mod:`fedsa.tasks.generate`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from peft import TaskType
from transformers import PreTrainedModel

from fedsa.config.schema import RunConfig
from fedsa.models.causal_lm import load_causal_lm
from fedsa.tasks.base import Loaded, Prepared, Task
from fedsa.tasks.batching import Encoded
from fedsa.tasks.generate import Generation, exact_match, prompt_view
from fedsa.tasks.instruct import InstructData, load_instruct
from fedsa.tasks.prompting import prepare_generation


@dataclass(frozen=True)
class GenerationEval:
    """The :class:`~fedsa.tasks.base.TaskEval` of a generation task."""

    generation: Generation
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
        """Exact match (as ``accuracy`` and ``exact_match``), reference loss and size.

        Every metric is a mean over examples, so with ``before_each`` the one-example scores
        are averaged.
        """
        if before_each is None:
            return exact_match(
                model, self.generation, self.dev, indices, self.batch_size, self.device, records
            )
        totals: dict[str, float] = {}
        for i in indices:
            before_each(i)
            one = exact_match(model, self.generation, self.dev, [i], 1, self.device, records)
            for key, value in one.items():
                totals[key] = totals.get(key, 0.0) + value
        n = float(len(indices))
        return {**{k: v / n for k, v in totals.items() if k != "n"}, "n": n}

    def inputs(self, split: str) -> Encoded:
        """The zero-shot prompts of the split: never the reference answers."""
        return prompt_view(self.train if split == "train" else self.dev)

    def prior(self, train_indices: Sequence[int], eval_indices: Sequence[int]) -> float | None:
        """None: the partition keys of generation tasks are length buckets, not classes."""
        return None


def _load(cfg: RunConfig, data_dir: Path | None) -> Loaded:
    return load_instruct(
        cfg.data.task,
        data_dir,
        cfg.data.instruct_path,
        max_train_examples=cfg.data.max_train_examples,
        seed=cfg.seed,
    )


def _prepare(cfg: RunConfig, task: Loaded, device: torch.device) -> Prepared:
    assert isinstance(task, InstructData)
    train, dev, generation, base = prepare_generation(cfg, task)
    scorer = GenerationEval(generation, train, dev, cfg.eval.batch_size, device)
    return Prepared(train, dev, scorer, base)


def _load_base(cfg: RunConfig, num_labels: int) -> PreTrainedModel:
    return load_causal_lm(
        cfg.model.name, cfg.seed, cfg.model.dtype, cfg.model.gradient_checkpointing
    )


GENERATION = Task(
    kind="generation",
    task_type=TaskType.CAUSAL_LM,
    load=_load,
    prepare=_prepare,
    load_base=_load_base,
)
