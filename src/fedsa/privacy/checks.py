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
    _validate_secure(cfg)
    if not p.private:
        return
    why = _not_sum_based(cfg)
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


def _not_sum_based(cfg: RunConfig) -> str:
    """Why the method's release is not one sum of per-client updates ('' when it is)."""
    algo = ALGORITHMS[cfg.algorithm]
    if algo.pooled:
        return "it pools every client's data in one place; there is no release to protect"
    if not algo.shared_slots(cfg.federation.share_head):
        return "it shares nothing, so nothing leaves a client"
    if algo.individual_uploads:
        return f"its server {algo.individual_uploads}, so a sum cannot stand in for them"
    return ""


def _validate_secure(cfg: RunConfig) -> None:
    """SecAgg+'s settings, and that the method's server needs no more than the sum."""
    p = cfg.privacy
    for key, frac in (("secagg_shares", p.secagg_shares), ("secagg_threshold", p.secagg_threshold)):
        if not 0 < frac <= 1:
            raise ConfigError(f"privacy.{key} = {frac!r} is invalid: it must be in (0, 1]")
    if p.secagg_clip_range < 0:
        raise ConfigError(
            f"privacy.secagg_clip_range = {p.secagg_clip_range!r} is invalid: it must be >= 0 "
            "(0: automatic)"
        )
    if p.secagg_max_weight < 1:
        raise ConfigError(
            f"privacy.secagg_max_weight = {p.secagg_max_weight!r} is invalid: it must be >= 1"
        )
    if not p.secure_aggregation:
        return
    why = _not_sum_based(cfg)
    if why:
        raise ConfigError(
            f"privacy.secure_aggregation does not apply to {cfg.algorithm}: {why}; use a "
            "sum-based method (fedsa-lora, ffa-lora, fedit, feddpa, fedsvd, rolora, ...)"
        )
    if cfg.federation.max_update_norm > 0:
        raise ConfigError(
            "privacy.secure_aggregation hides each update from the server, which cannot then "
            "check federation.max_update_norm: set it to 0 (privacy.mode = 'client' bounds "
            "every update on the client instead)"
        )
    if cfg.data.num_clients < 2:
        raise ConfigError(
            "privacy.secure_aggregation needs data.num_clients >= 2: a sum of one update is "
            "the update"
        )


def check_in_process(cfg: RunConfig) -> None:
    """The in-process simulator has no server apart from the clients: SecAgg+ is Flower's."""
    if cfg.privacy.secure_aggregation:
        raise ConfigError(
            "privacy.secure_aggregation runs on Flower only (`fedsa flower local` or `fedsa "
            "flower run`): in-process simulation has no separate server to hide updates from"
        )
