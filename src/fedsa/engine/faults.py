"""Injected client failures: a client that crashes, a reply that is lost, an update that is bad.

Real federations lose clients all the time; the engine must survive that without losing anyone's
private state or letting garbage into the shared tensors. These faults let tests and users
exercise exactly those paths. The plan is a pure function of (seed, round, client), so a run with
faults is reproducible and resumes bitwise like any other.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from fedsa.config.schema import FaultConfig
from fedsa.core.params import Tensors, clone

TRAIN_ERROR = "train_error"
LOST_REPLY = "lost_reply"
BAD_UPDATE = "bad_update"


class ClientFailure(RuntimeError):
    """A client failed during its round; the engine drops its work and carries on.

    Only this exception is treated as a client failure: any other exception in the engine is a
    bug and stops the run with its traceback.
    """


class FaultPlan:
    """Which client fails how in which round, drawn from (seed, round, client)."""

    def __init__(self, cfg: FaultConfig, seed: int) -> None:
        """Keep the probabilities; nothing is drawn until :meth:`fault` is asked."""
        self.cfg = cfg
        self.seed = seed

    @property
    def active(self) -> bool:
        """Whether any fault can happen at all."""
        return self.cfg.train_error + self.cfg.lost_reply + self.cfg.bad_update > 0

    def _rng(self, round_idx: int, client_index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, round_idx, client_index, 4099])

    def fault(self, round_idx: int, client_index: int) -> str | None:
        """``train_error``, ``lost_reply``, ``bad_update`` or None for this client this round."""
        if not self.active:
            return None
        u = float(self._rng(round_idx, client_index).random())
        edges = (
            (TRAIN_ERROR, self.cfg.train_error),
            (LOST_REPLY, self.cfg.lost_reply),
            (BAD_UPDATE, self.cfg.bad_update),
        )
        acc = 0.0
        for name, p in edges:
            acc += p
            if u < acc:
                return name
        return None

    def bad_kind(self, round_idx: int, client_index: int) -> str:
        """Which corruption a ``bad_update`` fault applies."""
        rng = self._rng(round_idx, client_index)
        rng.random()  # the draw used by :meth:`fault`
        return self.cfg.bad_kinds[int(rng.integers(len(self.cfg.bad_kinds)))]


def corrupt(
    upload: Mapping[str, torch.Tensor], private: Mapping[str, torch.Tensor], kind: str
) -> Tensors:
    """A copy of ``upload`` damaged the way a faulty or malicious client would damage it.

    Args:
        upload: the client's genuine shared tensors.
        private: its private tensors (``keys`` leaks one of them into the upload).
        kind: one of :data:`fedsa.config.BAD_KINDS`.
    """
    bad = clone(upload)
    if not bad:
        return {"unexpected": torch.zeros(1)}
    name = sorted(bad)[0]
    if kind == "nan":
        bad[name].view(-1)[0] = float("nan")
    elif kind == "shape":
        bad[name] = bad[name][..., :-1].clone() if bad[name].dim() else bad[name].reshape(1)
    elif kind == "keys":
        del bad[name]
        leak = sorted(private)[0] if private else "unexpected"
        bad[leak] = private[leak].clone() if private else torch.zeros(1)
    elif kind == "dtype":
        bad[name] = bad[name].double()
    elif kind == "scale":
        bad = {k: v * 1e6 for k, v in bad.items()}
    else:
        raise ValueError(f"unknown corruption {kind!r}")
    return bad
