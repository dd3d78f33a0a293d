"""A client's own label space on one shared-shape head (``data.client_tasks``).

In a task-heterogeneous federation every client has its own GLUE task, so its own number of
labels ``n_k``, but every process holds one model whose head has ``L = max(n_k)`` outputs. A
client with ``n_k < L`` gets its head's outputs ``n_k..L-1`` set to ``-inf`` by a forward hook on
the head: its softmax, loss and argmax then range over its own ``n_k`` labels only, exactly as a
head of ``n_k`` outputs would, and the masked rows get zero gradients (their softmax weight is 0):
only weight decay, where configured, moves them, and they stay masked. The head is always
private in such a federation, so one client's rows never reach another
(``tests/test_client_tasks.py`` checks loss, logits and gradients).
"""

from __future__ import annotations

from typing import Any

import torch
from peft.utils import ModulesToSaveWrapper

MASK_ATTR = "fedsa_label_mask"


class LabelMask:
    """The forward hook: fills the head's outputs past ``labels`` with ``-inf`` (0: none)."""

    def __init__(self) -> None:
        """No mask until :func:`set_label_space` names a label count."""
        self.labels = 0

    def __call__(self, module: torch.nn.Module, args: Any, output: torch.Tensor) -> torch.Tensor:
        """``output`` (..., L) with ``output[..., labels:] = -inf`` when a mask is set."""
        if not self.labels or self.labels >= output.shape[-1]:
            return output
        keep = torch.arange(output.shape[-1], device=output.device) < self.labels  # (L,)
        return output.masked_fill(~keep, float("-inf"))


def head_of(model: torch.nn.Module) -> torch.nn.Module | None:
    """The PEFT-wrapped task head (``classifier``/``score``), None for models without one."""
    heads = [m for m in model.modules() if isinstance(m, ModulesToSaveWrapper)]
    return heads[0] if len(heads) == 1 else None


def set_label_space(model: torch.nn.Module, labels: int) -> None:
    """Restrict the head to its first ``labels`` outputs (0: all of them).

    The hook is registered on first use and kept; later calls only change its label count, so
    switching between clients of different tasks costs nothing.
    """
    head = head_of(model)
    if head is None:
        return
    mask = getattr(head, MASK_ATTR, None)
    if mask is None:
        if not labels:
            return
        mask = LabelMask()
        head.register_forward_hook(mask)
        setattr(head, MASK_ATTR, mask)
    mask.labels = labels
