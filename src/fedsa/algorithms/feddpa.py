"""FedDPA (Yang et al., NeurIPS 2024, arXiv 2403.19211): a global and a local adapter per client.

What is implemented (FedDPA-T with the paper's instance-wise inference):

* Two LoRA adapters on the same layers, built with PEFT's public API: ``default`` (global: its A
  and B are averaged by the server like FedIT) and ``local`` (never leaves the client). Both are
  active; the layer output is ``W0 x + (1 - a) s B_g A_g x + a s B_l A_l x``, the mix set with
  PEFT's ``LoraLayer.set_scale``.
* Everything FedDPA needs beyond the data of :class:`~fedsa.algorithms.spec.Algorithm` lives here,
  as its hooks: the second adapter (:func:`extend_model`), the two training phases
  (:func:`schedule`) and the instance-wise evaluation (:func:`evaluate_instance_wise`).
* Training (FedDPA-T): each round a client first trains the global adapter (and head) with the
  local one frozen, then the local adapter (and head) with the global one frozen. The round's
  ``local_steps`` are split between the two phases (``feddpa.local_fraction``), so FedDPA gets the
  same step budget as every other method. During training ``a = feddpa.train_weight`` (0.5, as in
  the authors' code).
* Inference, ``feddpa.combination = "instance"``: for a test input x, ``a(x) = w * mean_j
  cos(r(x), r(x_j))`` over ``feddpa.num_references`` examples x_j drawn once per client (seeded)
  from its own training shard, with ``w = feddpa.max_weight`` (0.5 in the authors' code) and
  clipped to [0, w]. ``r`` is the mean over non-padding tokens of the last hidden layer computed
  with the local adapter alone, as the authors compute it with the local adapter active (they take
  the last token of a causal LM; mean pooling is the encoder analogue). Each test input is then
  classified with its own mix.
* ``feddpa.combination = "sum"``: the common simplification ``a`` fixed, both adapters added at
  full weight (``W0 + dW_g + dW_l``) in training and inference.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from peft import LoraConfig
from peft.tuners.lora import LoraLayer

from fedsa.adapters.variants import LOCAL_ADAPTER
from fedsa.algorithms.hooks import ClientEval, Phase, RoundPlan, task_evaluation
from fedsa.algorithms.spec import Algorithm
from fedsa.config.schema import AdapterConfig, FedDPAConfig, RunConfig
from fedsa.core.slots import A_LOCAL, B_LOCAL, HEAD, A, B, Slot
from fedsa.tasks.batching import Encoded, collate, length_sorted_chunks

GLOBAL_ADAPTER = "default"


def add_local_adapter(model: torch.nn.Module, cfg: AdapterConfig, seed: int) -> None:
    """Add the local adapter (same rank, scale and layers as the global one) and activate both."""
    torch.manual_seed(seed + 1)
    local = LoraConfig(
        r=cfg.r,
        lora_alpha=cfg.alpha,  # type: ignore[arg-type]  # PEFT annotates int, accepts float
        lora_dropout=cfg.dropout,
        target_modules=list(cfg.target_modules),
        use_rslora=cfg.variant == "rslora",
    )
    model.add_adapter(LOCAL_ADAPTER, local)  # type: ignore[operator]
    for module in model.modules():
        if isinstance(module, LoraLayer):
            module.set_adapter([GLOBAL_ADAPTER, LOCAL_ADAPTER])


def set_mix(model: torch.nn.Module, global_weight: float, local_weight: float) -> None:
    """Scale the two adapters' contributions: ``global_weight * dW_g + local_weight * dW_l``."""
    for module in model.modules():
        if isinstance(module, LoraLayer):
            module.set_scale(GLOBAL_ADAPTER, global_weight)
            module.set_scale(LOCAL_ADAPTER, local_weight)


def training_mix(cfg: FedDPAConfig) -> tuple[float, float]:
    """The (global, local) weights used while training and, for ``sum``, at inference."""
    if cfg.combination == "sum":
        return 1.0, 1.0
    return 1.0 - cfg.train_weight, cfg.train_weight


def instance_weights(
    test_repr: torch.Tensor, ref_repr: torch.Tensor, max_weight: float
) -> torch.Tensor:
    """``a_i = clip(w * mean_j cos(test_i, ref_j), 0, w)``.

    Args:
        test_repr: (N, H) representations of the inputs to classify.
        ref_repr: (M, H) representations of the client's reference training examples.
        max_weight: ``w``.

    Returns:
        (N,) local-adapter weights.
    """
    t = torch.nn.functional.normalize(test_repr.double(), dim=-1)  # (N, H)
    r = torch.nn.functional.normalize(ref_repr.double(), dim=-1)  # (M, H)
    cos = t @ r.T  # (N, M)
    return (max_weight * cos.mean(dim=1)).clamp(0.0, max_weight)


