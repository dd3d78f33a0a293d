"""Run configuration schema: grouped frozen dataclasses, one docstring per field.

One source of truth: each field's docstring is its documentation, the TOML key is the field name,
and ``key=value`` overrides address the same fields with dotted paths (``adapter.variant=vera``).
Only types live here, so that every registry can name its settings without importing the loader;
values are checked on load (:mod:`fedsa.config.validation`), before any model is loaded, with a
one-line :class:`~fedsa.core.errors.ConfigError` naming key, value and fix.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from fedsa.config.groups import (
    TRACKERS,
    AnalysisConfig,
    EvalConfig,
    FedSVDConfig,
    FloristConfig,
    HetLoRAConfig,
    PrivacyConfig,
    TrackingConfig,
)

__all__ = [
    "TRACKERS",
    "AnalysisConfig",
    "EvalConfig",
    "PrivacyConfig",
    "TrackingConfig",
]  # re-exported: every group is here


@dataclass(frozen=True)
class ModelConfig:
    """Which pretrained model to adapt."""

    name: str = "tiny-bert"
    """Alias (``minilm``, ``tiny-bert``), Hugging Face model id, or local directory."""
    max_length: int = 128
    """Tokens per example after truncation (the paper uses 128; prompt + response for LMs)."""
    dtype: str = "float32"
    """Causal LMs: dtype of the frozen base weights, ``float32``, ``bfloat16`` or ``float16``
    (adapters stay float32). Classifiers always load in float32."""
    gradient_checkpointing: bool = False
    """Causal LMs: recompute activations in the backward pass to save memory (large models)."""


@dataclass(frozen=True)
class AdapterConfig:
    """The low-rank adapter: variant and its hyper-parameters."""

    variant: str = "lora"
    """Adapter family: ``lora``, ``rslora`` or ``vera`` (see ``fedsa list``)."""
    r: int = 8
    """Rank of the update ``B @ A``."""
    alpha: float = 16.0
    """LoRA scale numerator: ``s = alpha / r`` (lora) or ``alpha / sqrt(r)`` (rslora)."""
    dropout: float = 0.05
    """Dropout on the adapter input (LoRA and rsLoRA; VeRA uses it too)."""
    target_modules: tuple[str, ...] = ("query", "value")
    """Names of the linear layers that get adapters. When the default (``query``, ``value``)
    matches no layer of the model, the architecture's query/value layers are used instead
    (``q_proj``/``v_proj`` for Llama-style; see ``fedsa.models.causal_lm.DEFAULT_TARGETS``)."""
    vera_d_initial: float = 0.1
    """Initial value of VeRA's ``lambda_d`` vector."""
    client_ranks: tuple[int, ...] = ()
    """Client k's rank ``client_ranks[k % len]``, scale ``alpha/r_k`` (rsLoRA ``alpha/sqrt(r_k)``);
    empty: all ``r``. Only some methods take it (:mod:`fedsa.adapters.ranks`)."""


@dataclass(frozen=True)
class DataConfig:
    """Task, data location and how it is split across clients."""

    task: str = "synthetic"
    """Task id: a GLUE task (``sst2``, ``rte``, ...), ``synthetic`` (no files needed), or a
    generation task for causal LMs (``gsm8k``, ``instruct``, ``arith``)."""
    data_dir: str = ""
    """Folder with ``glue/<TASK>/{train,dev}.tsv``; empty: ``$FEDSA_DATA_DIR``, else the hub."""
    num_clients: int = 3
    """Number of clients the training set is split across."""
    instruct_path: str = ""
    """Task ``instruct``: folder holding ``train.jsonl`` and ``test.jsonl`` (fields ``prompt``,
    ``response``)."""
    partition: str = "dirichlet"
    """``iid`` or ``dirichlet`` (label skew with concentration ``dirichlet_alpha``; for generation
    tasks the labels are response-length quartiles, see ``fedsa.tasks.instruct``)."""
    dirichlet_alpha: float = 0.5
    """Dirichlet concentration; smaller means more non-IID (the paper uses 0.5)."""
    max_train_examples: int = 0
    """If > 0, a seeded random subsample of the training set of this size (0: all)."""
    eval_examples_per_client: int = 0
    """Size of each client's evaluation shard drawn from dev (0: dev size // num_clients)."""
    cache: bool = True
    """Cache tokenised splits on disk in ``$FEDSA_CACHE_DIR`` (default ``~/.cache/fedsa``), keyed
    by tokenizer, task, max length and a checksum of the examples; a repeated run skips
    tokenisation. Entries are verified on load and rebuilt if corrupt (false: always tokenise)."""
    client_tasks: tuple[str, ...] = ()
    """Client k's own GLUE task ``client_tasks[k % len]`` with its own labels and a local head;
    empty: every client has ``data.task`` (:mod:`fedsa.tasks.client_tasks`)."""


