"""The local optimisation loop: plain PyTorch, a fresh optimizer per client round.

Optimizer state is not carried across rounds: after aggregation the shared parameters have
moved, and per-client moment estimates from the previous round would refer to other values. This
matches the paper's setup (its SGD has no state) and the usual federated practice.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

from fedsa.config.schema import OptimConfig
from fedsa.core.device import autocast


def make_optimizer(params: Sequence[torch.nn.Parameter], cfg: OptimConfig) -> torch.optim.Optimizer:
    """The configured optimizer over ``params``."""
    if cfg.name == "sgd":
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def train_steps(
    model: torch.nn.Module,
    params: Sequence[torch.nn.Parameter],
    batches: Iterable[dict[str, torch.Tensor]],
    cfg: OptimConfig,
    device: torch.device,
    dtype: torch.dtype | None = None,
) -> float:
    """One optimizer step per batch; returns the mean training loss over the steps.

    Args:
        model: a model whose forward takes the batch keys and returns ``.loss``.
        params: exactly the parameters to update (others must have ``requires_grad`` False).
        batches: padded batches as produced by :func:`fedsa.tasks.batching.collate`.
        cfg: optimizer settings.
        device: where the model lives.
        dtype: autocast the forward pass to this dtype (None: fp32). Only the forward runs under
            autocast; backward follows the forward's dtypes and the step updates fp32 params.
    """
    optimizer = make_optimizer(params, cfg)
    model.train()
    losses: list[torch.Tensor] = []  # kept on the device: no per-step sync with a GPU
    for batch in batches:
        batch = {k: v.to(device) for k, v in batch.items()}
        with autocast(device, dtype):
            loss = model(**batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
        optimizer.step()
        losses.append(loss.detach())
    if not losses:
        raise ValueError("train_steps got no batches")
    return float(torch.stack(losses).double().mean())
