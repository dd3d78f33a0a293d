"""Checks of a :class:`~fedsa.config.schema.RunConfig` that types alone cannot express.

Run by the loader (:mod:`fedsa.config.load`) on every config, so a bad value fails before any
data or model is loaded, with a one-line :class:`~fedsa.core.errors.ConfigError` naming the
key, the value and the fix.
"""

from __future__ import annotations

import difflib
import typing

from fedsa.adapters.variants import VARIANTS
from fedsa.algorithms.registry import ALGORITHMS
from fedsa.config.schema import BAD_KINDS, TRACKERS, FaultConfig, RunConfig, TrackingConfig
from fedsa.core.errors import ConfigError
from fedsa.core.slots import HEAD
from fedsa.models.causal_lm import SMOLLM2, TINY_LLAMA
from fedsa.privacy.checks import validate_privacy
from fedsa.tasks.glue import TASKS
from fedsa.tasks.instruct import GENERATION_TASKS


def _positive(key: str, value: float, *, allow_zero: bool = False) -> None:
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{key} = {value!r} is invalid: it must be {bound}")


def _choice(key: str, value: str, allowed: typing.Iterable[str]) -> None:
    allowed = sorted(allowed)
    if value not in allowed:
        hint = [a for a in allowed if a.startswith(value)] or difflib.get_close_matches(
            value, allowed, n=1
        )
        fix = f"did you mean {hint[0]!r}? " if hint else ""
        raise ConfigError(f"{key} = {value!r} is unknown: {fix}allowed: {', '.join(allowed)}")