@dataclass(frozen=True)
class FederationConfig:
    """Rounds, participation, local work and aggregation weights."""

    rounds: int = 10
    """Number of communication rounds."""
    clients_per_round: int = 0
    """Clients sampled each round, without replacement (0: all clients)."""
    local_steps: int = 10
    """Optimizer steps each sampled client takes per round."""
    batch_size: int = 16
    """Training batch size."""
    weighting: str = "examples"
    """Aggregation weights: ``examples`` (n_k / sum n_j, the paper) or ``uniform``."""
    share_head: bool = False
    """Send and average the classification head too (fedit, ffa-lora only; default: keep local)."""
    min_clients: int = 1
    """Fewest valid updates a round needs to aggregate; with fewer the round is skipped (the
    shared state stays, no client state changes) and recorded as skipped in the metrics."""
    max_update_norm: float = 0.0
    """Reject an update whose L2 norm over all shared tensors exceeds this (0: no bound)."""
    group_by_length: bool = False
    """Reorder each client round's sampled examples so that a batch holds similar lengths (less
    padding, same examples per round, still seeded); false keeps the plain random batches."""
    align: str = "none"
    """``rotation``: before uploading, clients rotate their factors towards the global ones
    (FedRot-LoRA; methods that train A and B and average one); ``none``: no alignment."""
    align_lambda: float = 1.0
    """Softened rotation ``(1 - lambda) I + lambda R`` (re-orthogonalised); >= 1: the hard one."""


@dataclass(frozen=True)
class OptimConfig:
    """Local optimizer; a fresh one is created for each client round."""

    name: str = "adamw"
    """``adamw`` or ``sgd`` (the paper's; needs far more steps on CPU-sized budgets)."""
    lr: float = 1e-3
    """Learning rate."""
    weight_decay: float = 0.0
    """Decoupled (adamw) or L2 (sgd) weight decay."""
    momentum: float = 0.0
    """SGD momentum (ignored by adamw)."""
    max_grad_norm: float = 0.0
    """Clip the gradient norm to this value (0: no clipping)."""


@dataclass(frozen=True)
class GenerateConfig:
    """Generation tasks: greedy decoding, exact match of the final answer (see generate.py)."""

    max_new_tokens: int = 256
    """Most tokens generated per evaluation prompt (decoding stops earlier at end of turn)."""
    few_shot: int = 0
    """Fixed training examples shown as earlier turns before each prompt (the paper: 8)."""
    batch_size: int = 8
    """Prompts decoded together (left-padded)."""


@dataclass(frozen=True)
class FedDPAConfig:
    """FedDPA (arXiv 2403.19211): how the global and local adapters are combined."""

    combination: str = "instance"
    """``instance``: the paper's instance-wise weight at inference, ``(1-a) dW_global + a dW_local``
    with ``a = max_weight * mean cosine(test repr, local training reprs)``; ``sum``: plain sum."""
    max_weight: float = 0.5
    """Scale ``w`` of the instance-wise weight (the authors' default 0.5)."""
    train_weight: float = 0.5
    """Weight ``a`` of the local adapter while training (``instance`` only; the authors use 0.5)."""
    num_references: int = 5
    """Local training examples whose representations each test input is compared with."""
    local_fraction: float = 0.5
    """Share of each round's local steps spent on the local adapter (the rest: global adapter)."""


