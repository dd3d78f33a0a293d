"""Classification scores that survive label skew: balanced accuracy and macro-F1.

With label-skewed shards one label can fill 85-97% of a client's data, and always predicting it
scores that much accuracy. Balanced accuracy (the mean recall over the labels present in the
client's evaluation shard) scores that predictor ``1 / (number of labels present)``, and macro-F1
(the mean F1 over the labels present in the labels or the predictions, as scikit-learn's
``f1_score(average="macro")``) scores it near ``1 / (2 x labels)``. Both come from the confusion
matrix the evaluation already counts, so they cost nothing; scikit-learn (and scipy) would be a
heavy dependency for two formulas, and ``tests/test_scores.py`` checks both against it.
"""

from __future__ import annotations

import numpy as np


def confusion(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> np.ndarray:
    """``C[i, j]`` = examples of true label i predicted as j, shape (num_classes, num_classes)."""
    flat = labels.astype(np.int64) * num_classes + preds.astype(np.int64)
    counts = np.bincount(flat, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def balanced_accuracy(conf: np.ndarray) -> float:
    """Mean recall over the labels that occur (rows with at least one example)."""
    support = conf.sum(axis=1)
    present = support > 0
    if not present.any():
        return 0.0
    recall = np.diag(conf)[present] / support[present]
    return float(recall.mean())


def macro_f1(conf: np.ndarray) -> float:
    """Mean F1 over the labels that occur as a label or as a prediction (0 where undefined)."""
    tp = np.diag(conf).astype(np.float64)
    support, predicted = conf.sum(axis=1), conf.sum(axis=0)
    used = (support + predicted) > 0
    if not used.any():
        return 0.0
    denom = (support + predicted)[used]
    f1 = np.where(denom > 0, 2 * tp[used] / np.maximum(denom, 1), 0.0)
    return float(f1.mean())


def skew_scores(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> dict[str, float]:
    """``balanced_accuracy`` and ``macro_f1`` of ``preds`` against ``labels``."""
    conf = confusion(labels, preds, num_classes)
    return {"balanced_accuracy": balanced_accuracy(conf), "macro_f1": macro_f1(conf)}
