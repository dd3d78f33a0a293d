"""Scoring one client's personalised model on its own evaluation shard (both engines).

The algorithm's evaluator decides how a model is scored (FedDPA mixes adapters per input); next
to its metrics every classification client gets its majority prior (what always predicting its
majority training label scores on the same shard) and its accuracy's gain over it, so that a
score a label-skewed shard gives away is visible.
"""

from __future__ import annotations

from typing import Any

from fedsa.algorithms.hooks import ClientEval
from fedsa.core.device import autocast, autocast_dtype
from fedsa.engine.prepare import Federation


def evaluate_client(
    fed: Federation, k: int, records: list[dict[str, Any]] | None = None
) -> dict[str, float]:
    """Client ``k``'s metrics with whatever adapter state the model holds now.

    The algorithm's evaluator decides how (FedDPA mixes its adapters per input); by default it is
    the task's own scorer, which appends what each prompt got to ``records`` where it keeps any.
    """
    cfg = fed.cfg
    request = ClientEval(
        fed.model, fed.scorer, k, fed.client_train[k], fed.client_eval[k], cfg, records
    )
    with autocast(fed.device, autocast_dtype(cfg.precision, fed.device)):
        metrics = dict(fed.algorithm.evaluate(request))
    prior = fed.scorer.prior(fed.client_train[k], fed.client_eval[k])
    if prior is not None:  # what always predicting its majority training label scores
        metrics.update(majority=prior, prior_gain=metrics["accuracy"] - prior)
    return metrics
