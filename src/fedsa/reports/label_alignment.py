"""Do clients whose label mixes are alike also have alike B (or A)? The asymmetry's mechanism.

FedSA-LoRA's claim is that ``B`` carries client-specific knowledge. Under label skew the most
client-specific thing a client has is its label mix, so if the claim holds, the client x client
similarity of ``B`` (and of its round change) should follow the similarity of the clients' label
mixes, and ``A``'s should not. This module measures exactly that: per analysed round and kind,
the Pearson correlation over client pairs (off-diagonal entries) between the similarity matrix
of :mod:`fedsa.reports.analysis` and the cosine similarity of the clients' training label
histograms, rebuilt from the run's own config (same data, partitioner and seed).

Under IID every client has nearly the global mix, so the label matrix has almost no spread and
the correlation says little; it is reported all the same, with that caveat in docs/results.md.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fedsa.core.errors import DataError
from fedsa.reports.analysis import KINDS


def client_label_mixes(run_dir: Path) -> dict[str, list[int]]:
    """Each client's training label histogram, rebuilt from the run's config and data.

    Raises:
        DataError: If the run's task has no labels (generation) or uses task federations.
    """
    from fedsa.config.load import config_from_dict
    from fedsa.engine.prepare import split_clients
    from fedsa.engine.results import RunDir
    from fedsa.tasks.examples import TaskData
    from fedsa.tasks.glue import resolve_data_dir
    from fedsa.tasks.partition import label_histogram
    from fedsa.tasks.registry import task_for

    cfg = config_from_dict(RunDir.reopen(run_dir).read_config())
    if cfg.data.client_tasks:
        raise DataError(f"{run_dir} is a task federation: label mixes of different tasks differ")
    task = task_for(cfg.data.task).load(cfg, resolve_data_dir(cfg.data.data_dir))
    if not isinstance(task, TaskData):
        raise DataError(f"{run_dir}: task {cfg.data.task!r} has no labels to compare clients by")
    labels = [ex.label for ex in task.train]
    train, _ = split_clients(cfg, task)
    return {str(k): label_histogram(labels, s, task.num_labels) for k, s in enumerate(train)}


def label_similarity(mixes: Mapping[str, Sequence[int]], clients: Sequence[str]) -> np.ndarray:
    """Cosine similarity of the clients' label histograms, in the order of ``clients``."""
    missing = [c for c in clients if c not in mixes]
    if missing:
        raise DataError(f"no label mix for clients {missing}: the snapshots and data disagree")
    hist = np.asarray([mixes[c] for c in clients], dtype=np.float64)  # (clients, labels)
    unit = hist / np.maximum(np.linalg.norm(hist, axis=1, keepdims=True), 1e-12)
    return np.asarray(unit @ unit.T)


def pair_correlation(sim: np.ndarray, labels: np.ndarray) -> float | None:
    """Pearson r over the off-diagonal pairs (None with under 3 pairs or no spread)."""
    rows, cols = np.triu_indices(sim.shape[0], k=1)
    x, y = sim[rows, cols], labels[rows, cols]
    if x.size < 3 or float(np.ptp(x)) <= 1e-12 or float(np.ptp(y)) <= 1e-12:
        return None
    r = float(np.corrcoef(x, y)[0, 1])
    return None if math.isnan(r) else r


def alignment(result: Mapping[str, Any], mixes: Mapping[str, Sequence[int]]) -> dict[int, Any]:
    """Per analysed round, each kind's correlation with the label similarity (None: undefined).

    Args:
        result: an :func:`fedsa.reports.analysis.analyze_run` result (with its matrices).
        mixes: :func:`client_label_mixes` of the same run.
    """
    out: dict[int, Any] = {}
    for rnd in result["rounds"]:
        labels = label_similarity(mixes, [str(c) for c in rnd["clients"]])
        out[int(rnd["round"])] = {
            kind: pair_correlation(np.asarray(rnd["mean"][kind]["matrix"]), labels)
            for kind in KINDS
            if kind in rnd["mean"]
        }
    return out