def representations(
    model: torch.nn.Module,
    data: Encoded,
    indices: Sequence[int],
    batch_size: int,
    device: torch.device,
) -> torch.Tensor:
    """(len(indices), H) mean-pooled last hidden states with the local adapter alone."""
    model.eval()
    set_mix(model, 0.0, 1.0)
    out = torch.empty(0)
    rows: dict[int, torch.Tensor] = {}
    with torch.inference_mode():
        for chunk in length_sorted_chunks(data, indices, batch_size):
            batch = {k: v.to(device) for k, v in collate(data, chunk).items() if k != "labels"}
            hidden = model(**batch, output_hidden_states=True).hidden_states[-1]  # (B, T, H)
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1)  # (B, H)
            for row, i in enumerate(chunk):
                rows[i] = pooled[row].float().cpu()
    out = torch.stack([rows[i] for i in indices]) if indices else out
    return out


def reference_indices(
    train_indices: Sequence[int], count: int, seed: int, client: int
) -> list[int]:
    """A fixed, seeded sample of a client's training examples to compare test inputs with."""
    rng = np.random.default_rng([seed, client, 4243])
    size = min(count, len(train_indices))
    return [int(i) for i in rng.choice(np.asarray(train_indices), size=size, replace=False)]


def extend_model(model: torch.nn.Module, adapter: AdapterConfig, cfg: RunConfig) -> None:
    """The model hook: add the local adapter and set the training mix."""
    add_local_adapter(model, adapter, cfg.seed)
    set_mix(model, *training_mix(cfg.feddpa))


def schedule(trains: frozenset[Slot], round_idx: int, cfg: RunConfig) -> RoundPlan:
    """Global adapter (and head) first, then the local adapter (and head), in one step budget.

    The local phase gets ``round(local_steps * feddpa.local_fraction)`` steps, so FedDPA has the
    same budget as every other method; a phase of 0 steps is skipped.
    """
    total = cfg.federation.local_steps
    local = round(total * cfg.feddpa.local_fraction)
    return RoundPlan(
        phases=(
            Phase(frozenset({A, B, HEAD}), total - local),
            Phase(frozenset({A_LOCAL, B_LOCAL, HEAD}), local),
        )
    )


def evaluate_instance_wise(e: ClientEval) -> dict[str, float]:
    """The evaluator hook: each evaluation input scored under its own adapter mix.

    With ``feddpa.combination = "sum"`` this is the task's plain evaluation. Otherwise the mix of
    input x is :func:`instance_weights` of its representation (from the task's model inputs: the
    zero-shot prompt for generation, never the reference answer) against the client's reference
    training examples. The mix differs per input, so the task scores inputs one at a time
    (``before_each`` sets each one's mix), with the metrics of the whole shard: balanced accuracy
    and macro-F1 from one confusion matrix, never a mean of one-input scores. The training mix
    is restored after.
    """
    cfg = e.cfg.feddpa
    if cfg.combination != "instance":
        return task_evaluation(e)
    task = e.task
    refs = reference_indices(e.train_indices, cfg.num_references, e.cfg.seed, e.client)
    weights = instance_weights(
        representations(e.model, task.inputs("dev"), e.eval_indices, task.batch_size, task.device),
        representations(e.model, task.inputs("train"), refs, task.batch_size, task.device),
        cfg.max_weight,
    )
    mix = dict(zip(e.eval_indices, weights.tolist(), strict=True))  # input index -> a(x)

    def set_input_mix(i: int) -> None:
        set_mix(e.model, 1.0 - mix[i], mix[i])

    metrics = task.evaluate(e.model, e.eval_indices, e.records, before_each=set_input_mix)
    set_mix(e.model, *training_mix(cfg))
    return {**metrics, "local_weight_mean": float(weights.mean())}


FEDDPA = Algorithm(
    name="feddpa",
    trains=frozenset({A, B, HEAD, A_LOCAL, B_LOCAL}),
    shares=frozenset({A, B}),
    head_configurable=True,
    summary="FedDPA-T: global adapter averaged, local adapter kept; instance-wise mix",
    paper="Yang et al., Dual-Personalizing Adapter for Federated Foundation Models, "
    "NeurIPS 2024, arXiv 2403.19211",
    variants=frozenset({"lora", "rslora"}),
    schedule=schedule,
    extend_model=extend_model,
    evaluate=evaluate_instance_wise,
)
