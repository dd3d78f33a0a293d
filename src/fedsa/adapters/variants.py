"""Adapter variants (LoRA, rsLoRA, VeRA) built with PEFT's public API, and the name contract.

A variant is the second, independent axis next to the algorithm: it builds the PEFT config and
says which parameter names form the ``A`` side and the ``B`` side of the low-rank update. The head
is PEFT's ``modules_to_save`` copy of the classifier. Combined with an
:class:`~fedsa.algorithms.Algorithm`, this gives a :class:`Layout`: every adapter parameter is
exactly one of *shared*, *private* or *frozen*. The engine only ever moves whole layouts, which is
what makes leaking one client's ``B`` into another client impossible by construction.

The names PEFT gives parameters are the contract with PEFT; ``tests/test_adapters.py`` pins them so
that an upgrade which renames internals fails loudly instead of silently sharing the wrong tensors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from peft import LoraConfig, PeftConfig, PeftModel, TaskType, VeraConfig, get_peft_model
from transformers import PreTrainedModel

from fedsa.config.schema import AdapterConfig
from fedsa.core.slots import A_LOCAL, B_LOCAL, HEAD, A, B, Slot

HEAD_MARKER = ".modules_to_save.default."
"""PEFT wraps the task head (``classifier``/``score``) and trains its copy under this name."""
LOCAL_ADAPTER = "local"
"""PEFT adapter name of FedDPA's second adapter (the first is PEFT's ``default``)."""


def _lora(cfg: AdapterConfig, seed: int, task_type: TaskType, rs: bool) -> PeftConfig:
    return LoraConfig(
        task_type=task_type,
        r=cfg.r,
        lora_alpha=cfg.alpha,  # type: ignore[arg-type]  # PEFT annotates int, accepts float
        lora_dropout=cfg.dropout,
        target_modules=list(cfg.target_modules),
        use_rslora=rs,
    )


def _vera(cfg: AdapterConfig, seed: int, task_type: TaskType) -> PeftConfig:
    # The frozen random projections are regenerated from projection_prng_key on every client,
    # so they never need to be sent; save_projection only affects PEFT's own checkpoints.
    return VeraConfig(
        task_type=task_type,
        r=cfg.r,
        vera_dropout=cfg.dropout,
        target_modules=list(cfg.target_modules),
        projection_prng_key=seed,
        d_initial=cfg.vera_d_initial,
        save_projection=False,
    )


@dataclass(frozen=True)
class Variant:
    """An adapter family: how to build it and which names form its A and B sides."""

    name: str
    a_marker: str
    """Substring that identifies A-side parameters (``.lora_A.``, ``.vera_lambda_d.``)."""
    b_marker: str
    """Substring that identifies B-side parameters (``.lora_B.``, ``.vera_lambda_b.``)."""
    build: Callable[[AdapterConfig, int, TaskType], PeftConfig]
    summary: str
    paper: str

    def slot_of(self, name: str) -> Slot | None:
        """The slot a parameter belongs to, or None for a base-model weight.

        PEFT also gives a second adapter its own (unused) copy of the head; that copy maps to None.
        """
        local = f".{LOCAL_ADAPTER}." in name
        if self.a_marker in name:
            return A_LOCAL if local else A
        if self.b_marker in name:
            return B_LOCAL if local else B
        if HEAD_MARKER in name:
            return HEAD
        return None


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant(
            name="lora",
            a_marker=".lora_A.",
            b_marker=".lora_B.",
            build=lambda c, s, t: _lora(c, s, t, rs=False),
            summary="dW = (alpha/r) B A; A (r x d_in), B (d_out x r)",
            paper="Hu et al., LoRA, ICLR 2022, arXiv 2106.09685",
        ),
        Variant(
            name="rslora",
            a_marker=".lora_A.",
            b_marker=".lora_B.",
            build=lambda c, s, t: _lora(c, s, t, rs=True),
            summary="LoRA with rank-stabilised scale alpha/sqrt(r)",
            paper="Kalajdzievski, A Rank Stabilization Scaling Factor for LoRA, arXiv 2312.03732",
        ),
        Variant(
            name="vera",
            a_marker=".vera_lambda_d.",
            b_marker=".vera_lambda_b.",
            build=_vera,
            summary="frozen shared random A, B; trained vectors lambda_d (A), lambda_b (B side)",
            paper="Kopiczko et al., VeRA, ICLR 2024, arXiv 2310.11454",
        ),
    )
}


def build_peft_model(
    base: PreTrainedModel, cfg: AdapterConfig, seed: int, task_type: TaskType = TaskType.SEQ_CLS
) -> PeftModel:
    """Wrap ``base`` with the configured adapter, initialised deterministically from ``seed``.

    One seeded initialisation gives every client the same starting A, B and head: the engine takes
    a snapshot right after this call and hands it to all clients.
    """
    variant = VARIANTS[cfg.variant]
    torch.manual_seed(seed)
    model = get_peft_model(base, variant.build(cfg, seed, task_type))
    assert isinstance(model, PeftModel)
    return model
