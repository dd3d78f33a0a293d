"""The statistics of one evaluation reported over clients.

The headline is the unweighted mean over clients, as in the paper; the example-weighted mean, the
worst client and the spread are reported next to it. Only the final round is summarised: no "best
round" is ever picked on the reported split.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

#: Per-client scores that are averaged over clients when every client has them.
SKEW_ROBUST = ("balanced_accuracy", "macro_f1", "prior_gain")


def summarize(per_client: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Unweighted mean (headline), example-weighted mean, min and std of client accuracy.

    Next to them, the unweighted means of the label-skew-robust scores (balanced accuracy,
    macro-F1 and the gain of accuracy over the client's majority prior) where every client has
    them (classification tasks).
    """
    accs = [m["accuracy"] for m in per_client.values()]
    sizes = [m["n"] for m in per_client.values()]
    mean = sum(accs) / len(accs)
    out = {
        "accuracy_mean": mean,
        "accuracy_weighted": sum(a * n for a, n in zip(accs, sizes, strict=True)) / sum(sizes),
        "accuracy_min": min(accs),
        "accuracy_std": math.sqrt(sum((a - mean) ** 2 for a in accs) / len(accs)),
        "loss_mean": sum(m["loss"] for m in per_client.values()) / len(per_client),
    }
    for key in SKEW_ROBUST:
        if all(key in m for m in per_client.values()):
            out[f"{key}_mean"] = sum(m[key] for m in per_client.values()) / len(per_client)
    return out
