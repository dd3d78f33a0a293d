"""Per-client personalised evaluation and the statistics reported over clients.

Each client is evaluated with its own model (global shared tensors + its private tensors) on its
own evaluation shard. The headline is the unweighted mean over clients, as in the paper; the
example-weighted mean, the worst client and the spread are reported next to it. Only the final
round is summarised: no "best round" is ever picked on the reported split.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch

from fedsa.batching import Encoded, collate, length_sorted_chunks


def evaluate(
    model: torch.nn.Module,
    data: Encoded,
    indices: Sequence[int],
    batch_size: int,
    device: torch.device,
) -> dict[str, float]:
    """Accuracy and mean loss of ``model`` on ``data[indices]``."""
    model.eval()
    correct = 0
    loss_sum = 0.0
    with torch.inference_mode():
        for chunk in length_sorted_chunks(data, indices, batch_size):
            batch = {k: v.to(device) for k, v in collate(data, chunk).items()}
            out = model(**batch)
            pred = out.logits.argmax(dim=-1)  # (B,)
            correct += int((pred == batch["labels"]).sum())
            loss_sum += float(out.loss) * len(chunk)
    n = len(indices)
    return {"accuracy": correct / n, "loss": loss_sum / n, "n": float(n)}


def summarize(per_client: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Unweighted mean (headline), example-weighted mean, min and std of client accuracy."""
    accs = [m["accuracy"] for m in per_client.values()]
    sizes = [m["n"] for m in per_client.values()]
    mean = sum(accs) / len(accs)
    return {
        "accuracy_mean": mean,
        "accuracy_weighted": sum(a * n for a, n in zip(accs, sizes, strict=True)) / sum(sizes),
        "accuracy_min": min(accs),
        "accuracy_std": math.sqrt(sum((a - mean) ** 2 for a in accs) / len(accs)),
        "loss_mean": sum(m["loss"] for m in per_client.values()) / len(per_client),
    }
