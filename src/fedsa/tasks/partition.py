"""Client partitions of a labelled dataset (IID and label-Dirichlet) and per-client eval shards.

Every function is deterministic for a seed, terminates in bounded time, never returns an empty
client, and raises :class:`~fedsa.core.errors.DataError` when a request is impossible.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from fedsa.config.schema import DataConfig
from fedsa.core.errors import DataError

logger = logging.getLogger(__name__)

METHODS = ("iid", "dirichlet")
_MAX_DIRICHLET_ATTEMPTS = 10


def _check_clients(num_examples: int, num_clients: int) -> None:
    if num_clients < 1:
        raise DataError(f"num_clients is {num_clients}: set it to 1 or more")
    if num_clients > num_examples:
        raise DataError(
            f"cannot split {num_examples} examples among {num_clients} clients without empty "
            "clients: use fewer clients or more training examples"
        )


def _sorted_lists(parts: Sequence[Sequence[int] | np.ndarray]) -> list[list[int]]:
    return [sorted(int(i) for i in p) for p in parts]


def partition_iid(labels: Sequence[int], num_clients: int, seed: int) -> list[list[int]]:
    """Split shuffled indices as evenly as possible (client sizes differ by at most one).

    Args:
        labels: Label of every example (only its length matters here).
        num_clients: Number of clients.
        seed: Seed of the shuffle.

    Returns:
        Sorted example indices per client.

    """
    _check_clients(len(labels), num_clients)
    perm = np.random.default_rng(seed).permutation(len(labels))
    return _sorted_lists(np.array_split(perm, num_clients))


def _dirichlet_draw(
    by_label: list[np.ndarray], num_clients: int, alpha: float, rng: np.random.Generator
) -> list[list[int]]:
    """One label-Dirichlet draw: each label's indices split by Dir(alpha) client proportions."""
    parts: list[list[int]] = [[] for _ in range(num_clients)]
    for idx in by_label:
        shuffled = rng.permutation(idx)
        props = rng.dirichlet(np.full(num_clients, alpha))
        if not np.all(np.isfinite(props)) or props.sum() <= 0:  # underflow at tiny alpha
            props = np.zeros(num_clients)
            props[rng.integers(num_clients)] = 1.0
        cuts = (np.cumsum(props)[:-1] * len(shuffled)).astype(int)
        for client, chunk in enumerate(np.split(shuffled, cuts)):
            parts[client].extend(int(i) for i in chunk)
    return parts


def partition_dirichlet(
    labels: Sequence[int], num_clients: int, alpha: float, seed: int
) -> list[list[int]]:
    """Label-Dirichlet split (as in FedSA-LoRA / FederatedScope), smaller alpha = more skew.

    The usual implementation resamples until every client is non-empty, which never finishes for
    small alpha with many clients. Here at most a few draws are tried; if all leave some client
    empty, the last draw is repaired by moving single random examples from the currently largest
    client to each empty one, which barely changes the skew and always terminates.

    Args:
        labels: Integer label of every example.
        num_clients: Number of clients.
        alpha: Dirichlet concentration (> 0).
        seed: Seed of all randomness.

    Returns:
        Sorted, non-empty example indices per client; together they cover every index once.

    Raises:
        DataError: num_clients < 1, more clients than examples, or alpha <= 0.

    """
    _check_clients(len(labels), num_clients)
    if not alpha > 0:
        raise DataError(
            f"dirichlet alpha is {alpha}: set data.dirichlet_alpha to a positive number"
        )
    rng = np.random.default_rng(seed)
    arr = np.asarray(labels, dtype=np.int64)
    by_label = [np.flatnonzero(arr == c) for c in np.unique(arr)]
    parts: list[list[int]] = []
    for _ in range(_MAX_DIRICHLET_ATTEMPTS):
        parts = _dirichlet_draw(by_label, num_clients, alpha, rng)
        if all(parts):
            return _sorted_lists(parts)
    empty = [c for c, p in enumerate(parts) if not p]
    logger.info(
        "dirichlet(alpha=%g) left %d of %d clients empty after %d draws; moving one example "
        "to each from the largest clients",
        alpha, len(empty), num_clients, _MAX_DIRICHLET_ATTEMPTS,
    )  # fmt: skip
    for client in empty:
        donor = max(range(num_clients), key=lambda c: (len(parts[c]), -c))
        parts[client].append(parts[donor].pop(int(rng.integers(len(parts[donor])))))
    return _sorted_lists(parts)


def partition(
    labels: Sequence[int], num_clients: int, method: str, alpha: float, seed: int
) -> list[list[int]]:
    """Dispatch to :func:`partition_iid` or :func:`partition_dirichlet` by name.

    Raises:
        DataError: Unknown method, or an impossible request.

    """
    if method == "iid":
        return partition_iid(labels, num_clients, seed)
    if method == "dirichlet":
        return partition_dirichlet(labels, num_clients, alpha, seed)
    raise DataError(f"unknown partition method {method!r}: set it to one of {', '.join(METHODS)}")


