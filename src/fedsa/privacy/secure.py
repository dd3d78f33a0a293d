"""The math on either side of secure aggregation: what a client masks, what the server releases.

Under SecAgg+ the server learns one thing per round: the weighted mean of what the surviving
participants masked. So each client masks its *update* ``x_k = upload_k - received`` (float64,
every shared tensor in sorted name order), clipped to ``privacy.clip_norm`` on the client when
DP is on (the server can no longer clip what it cannot see). From the mean the server rebuilds
the round's release exactly as :func:`fedsa.privacy.mechanism.private_rule` does in the clear:

- without DP: ``shared + sum_k w_k x_k / sum_k w_k``, the method's weighted mean;
- with DP (uniform weights): ``shared + (sum_k x_k + N(0, (z S)^2)) / (q N)``, the same noise
  draw as in-process for a fixed ``privacy.noise_seed``.

The inner server rule then sees uploads that all equal the release, as under DP. Only the
quantisation of SecAgg+ (step ``2 R / 2^22`` per client and coordinate, stochastic rounding)
separates the result from the in-process one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from fedsa.algorithms.hooks import Upload
from fedsa.config.schema import RunConfig
from fedsa.core.errors import UpdateError
from fedsa.core.params import Tensors
from fedsa.privacy.accounting import expected_participants, noise_multiplier
from fedsa.privacy.mechanism import add_noise, clip_update, noise_generator, release

#: Flower's SecAgg+ defaults: values are quantised to ``[0, 2^22)`` and masked modulo ``2^32``.
QUANTIZATION_RANGE = 1 << 22
MODULUS_RANGE = 1 << 32
#: The quantisation range without DP (Flower's default), where no bound on an update is known.
DEFAULT_CLIP_RANGE = 8.0


def clip_range(cfg: RunConfig) -> float:
    """``R``: SecAgg+ quantises every masked value on ``[-R, R]``."""
    p = cfg.privacy
    if p.secagg_clip_range > 0:
        return p.secagg_clip_range
    return p.clip_norm if p.private else DEFAULT_CLIP_RANGE


def max_weight(cfg: RunConfig) -> float:
    """The largest aggregation weight: 1 with uniform weights, else ``secagg_max_weight``."""
    return 1.0 if cfg.federation.weighting == "uniform" else cfg.privacy.secagg_max_weight


def quantization_step(cfg: RunConfig) -> float:
    """One quantisation step of a client's masked value (before dividing by the weight)."""
    return 2.0 * clip_range(cfg) / QUANTIZATION_RANGE


def client_update(
    upload: Mapping[str, torch.Tensor],
    received: Mapping[str, torch.Tensor],
    cfg: RunConfig,
    weight: float,
) -> Tensors:
    """What a client hands to secure aggregation: its update, clipped under DP, sorted by name.

    Raises:
        UpdateError: the weight exceeds ``max_weight`` or a scaled value leaves ``[-R, R]``
            (SecAgg+ would clip it silently and corrupt the sum): the client refuses the round.
    """
    names = sorted(upload)
    delta = {n: upload[n].double() - received[n].double() for n in names}
    if cfg.privacy.private:
        delta, _ = clip_update(delta, cfg.privacy.clip_norm)
    top = max_weight(cfg)
    if not 0 < weight <= top:
        raise UpdateError(
            f"aggregation weight {weight:g} is outside (0, {top:g}]: raise "
            "privacy.secagg_max_weight to at least this client's example count"
        )
    peak = max((float(t.abs().max()) for t in delta.values() if t.numel()), default=0.0)
    bound = clip_range(cfg)
    if not math.isfinite(peak) or peak * weight / top > bound:
        raise UpdateError(
            f"update value {peak:.4g} (x weight {weight / top:.3g}) leaves SecAgg+'s range "
            f"[-{bound:g}, {bound:g}]: raise privacy.secagg_clip_range"
        )
    return {n: delta[n] for n in names}


def as_arrays(update: Mapping[str, torch.Tensor]) -> list[np.ndarray]:
    """The update as the ordered float64 arrays SecAgg+ masks (sorted names)."""
    return [update[n].detach().cpu().double().numpy() for n in sorted(update)]


def released_uploads(
    mean: Sequence[np.ndarray],
    names: Sequence[str],
    clients: Sequence[str],
    shared: Mapping[str, torch.Tensor],
    cfg: RunConfig,
    round_idx: int,
) -> list[Upload]:
    """The round's release from SecAgg+'s weighted mean of ``clients``' masked updates.

    Args:
        mean: ``sum_k w_k x_k / sum_k w_k``, one array per name of ``names`` (sorted).
        names: the shared tensors the updates cover.
        clients: the participants whose updates the sum holds.
        shared: the global shared tensors every participant received.
        cfg: the run config (DP settings).
        round_idx: the round (seeds the DP noise with ``privacy.noise_seed``).
    """
    if list(names) != sorted(names) or len(mean) != len(names):
        raise UpdateError(f"secure aggregate holds {len(mean)} arrays for {len(names)} tensors")
    step: Tensors = {}
    for n, arr in zip(names, mean, strict=True):
        if tuple(arr.shape) != tuple(shared[n].shape):
            raise UpdateError(f"secure aggregate of {n} has shape {arr.shape}")
        step[n] = torch.from_numpy(np.asarray(arr, dtype=np.float64).copy())
    p = cfg.privacy
    if p.private:  # uniform weights: the mean times the count is the sum of clipped updates
        total = {n: t * len(clients) for n, t in step.items()}
        std = noise_multiplier(cfg) * p.clip_norm
        gen = noise_generator(p.noise_seed, round_idx)
        step = add_noise(total, std, expected_participants(cfg), gen)
    released = release(shared, step)
    return [Upload(c, released, 1.0, dict(shared)) for c in clients]
