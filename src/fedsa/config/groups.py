"""Config groups kept apart from the schema: evaluation, analysis, tracking, privacy, methods'.

Kept apart only so that :mod:`fedsa.config.schema` stays one screenful per group; every field is
addressed as usual (``tracking.report_to``, ``privacy.clip_norm``).
"""

from __future__ import annotations

from dataclasses import dataclass

TRACKERS = ("tensorboard", "mlflow", "wandb", "trackio")


@dataclass(frozen=True)
class TrackingConfig:
    """Trackers mirroring ``metrics.jsonl`` (docs/tracking.md); not part of the config digest."""

    report_to: tuple[str, ...] = ()
    """Experiment trackers to log to: any of ``tensorboard``, ``mlflow``, ``wandb``, ``trackio``
    (each an optional extra, e.g. ``pip install 'fedsa[mlflow]'``); empty: none."""
    project: str = "fedsa"
    """MLflow experiment, W&B project and trackio project the run is logged under."""
    run_name: str = ""
    """Name of the run in the trackers (empty: the run directory's name, ``<algorithm>/seed_<s>``
    for ``fedsa compare``'s seed folders)."""
    mlflow_uri: str = ""
    """MLflow tracking URI (empty: a local SQLite store, ``RUN_DIR/mlflow/mlflow.db``)."""
    wandb_mode: str = "offline"
    """``offline`` (written under ``RUN_DIR/wandb``, upload later with ``wandb sync``) or
    ``online``; offline by default so that nothing leaves the machine unless asked."""


@dataclass(frozen=True)
class PrivacyConfig:
    """Client-level differential privacy on the shared tensors (DP-FedAvg; docs/privacy.md)."""

    mode: str = "none"
    """``none``, or ``client``: each participant's update of the shared tensors is clipped to
    ``clip_norm`` (one L2 norm over all shared tensors), the server adds Gaussian noise of std
    ``noise_multiplier * clip_norm`` to their sum and divides by the expected number of
    participants; clients are then sampled independently with probability
    ``clients_per_round / num_clients`` (Poisson sampling, what the accountant assumes)."""
    clip_norm: float = 1.0
    """L2 bound ``S`` of one client's update of the shared tensors."""
    noise_multiplier: float = 1.0
    """Noise std over ``clip_norm`` (``z``); ignored when ``target_epsilon`` is set."""
    target_epsilon: float = 0.0
    """If > 0: the noise multiplier is calibrated so that the whole run ends at this epsilon."""
    target_delta: float = 1e-5
    """The delta of the (epsilon, delta) guarantee; keep it below 1 / num_clients."""
    accountant: str = "rdp"
    """``rdp`` (Renyi DP) or ``pld`` (privacy loss distributions, tighter), from dp-accounting."""
    noise_seed: int = 0
    """0: noise from the operating system's randomness (the only safe choice in deployment);
    > 0: noise drawn from (noise_seed, round), reproducible, for tests and research only."""

    secure_aggregation: bool = False
    """Flower only: mask every client's upload with SecAgg+ so that the server only ever sees
    the round's sum (docs/privacy.md); sum-based methods only; combinable with ``mode``."""
    secagg_shares: float = 1.0
    """SecAgg+: the fraction of a round's participants each client shares its key with (1: all,
    plain SecAgg; smaller: SecAgg+'s sparse neighbourhoods, cheaper for many clients)."""
    secagg_threshold: float = 0.6
    """SecAgg+: the fraction of a client's shares needed to rebuild its masks (higher: more
    colluders needed to unmask it, fewer dropouts tolerated); at least 2 shares."""
    secagg_clip_range: float = 0.0
    """SecAgg+: values are quantised on ``[-range, range]``; 0: ``clip_norm`` under DP (a bound no
    coordinate can exceed), else 8.0; a client whose update leaves it refuses the round."""
    secagg_max_weight: float = 1000.0
    """SecAgg+ with ``federation.weighting = 'examples'``: the largest example count a client may
    have (weights are quantised as ``count / max_weight``); 1 is used with uniform weights."""

    @property
    def private(self) -> bool:
        """Whether client-level DP is on."""
        return self.mode == "client"


@dataclass(frozen=True)
class FedSVDConfig:
    """FedSVD (arXiv 2505.12805)."""

    svd_period: int = 1
    """Re-factorise ``B_bar A`` by SVD every this many rounds (1, as in the paper's scripts)."""


@dataclass(frozen=True)
class FloristConfig:
    """FLoRIST (arXiv 2506.09199)."""

    tau: float = 0.9
    """Energy threshold in (0, 1]: keep the fewest singular components of the stacked
    aggregate whose squared singular values reach ``tau`` of the total (1: exact, FLoRA)."""


@dataclass(frozen=True)
class HetLoRAConfig:
    """HetLoRA's rank self-pruning (arXiv 2401.06432); off by default."""

    prune_gamma: float = 0.0
    """0: no pruning. Else, in [0.5, 1): after local training a client whose trailing
    components (those past ``ceil(prune_gamma * r)`` of its current rank r) carry less than
    ``prune_threshold`` of its update's norm drops them, for this round and every later one."""
    prune_threshold: float = 0.05
    """Share of ``||s B A||_F`` (over all adapted layers) below which the tail is pruned."""


@dataclass(frozen=True)
class EvalConfig:
    """Per-client personalised evaluation."""

    every: int = 1
    """Evaluate every N rounds; the final round is always evaluated."""
    batch_size: int = 64
    """Evaluation batch size (batches are length-sorted, so large sizes waste little padding)."""
    clients: str = "all"
    """Whom to evaluate: ``all`` clients, or only the round's ``participants`` (for thousands of
    clients, where evaluating everyone would cost more than the round's training; the summary
    then describes the final round's participants)."""
    initial: bool = False
    """Evaluate every client before any training, recorded as round 0 (in-process engine)."""
    holdout_clients: int = 0
    """Unseen clients: the last N client ids never train or send anything; after the last round
    each takes the shared tensors, trains its private part for ``adapt_steps`` steps from the
    common initial state, and is scored on its own shard, reported apart (``eval_unseen``)."""
    adapt_steps: int = 0
    """Local steps of an unseen client's private part (0: the global model, untouched)."""


@dataclass(frozen=True)
class AnalysisConfig:
    """What the engine keeps for later analysis (``fedsa analyze``)."""

    snapshot_rounds: tuple[int, ...] = ()
    """Rounds after whose local training each client's adapter tensors (before and after) are
    saved under ``RUN_DIR/snapshots/round_<t>/<client>.safetensors``."""
