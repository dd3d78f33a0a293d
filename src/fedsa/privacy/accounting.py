"""How much privacy a run spends: dp-accounting's RDP or PLD accountant over its rounds.

A round releases the noised sum of the clipped updates of Poisson-sampled clients (each client
takes part with probability ``q = clients_per_round / num_clients``, 1 when every client takes
part): :class:`dp_accounting.dp_event.PoissonSampledDpEvent` of a Gaussian mechanism with noise
multiplier ``z``, composed over the rounds, under add-or-remove-one-client adjacency. A round
that is skipped (too few valid updates) still counts: the accountant charges what was sampled.
"""

from __future__ import annotations

import functools
from typing import Any

from fedsa.config.schema import RunConfig
from fedsa.core.errors import ConfigError


def _dp() -> Any:
    try:
        import dp_accounting
    except ImportError:
        raise ConfigError(
            "privacy.mode = 'client' needs dp-accounting: pip install 'fedsa[privacy]'"
        ) from None
    return dp_accounting


def sampling_rate(cfg: RunConfig) -> float:
    """``q``: the probability that a client takes part in a round."""
    per_round, n = cfg.federation.clients_per_round, cfg.data.num_clients
    return 1.0 if per_round <= 0 or per_round >= n else per_round / n


def expected_participants(cfg: RunConfig) -> float:
    """The fixed denominator of the noised mean: ``q * num_clients``."""
    return sampling_rate(cfg) * cfg.data.num_clients


def _event(q: float, z: float, rounds: int) -> Any:
    ev = _dp().dp_event
    once = ev.GaussianDpEvent(z)
    if q < 1.0:
        once = ev.PoissonSampledDpEvent(q, once)
    return ev.SelfComposedDpEvent(once, rounds)


def _accountant(kind: str) -> Any:
    dp = _dp()
    return dp.rdp.RdpAccountant() if kind == "rdp" else dp.pld.PLDAccountant()


@functools.lru_cache(maxsize=256)
def epsilon_of(q: float, z: float, rounds: int, delta: float, kind: str = "rdp") -> float:
    """The epsilon (at ``delta``) of ``rounds`` rounds at sampling rate q and noise multiplier z.

    ``z = 0`` (no noise) has no finite epsilon: ``inf``.
    """
    if rounds <= 0:
        return 0.0
    if z <= 0:
        return float("inf")
    acc = _accountant(kind)
    acc.compose(_event(q, z, rounds))
    return float(acc.get_epsilon(delta))


@functools.lru_cache(maxsize=64)
def calibrated(q: float, rounds: int, epsilon: float, delta: float, kind: str = "rdp") -> float:
    """The smallest noise multiplier whose ``rounds`` rounds spend at most ``epsilon``."""
    dp = _dp()
    make = dp.rdp.RdpAccountant if kind == "rdp" else dp.pld.PLDAccountant
    z = dp.calibrate_dp_mechanism(make, lambda s: _event(q, s, rounds), epsilon, delta)
    return float(z)


def noise_multiplier(cfg: RunConfig) -> float:
    """``privacy.noise_multiplier``, or the one calibrated to ``privacy.target_epsilon``."""
    p = cfg.privacy
    if p.target_epsilon <= 0:
        return p.noise_multiplier
    q, rounds = sampling_rate(cfg), cfg.federation.rounds
    return calibrated(q, rounds, p.target_epsilon, p.target_delta, p.accountant)


def spent(cfg: RunConfig, rounds: int) -> dict[str, float | None]:
    """What a record says after ``rounds`` rounds: epsilon, delta, noise multiplier, q.

    Without noise there is no finite epsilon: it is recorded as None (JSON null).
    """
    p, z, q = cfg.privacy, noise_multiplier(cfg), sampling_rate(cfg)
    eps = epsilon_of(q, z, rounds, p.target_delta, p.accountant)
    return {
        "epsilon": eps if eps != float("inf") else None,
        "delta": p.target_delta,
        "noise_multiplier": z,
        "sampling_rate": q,
    }
