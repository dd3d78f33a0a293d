"""What a finished run reports: final-round numbers, totals, parameter counts, a reference.

Kept apart from the round loop so that every engine (in-process, centralized, Flower) builds the
same ``summary.json`` from its metrics history.
"""

from __future__ import annotations

from typing import Any

from fedsa.core.params import numel
from fedsa.engine.prepare import Federation
from fedsa.tasks.client_tasks import client_task


def param_counts(fed: Federation) -> dict[str, int]:
    """Scalars per client in each group: what trains, what is sent each way per round."""
    return {
        "trainable": numel(fed.init_shared) + numel(fed.init_private),
        "shared": numel(fed.init_shared),
        "private": numel(fed.init_private),
        "frozen_adapter": numel(fed.frozen),
    }


def majority_baseline(fed: Federation, clients: list[str] | None = None) -> float | None:
    """Mean client accuracy of always predicting the client's majority training label.

    With label-skewed shards a personalised head can score high by learning the label prior
    alone; this reference shows how much of an accuracy is more than that. None for tasks
    without class labels (generation: the partition keys are length buckets).
    """
    who = fed.client_ids if clients is None else clients
    accs = [
        fed.scorer.prior(
            fed.client_train[fed.client_ids.index(c)], fed.client_eval[fed.client_ids.index(c)]
        )
        for c in who
    ]
    known = [a for a in accs if a is not None]
    return sum(known) / len(known) if known and len(known) == len(accs) else None


def unseen_summary(fed: Federation, unseen: dict[str, Any]) -> dict[str, Any]:
    """The unseen clients' final numbers, apart from the seen ones (``eval.holdout_clients``)."""
    out: dict[str, Any] = {
        "final_unseen": {k: v for k, v in unseen.items() if k != "clients"},
        "final_unseen_clients": unseen["clients"],
    }
    majority = majority_baseline(fed, list(unseen["clients"]))
    if majority is not None:
        out["majority_baseline_unseen"] = majority
    return out


def robustness_counts(history: list[dict[str, Any]]) -> dict[str, int]:
    """Totals of failed clients, rejected updates and skipped rounds over a run."""
    return {
        "failed_clients": sum(len(r.get("failed", {})) for r in history),
        "rejected_updates": sum(len(r.get("rejected", {})) for r in history),
        "skipped_rounds": sum(bool(r.get("skipped")) for r in history),
    }


def client_task_map(fed: Federation) -> dict[str, str]:
    """Each client's own task under ``data.client_tasks``."""
    return {c: client_task(fed.cfg, c) for c in fed.client_ids}


def build_summary(fed: Federation, history: list[dict[str, Any]], wall_s: float) -> dict[str, Any]:
    """Final-round numbers (never a best round), totals and parameter counts."""
    final = history[-1]
    ev = final["eval"]
    majority = majority_baseline(fed, list(ev["clients"]))  # whom the final round scored
    unseen = final.get("eval_unseen")
    return {
        "algorithm": fed.cfg.algorithm,
        "variant": fed.cfg.adapter.variant,
        "task": fed.task.task,
        **({"client_tasks": client_task_map(fed)} if fed.cfg.data.client_tasks else {}),
        "model": fed.cfg.model.name,
        "seed": fed.cfg.seed,
        "rounds": final["round"],
        "num_clients": len(fed.client_ids),
        "client_train_sizes": {
            c: len(p) for c, p in zip(fed.client_ids, fed.client_train, strict=True)
        },
        "client_eval_sizes": {
            c: len(p) for c, p in zip(fed.client_ids, fed.client_eval, strict=True)
        },
        "final": {k: v for k, v in ev.items() if k != "clients"},
        "final_clients": ev["clients"],
        **({} if majority is None else {"majority_baseline": majority}),
        **({} if unseen is None else unseen_summary(fed, unseen)),
        "total_bytes_up": final["cum_bytes_up"],
        "total_bytes_down": final["cum_bytes_down"],
        "mb_up": final["cum_bytes_up"] / 1e6,
        "mb_down": final["cum_bytes_down"] / 1e6,
        "params": param_counts(fed),
        **robustness_counts(history),
        **({"privacy": final["privacy"]} if "privacy" in final else {}),
        "wall_s": wall_s,
        "config_sha256": fed.cfg.sha256(),
    }
