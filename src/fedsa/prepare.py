"""Build everything a run needs once: data, partition, tokens, model, adapter layout, initial state.

Kept apart from the round loop so that the loop reads top to bottom and so that other engines
(Flower) can build the same pieces for one client.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import numpy as np
import torch
from peft import TaskType
from transformers import PreTrainedModel

from fedsa.adapters import VARIANTS, Layout, apply_trainable, build_peft_model, make_layout
from fedsa.algorithms import ALGORITHMS
from fedsa.batching import Encoded
from fedsa.cache import encode_split
from fedsa.causal_lm import load_causal_lm, resolve_target_modules
from fedsa.config import RunConfig
from fedsa.data import TaskData, load_task, resolve_data_dir
from fedsa.device import autocast_dtype
from fedsa.errors import DataError
from fedsa.feddpa import add_local_adapter, reference_indices, set_mix, training_mix
from fedsa.generate import Generation
from fedsa.instruct import InstructData, is_generation_task, load_instruct
from fedsa.models import load_classifier, load_tokenizer
from fedsa.params import Tensors, read_from
from fedsa.partition import eval_shards, partition
from fedsa.prompting import prepare_generation

log = logging.getLogger(__name__)


@dataclass
class Federation:
    """The prepared pieces of one run."""

    cfg: RunConfig
    task: TaskData | InstructData
    train: Encoded
    dev: Encoded
    client_ids: list[str]
    client_train: list[list[int]]
    """Indices into ``train`` per client."""
    client_eval: list[list[int]]
    """Indices into ``dev`` per client (label proportions matched to its training shard)."""
    client_refs: list[list[int]]
    """FedDPA: indices into ``train`` each client compares test inputs with."""
    model: torch.nn.Module
    layout: Layout
    init_shared: Tensors
    init_private: Tensors
    frozen: Tensors
    device: torch.device
    generation: Generation | None = None
    """Generation tasks: evaluation prompts and reference answers (None for classification)."""


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DataError("device = 'cuda' but no CUDA device is available: use device = 'auto'")
    return torch.device(name)


def split_clients(
    cfg: RunConfig, task: TaskData | InstructData
) -> tuple[list[list[int]], list[list[int]]]:
    """Training shards by the configured partitioner, and matched evaluation shards from dev."""
    labels = [ex.label for ex in task.train]
    train_parts = partition(
        labels, cfg.data.num_clients, cfg.data.partition, cfg.data.dirichlet_alpha, cfg.seed
    )
    size = cfg.data.eval_examples_per_client or max(1, len(task.dev) // cfg.data.num_clients)
    size = min(size, len(task.dev))
    eval_parts = eval_shards(
        [[labels[i] for i in part] for part in train_parts],
        [ex.label for ex in task.dev],
        size,
        cfg.seed,
    )
    return train_parts, eval_parts


def build_model(
    cfg: RunConfig, num_labels: int, device: torch.device, base: PreTrainedModel | None = None
) -> tuple[torch.nn.Module, Layout]:
    """The seeded PEFT model and its layout: identical in every process given the same config.

    Needs no data, so a server that holds none (Flower's ServerApp) builds the same initial
    shared tensors as the clients.

    Args:
        cfg: the run configuration.
        num_labels: classes of a classification task (ignored for generation tasks).
        device: where the model goes.
        base: an already loaded base model (None: load it from ``cfg.model.name``).
    """
    generation = is_generation_task(cfg.data.task)
    if base is None:
        if generation:
            base = load_causal_lm(
                cfg.model.name, cfg.seed, cfg.model.dtype, cfg.model.gradient_checkpointing
            )
        else:
            base = load_classifier(cfg.model.name, num_labels, cfg.seed)
    task_type = TaskType.CAUSAL_LM if generation else TaskType.SEQ_CLS
    targets = resolve_target_modules(base, cfg.adapter.target_modules)
    adapter = dataclasses.replace(cfg.adapter, target_modules=targets)
    model = build_peft_model(base, adapter, cfg.seed, task_type)
    algorithm = ALGORITHMS[cfg.algorithm]
    if algorithm.dual_adapter:
        add_local_adapter(model, adapter, cfg.seed)
        set_mix(model, *training_mix(cfg.feddpa))
    model = model.to(device)
    layout = make_layout(model, VARIANTS[cfg.adapter.variant], algorithm, cfg.federation.share_head)
    apply_trainable(model, layout)
    return model, layout


def prepare(cfg: RunConfig) -> Federation:
    """Load, split, tokenise and build the model for ``cfg``."""
    device = resolve_device(cfg.device)
    autocast_dtype(cfg.precision, device)  # fail before loading anything if unsupported
    data_dir = resolve_data_dir(cfg.data.data_dir)
    task: TaskData | InstructData
    if is_generation_task(cfg.data.task):
        task = load_instruct(
            cfg.data.task,
            data_dir,
            cfg.data.instruct_path,
            max_train_examples=cfg.data.max_train_examples,
            seed=cfg.seed,
        )
    else:
        task = load_task(
            cfg.data.task, data_dir, max_train_examples=cfg.data.max_train_examples, seed=cfg.seed
        )
    log.info(
        "task %s: %d train, %d dev (%s)", task.task, len(task.train), len(task.dev), task.source
    )
    client_train, client_eval = split_clients(cfg, task)
    generation = None
    base = None
    if isinstance(task, InstructData):
        train, dev, generation, base = prepare_generation(cfg, task)
    else:
        tokenizer = load_tokenizer(cfg.model.name)
        train = encode_split(task.train, tokenizer, cfg, "train")
        dev = encode_split(task.dev, tokenizer, cfg, "dev")
    model, layout = build_model(cfg, task.num_labels, device, base)
    return Federation(
        cfg=cfg,
        task=task,
        train=train,
        dev=dev,
        client_ids=[str(k) for k in range(cfg.data.num_clients)],
        client_train=client_train,
        client_eval=client_eval,
        client_refs=[
            reference_indices(part, cfg.feddpa.num_references, cfg.seed, k)
            for k, part in enumerate(client_train)
        ],
        model=model,
        layout=layout,
        init_shared=read_from(model, layout.shared),
        init_private=read_from(model, layout.private),
        frozen=read_from(model, layout.frozen),
        device=device,
        generation=generation,
    )


def sample_clients(client_ids: list[str], per_round: int, seed: int, round_idx: int) -> list[str]:
    """The clients taking part in a round, drawn without replacement from (seed, round)."""
    if per_round <= 0 or per_round >= len(client_ids):
        return list(client_ids)
    rng = np.random.default_rng([seed, round_idx, 7919])
    chosen = rng.choice(len(client_ids), size=per_round, replace=False)
    return [client_ids[i] for i in sorted(int(c) for c in chosen)]