@dataclass(frozen=True)
class CheckpointConfig:
    """Crash safety: what ``fedsa run --resume RUN_DIR`` continues from."""

    every: int = 1
    """Write a checkpoint after every N rounds (0: never; the last round is always written)."""
    keep: int = 2
    """How many of the newest checkpoints to keep (older ones are deleted after a new one is
    safely on disk; 2 lets a corrupt newest one fall back to the previous)."""


BAD_KINDS = ("nan", "shape", "keys", "dtype", "scale")


@dataclass(frozen=True)
class FaultConfig:
    """Injected client failures, for testing and for studying robustness (all off by default).

    Each sampled client draws at most one fault per round from a generator seeded by (seed,
    round, client), so a run with faults is as reproducible as one without.
    """

    train_error: float = 0.0
    """Probability that a client raises during local training (its round's work is lost)."""
    lost_reply: float = 0.0
    """Probability that a client trains but its reply never reaches the server."""
    bad_update: float = 0.0
    """Probability that a client's reply is corrupted in one of ``bad_kinds``."""
    bad_kinds: tuple[str, ...] = BAD_KINDS
    """Corruptions to draw from: ``nan`` (a non-finite value), ``shape`` (a truncated tensor),
    ``keys`` (a missing tensor and a private one leaked in), ``dtype`` (float64), ``scale``
    (times 1e6: caught only by ``federation.max_update_norm``)."""


NOT_COMPUTED = ("tracking",)
"""Config groups that change nothing a run computes: outside its digest and resume check."""
LATER = {"privacy": PrivacyConfig, "florist": FloristConfig, "hetlora": HetLoRAConfig}
"""Groups (and, below, fields: default as JSON) added after digests were first recorded: left
out of the digest and the Flower experiment key at their defaults, so earlier digests hold."""
LATER_FIELDS: dict[tuple[str, str], Any] = {
    ("adapter", "client_ranks"): [],
    ("data", "client_tasks"): [],
    ("eval", "initial"): False,
    ("eval", "holdout_clients"): 0,
    ("eval", "adapt_steps"): 0,
}


@dataclass(frozen=True)
class RunConfig:
    """A complete experiment: what a ``config.json`` in every run directory holds."""

    algorithm: str = "fedsa-lora"
    """Federated algorithm (``fedsa list`` shows them all)."""
    seed: int = 0
    """Seeds initialisation, partition, client sampling, batches and dropout."""
    device: str = "cpu"
    """``cpu``, ``cuda`` or ``auto`` (cuda when available)."""
    precision: str = "fp32"
    """Forward-pass compute: ``fp32``, ``bf16`` (autocast; parameters and optimizer state stay
    fp32) or ``auto`` (bf16 on a CUDA device that supports it, else fp32)."""
    model: ModelConfig = field(default_factory=ModelConfig)
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    data: DataConfig = field(default_factory=DataConfig)
    federation: FederationConfig = field(default_factory=FederationConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    feddpa: FedDPAConfig = field(default_factory=FedDPAConfig)
    fedsvd: FedSVDConfig = field(default_factory=FedSVDConfig)
    florist: FloristConfig = field(default_factory=FloristConfig)
    hetlora: HetLoRAConfig = field(default_factory=HetLoRAConfig)
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    faults: FaultConfig = field(default_factory=FaultConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict (tuples become lists)."""
        data: dict[str, Any] = jsonable(dataclasses.asdict(self))
        return data

    def sha256(self) -> str:
        """Fingerprint of what the run computes: equal digests, equal runs (reuse, resume).

        The :data:`NOT_COMPUTED` groups are left out, so that logging to another tracker neither
        invalidates a checkpoint nor a finished run, and digests made before they existed hold.
        """
        data = {k: v for k, v in self.to_dict().items() if k not in NOT_COMPUTED}
        drop_defaults(data)
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def drop_defaults(tree: dict[str, Any]) -> None:
    """Remove from a ``to_dict`` tree the :data:`LATER` groups that hold their defaults."""
    for key, group in LATER.items():
        if key in tree and tree[key] == jsonable(dataclasses.asdict(group())):
            del tree[key]
    for (key, name), default in LATER_FIELDS.items():
        if tree.get(key, {}).get(name, None) == default:
            del tree[key][name]


def jsonable(value: Any) -> Any:
    """``value`` with every tuple turned into a list, recursively (JSON's own shapes)."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value