def validate(cfg: RunConfig) -> None:
    """Check values that types alone cannot; raise a one-line ConfigError naming the key."""
    _choice("algorithm", cfg.algorithm, ALGORITHMS)
    _choice("data.task", cfg.data.task, [*TASKS, *GENERATION_TASKS])
    generative = cfg.data.task in GENERATION_TASKS
    if generative and cfg.model.name in ("tiny-bert", "minilm"):
        raise ConfigError(
            f"data.task = {cfg.data.task!r} needs a causal LM, not {cfg.model.name!r}: set "
            f"model.name to {SMOLLM2!r}, {TINY_LLAMA!r} or a causal-LM hub id"
        )
    if not generative and cfg.model.name in (SMOLLM2, TINY_LLAMA):
        raise ConfigError(
            f"model.name = {cfg.model.name!r} is a causal LM: use it with a generation task "
            f"({', '.join(GENERATION_TASKS)}) or pick a classifier such as 'minilm'"
        )
    _choice("adapter.variant", cfg.adapter.variant, VARIANTS)
    _choice("device", cfg.device, ("cpu", "cuda", "auto"))
    _choice("precision", cfg.precision, ("fp32", "bf16", "auto"))
    _choice("eval.clients", cfg.eval.clients, ("all", "participants"))
    _choice("data.partition", cfg.data.partition, ("iid", "dirichlet"))
    _choice("federation.weighting", cfg.federation.weighting, ("examples", "uniform"))
    _choice("optim.name", cfg.optim.name, ("adamw", "sgd"))
    _choice("model.dtype", cfg.model.dtype, ("float32", "bfloat16", "float16"))
    for key, value in (
        ("model.max_length", cfg.model.max_length),
        ("adapter.r", cfg.adapter.r),
        ("adapter.alpha", cfg.adapter.alpha),
        ("data.num_clients", cfg.data.num_clients),
        ("data.dirichlet_alpha", cfg.data.dirichlet_alpha),
        ("federation.rounds", cfg.federation.rounds),
        ("federation.local_steps", cfg.federation.local_steps),
        ("federation.batch_size", cfg.federation.batch_size),
        ("optim.lr", cfg.optim.lr),
        ("eval.every", cfg.eval.every),
        ("eval.batch_size", cfg.eval.batch_size),
        ("generate.max_new_tokens", cfg.generate.max_new_tokens),
        ("generate.batch_size", cfg.generate.batch_size),
    ):
        _positive(key, value)
    for key, value in (
        ("data.max_train_examples", cfg.data.max_train_examples),
        ("data.eval_examples_per_client", cfg.data.eval_examples_per_client),
        ("federation.clients_per_round", cfg.federation.clients_per_round),
        ("optim.weight_decay", cfg.optim.weight_decay),
        ("optim.momentum", cfg.optim.momentum),
        ("optim.max_grad_norm", cfg.optim.max_grad_norm),
        ("federation.max_update_norm", cfg.federation.max_update_norm),
        ("checkpoint.every", cfg.checkpoint.every),
        ("seed", cfg.seed),
        ("generate.few_shot", cfg.generate.few_shot),
    ):
        _positive(key, value, allow_zero=True)
    _choice("federation.align", cfg.federation.align, ("none", "rotation"))
    _positive("federation.align_lambda", cfg.federation.align_lambda)
    _positive("fedsvd.svd_period", cfg.fedsvd.svd_period)
    if not 0.0 < cfg.florist.tau <= 1.0:
        raise ConfigError(f"florist.tau = {cfg.florist.tau!r} must be in (0, 1]")
    gamma = cfg.hetlora.prune_gamma
    if gamma != 0.0 and not 0.5 <= gamma < 1.0:
        raise ConfigError(f"hetlora.prune_gamma = {gamma!r} must be 0 (off) or in [0.5, 1)")
    if not 0.0 < cfg.hetlora.prune_threshold < 1.0:
        raise ConfigError(
            f"hetlora.prune_threshold = {cfg.hetlora.prune_threshold!r} must be in (0, 1)"
        )
    _choice("feddpa.combination", cfg.feddpa.combination, ("instance", "sum"))
    _positive("feddpa.num_references", cfg.feddpa.num_references)
    for key, value in (
        ("feddpa.max_weight", cfg.feddpa.max_weight),
        ("feddpa.train_weight", cfg.feddpa.train_weight),
        ("feddpa.local_fraction", cfg.feddpa.local_fraction),
    ):
        if not 0.0 <= value <= 1.0:
            raise ConfigError(f"{key} = {value!r} must be in [0, 1]")
    if not 0.0 <= cfg.adapter.dropout < 1.0:
        raise ConfigError(f"adapter.dropout = {cfg.adapter.dropout!r} must be in [0, 1)")
    if not cfg.adapter.target_modules:
        raise ConfigError("adapter.target_modules is empty: name at least one layer, e.g. query")
    if cfg.federation.clients_per_round > cfg.data.num_clients:
        raise ConfigError(
            f"federation.clients_per_round = {cfg.federation.clients_per_round} exceeds "
            f"data.num_clients = {cfg.data.num_clients}: lower it or use 0 for all clients"
        )
    _positive("federation.min_clients", cfg.federation.min_clients)
    per_round = cfg.federation.clients_per_round or cfg.data.num_clients
    if cfg.federation.min_clients > per_round:
        raise ConfigError(
            f"federation.min_clients = {cfg.federation.min_clients} exceeds the {per_round} "
            "clients sampled per round: every round would be skipped; lower it"
        )
    _positive("checkpoint.keep", cfg.checkpoint.keep)
    _validate_holdout(cfg)
    _validate_faults(cfg.faults)
    _validate_tracking(cfg.tracking)
    validate_privacy(cfg)
    bad_rounds = [t for t in cfg.analysis.snapshot_rounds if not 1 <= t <= cfg.federation.rounds]
    if bad_rounds:
        raise ConfigError(
            f"analysis.snapshot_rounds has {bad_rounds}: rounds are numbered 1 to "
            f"federation.rounds = {cfg.federation.rounds}"
        )
    algo = ALGORITHMS[cfg.algorithm]
    if not algo.supports(cfg.adapter.variant):
        raise ConfigError(
            f"algorithm = {cfg.algorithm!r} does not support adapter.variant = "
            f"{cfg.adapter.variant!r}"
            + (f" ({algo.variant_note})" if algo.variant_note else "")
            + f": use one of {', '.join(sorted(algo.variants or ()))}"
        )
    _validate_alignment(cfg)
    _validate_ranks(cfg)
    _validate_client_tasks(cfg)
    if cfg.federation.share_head and not algo.head_configurable:
        raise ConfigError(
            f"federation.share_head = true is not allowed for {cfg.algorithm}: its head is "
            "always kept on the client; remove the key"
        )


def _validate_holdout(cfg: RunConfig) -> None:
    """``eval.holdout_clients`` leaves at least the round's sample of clients to train."""
    held, ev = cfg.eval.holdout_clients, cfg.eval
    _positive("eval.holdout_clients", held, allow_zero=True)
    _positive("eval.adapt_steps", ev.adapt_steps, allow_zero=True)
    seen = cfg.data.num_clients - held
    if held and seen < max(1, cfg.federation.clients_per_round, cfg.federation.min_clients):
        raise ConfigError(
            f"eval.holdout_clients = {held} leaves {seen} of data.num_clients = "
            f"{cfg.data.num_clients} to train, fewer than a round needs: lower it"
        )
    if ev.adapt_steps and not held:
        raise ConfigError("eval.adapt_steps needs eval.holdout_clients > 0 (whom to adapt)")


