"""What client-level DP needs of a config, checked when it is loaded (one-line errors)."""

from __future__ import annotations

from fedsa.algorithms.registry import ALGORITHMS
from fedsa.config.schema import RunConfig
from fedsa.core.errors import ConfigError
from fedsa.privacy.accounting import noise_multiplier


def validate_privacy(cfg: RunConfig) -> None:
    """Known values; and, with ``privacy.mode = 'client'``, a method and weighting it applies to."""
    p = cfg.privacy
    for key, value, allowed in (
        ("privacy.mode", p.mode, ("none", "client")),
        ("privacy.accountant", p.accountant, ("rdp", "pld")),
    ):
        if value not in allowed:
            raise ConfigError(f"{key} = {value!r} is unknown: allowed: {', '.join(allowed)}")
    if p.clip_norm <= 0:
        raise ConfigError(f"privacy.clip_norm = {p.clip_norm!r} is invalid: it must be > 0")
    numbers: tuple[tuple[str, float], ...] = (
        ("noise_multiplier", p.noise_multiplier),
        ("target_epsilon", p.target_epsilon),
        ("noise_seed", p.noise_seed),
    )
    for key, number in numbers:
        if number < 0:
            raise ConfigError(f"privacy.{key} = {number!r} is invalid: it must be >= 0")
    if not 0 < p.target_delta < 1:
        raise ConfigError(f"privacy.target_delta = {p.target_delta!r} must be in (0, 1)")
    if not p.private:
        return
    algo = ALGORITHMS[cfg.algorithm]
    why = ""
    if algo.pooled:
        why = "it pools every client's data in one place; there is no release to protect"
    elif not algo.shared_slots(cfg.federation.share_head):
        why = "it shares nothing, so nothing leaves a client"
    elif algo.individual_uploads:
        why = f"its server {algo.individual_uploads}, so noise on a sum cannot protect them"
    if why:
        raise ConfigError(
            f"privacy.mode = 'client' does not apply to {cfg.algorithm}: {why}; use a sum-based "
            "method (fedsa-lora, ffa-lora, fedit, feddpa, fedsvd, rolora, ...)"
        )
    if cfg.federation.weighting != "uniform":
        raise ConfigError(
            "privacy.mode = 'client' needs federation.weighting = 'uniform': example-count "
            "weights let one client move the mean by more than the clip bound allows"
        )
    try:
        noise_multiplier(cfg)  # imports dp-accounting; calibrates a target epsilon once
    except (ValueError, RuntimeError) as exc:
        raise ConfigError(
            f"privacy.target_epsilon = {p.target_epsilon!r} cannot be reached in "
            f"{cfg.federation.rounds} rounds ({exc}): raise it or set privacy.noise_multiplier"
        ) from None