def split_with_eval(
    train_labels: Sequence[int],
    dev_labels: Sequence[int],
    num_clients: int,
    data: DataConfig,
    seed: int,
) -> tuple[list[list[int]], list[list[int]]]:
    """Training shards by ``data.partition`` and matched evaluation shards from the dev labels.

    Shard size: ``data.eval_examples_per_client``, else the dev size split evenly, at most the
    dev size. One task's whole federation, or (``data.client_tasks``) one task's own clients.
    """
    parts = partition(train_labels, num_clients, data.partition, data.dirichlet_alpha, seed)
    size = data.eval_examples_per_client or max(1, len(dev_labels) // num_clients)
    size = min(size, len(dev_labels))
    shards = eval_shards([[train_labels[i] for i in p] for p in parts], dev_labels, size, seed)
    return parts, shards


def _largest_remainder(weights: np.ndarray, total: int) -> np.ndarray:
    """Integer counts summing to ``total`` proportional to ``weights`` (ties: lower index)."""
    exact = weights / weights.sum() * total
    counts: np.ndarray = np.floor(exact).astype(np.int64)
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[: total - int(counts.sum())]] += 1
    return counts


def eval_shards(
    client_train_labels: Sequence[Sequence[int]],
    dev_labels: Sequence[int],
    size_per_client: int,
    seed: int,
) -> list[list[int]]:
    """Draw each client's evaluation shard from the dev set with its training label mix.

    This is the paper's protocol: a client is evaluated on data skewed like its own. Target counts
    per label come from largest-remainder rounding of the client's label proportions times
    ``size_per_client``, capped by the dev examples available for that label; what a cap cuts is
    redistributed over the client's other labels in proportion, never beyond availability, so a
    shard can be smaller than ``size_per_client`` only when the client's labels run out.

    Sampling is without replacement within a client, but different clients' shards may overlap:
    dev sets such as RTE's 277 examples are too small for disjoint skewed shards.

    Args:
        client_train_labels: For each client, the labels of its training examples.
        dev_labels: Label of every dev example.
        size_per_client: Wanted shard size (> 0).
        seed: Seed of the draws.

    Returns:
        Sorted dev indices per client, each non-empty.

    Raises:
        DataError: size_per_client <= 0, a client without training labels, or a client none of
            whose labels occurs in the dev set.

    """
    if size_per_client <= 0:
        raise DataError(f"eval shard size is {size_per_client}: set it to 1 or more")
    dev = np.asarray(dev_labels, dtype=np.int64)
    num_labels = 1 + max(
        [int(dev.max(initial=-1))] + [max(t, default=-1) for t in client_train_labels]
    )
    dev_by_label = [np.flatnonzero(dev == c) for c in range(num_labels)]
    avail = np.array([len(i) for i in dev_by_label], dtype=np.int64)
    rng = np.random.default_rng(seed)
    shards: list[list[int]] = []
    for client, train_labels in enumerate(client_train_labels):
        props = np.bincount(np.asarray(train_labels, dtype=np.int64), minlength=num_labels)
        if props.sum() == 0:
            raise DataError(f"client {client} has no training examples: cannot build its shard")
        counts = np.zeros(num_labels, dtype=np.int64)
        remaining = size_per_client
        active = (props > 0) & (avail > counts)
        while remaining > 0 and active.any():
            alloc = np.minimum(_largest_remainder(props * active, remaining), avail - counts)
            counts += alloc
            remaining -= int(alloc.sum())
            active = (props > 0) & (avail > counts)
        if counts.sum() == 0:
            raise DataError(
                f"client {client}: none of its labels {np.flatnonzero(props).tolist()} occurs in "
                "the dev set: use a dev set covering the training labels"
            )
        chosen = [
            rng.choice(dev_by_label[c], size=int(n), replace=False)
            for c, n in enumerate(counts)
            if n > 0
        ]
        shards.append(sorted(int(i) for i in np.concatenate(chosen)))
    return shards


def label_histogram(labels: Sequence[int], indices: Sequence[int], num_labels: int) -> list[int]:
    """Count of each label among ``labels[i]`` for ``i`` in ``indices``."""
    arr = np.asarray(labels, dtype=np.int64)[np.asarray(indices, dtype=np.int64)]
    return [int(n) for n in np.bincount(arr, minlength=num_labels)[:num_labels]]


def label_skew(
    labels: Sequence[int], parts: Sequence[Sequence[int]], num_labels: int | None = None
) -> float:
    """Mean total-variation distance between each client's label mix and the global one.

    0 means every client sees the global mix (IID); values near 1 mean clients see disjoint
    labels. Used to check that skew grows as the Dirichlet alpha shrinks.
    """
    k = num_labels if num_labels is not None else int(max(labels, default=-1)) + 1
    global_hist = np.asarray(label_histogram(labels, range(len(labels)), k), dtype=np.float64)
    global_dist = global_hist / global_hist.sum()
    tvs = []
    for p in parts:
        hist = np.asarray(label_histogram(labels, p, k), dtype=np.float64)
        if hist.sum() > 0:
            tvs.append(0.5 * float(np.abs(hist / hist.sum() - global_dist).sum()))
    return float(np.mean(tvs)) if tvs else 0.0