def _validate_ranks(cfg: RunConfig) -> None:
    """``adapter.client_ranks``: positive ranks, a LoRA variant, a method that takes them."""
    ranks = cfg.adapter.client_ranks
    if not ranks:
        return
    for i, r in enumerate(ranks):
        _positive(f"adapter.client_ranks[{i}]", r)
    if cfg.adapter.variant not in ("lora", "rslora"):
        raise ConfigError(
            f"adapter.client_ranks needs adapter.variant lora or rslora, not "
            f"{cfg.adapter.variant!r}: VeRA's rank is its shared frozen projections'"
        )
    if not ALGORITHMS[cfg.algorithm].heterogeneous_ranks:
        able = sorted(n for n, a in ALGORITHMS.items() if a.heterogeneous_ranks)
        raise ConfigError(
            f"algorithm = {cfg.algorithm!r} cannot take adapter.client_ranks (its rule combines "
            f"factors of one shape): use one of {', '.join(able)}, or remove the key"
        )
    p = cfg.privacy
    if cfg.federation.align != "none" or p.mode != "none" or p.secure_aggregation:
        raise ConfigError(
            "adapter.client_ranks cannot be combined with federation.align, privacy.mode or "
            "privacy.secure_aggregation (each needs one shape for every client's update)"
        )


def _validate_client_tasks(cfg: RunConfig) -> None:
    """``data.client_tasks``: classification tasks, each with a client, and a local head."""
    tasks, data = cfg.data.client_tasks, cfg.data
    if not tasks:
        return
    for i, name in enumerate(tasks):
        if name not in TASKS:
            raise ConfigError(
                f"data.client_tasks[{i}] = {name!r} is not a classification task: use GLUE "
                f"tasks ({', '.join(t for t in TASKS if t != 'synthetic')})"
            )
    if data.task in GENERATION_TASKS:
        raise ConfigError(
            f"data.client_tasks are classification tasks but data.task = {data.task!r} is a "
            "generation task: set data.task to a classification task or drop data.client_tasks"
        )
    if len(tasks) > data.num_clients:
        raise ConfigError(
            f"data.client_tasks names {len(tasks)} tasks for data.num_clients = "
            f"{data.num_clients}: give every task a client (raise num_clients or list fewer)"
        )
    algo = ALGORITHMS[cfg.algorithm]
    if HEAD in algo.shared_slots(cfg.federation.share_head):
        fix = (
            "set federation.share_head = false"
            if cfg.federation.share_head
            else ("use a method that keeps the head on the client")
        )
        raise ConfigError(
            f"algorithm = {cfg.algorithm!r} with data.client_tasks would share one head across "
            f"different label spaces: {fix}"
        )


def _validate_alignment(cfg: RunConfig) -> None:
    """Rotation needs both factors trained together, one averaged, and LoRA's matrices."""
    algo = ALGORITHMS[cfg.algorithm]
    if cfg.federation.align != "rotation" or algo.aligned:
        return
    if not algo.alignable:
        able = sorted(n for n, a in ALGORITHMS.items() if a.alignable)
        raise ConfigError(
            f"federation.align = 'rotation' does not apply to {cfg.algorithm}: it needs a method "
            f"that trains A and B together and averages one ({', '.join(able)}); remove the key"
        )
    if cfg.adapter.variant == "vera":
        raise ConfigError(
            "federation.align = 'rotation' needs adapter.variant lora or rslora: VeRA's diagonal "
            "vectors cannot be rotated"
        )


def _validate_tracking(tracking: TrackingConfig) -> None:
    """Known tracker names, each once; whether its package is installed is checked at run start."""
    for name in tracking.report_to:
        _choice("tracking.report_to", name, TRACKERS)
    twice = sorted({n for n in tracking.report_to if tracking.report_to.count(n) > 1})
    if twice:
        raise ConfigError(f"tracking.report_to names {', '.join(twice)} twice: list each once")
    _choice("tracking.wandb_mode", tracking.wandb_mode, ("offline", "online"))
    if not tracking.project.strip():
        raise ConfigError("tracking.project is empty: name the project, e.g. 'fedsa'")


def _validate_faults(faults: FaultConfig) -> None:
    probs = {"train_error": faults.train_error, "lost_reply": faults.lost_reply}
    probs["bad_update"] = faults.bad_update
    for key, value in probs.items():
        if not 0.0 <= value <= 1.0:
            raise ConfigError(f"faults.{key} = {value!r} is a probability: it must be in [0, 1]")
    if sum(probs.values()) > 1.0 + 1e-12:
        raise ConfigError(
            f"faults: train_error + lost_reply + bad_update = {sum(probs.values()):.3g} > 1: "
            "a client has at most one fault per round; lower them"
        )
    for kind in faults.bad_kinds:
        _choice("faults.bad_kinds", kind, BAD_KINDS)
    if faults.bad_update > 0 and not faults.bad_kinds:
        raise ConfigError("faults.bad_kinds is empty but faults.bad_update > 0: name a kind")
