import time
from collections import Counter

import numpy as np
import pytest

from fedsa.core.errors import DataError
from fedsa.tasks.partition import (
    eval_shards,
    label_histogram,
    label_skew,
    partition,
    partition_dirichlet,
    partition_iid,
)


def _labels(n: int, k: int, seed: int = 0) -> list[int]:
    return [int(x) for x in np.random.default_rng(seed).integers(k, size=n)]


def _check_cover(parts: list[list[int]], n: int) -> None:
    flat = [i for p in parts for i in p]
    assert len(flat) == n
    assert sorted(flat) == list(range(n))
    assert all(p == sorted(p) for p in parts)
    assert all(p for p in parts)


@pytest.mark.parametrize("method", ["iid", "dirichlet"])
def test_deterministic_and_seed_dependent(method: str) -> None:
    labels = _labels(500, 3)
    a = partition(labels, 5, method, 0.5, seed=1)
    assert a == partition(labels, 5, method, 0.5, seed=1)
    assert a != partition(labels, 5, method, 0.5, seed=2)
    _check_cover(a, 500)


def test_iid_even() -> None:
    parts = partition_iid(_labels(103, 2), 10, seed=0)
    _check_cover(parts, 103)
    assert {len(p) for p in parts} == {10, 11}


@pytest.mark.parametrize("alpha", [0.01, 0.1, 0.5, 1.0, 100.0])
@pytest.mark.parametrize(("n", "clients", "k"), [(10, 10, 2), (60, 20, 3), (2000, 100, 2)])
def test_dirichlet_never_empty(alpha: float, n: int, clients: int, k: int) -> None:
    labels = _labels(n, k)
    start = time.perf_counter()
    parts = partition_dirichlet(labels, clients, alpha, seed=0)
    assert time.perf_counter() - start < 2.0
    assert len(parts) == clients
    _check_cover(parts, n)


def test_dirichlet_tiny_alpha_many_clients_fast() -> None:
    labels = _labels(2000, 2)
    start = time.perf_counter()
    for seed in range(5):
        _check_cover(partition_dirichlet(labels, 100, 0.01, seed), 2000)
    assert time.perf_counter() - start < 2.0


def test_dirichlet_single_label() -> None:
    _check_cover(partition_dirichlet([0] * 50, 5, 0.1, seed=0), 50)


def test_skew_grows_as_alpha_shrinks() -> None:
    labels = _labels(3000, 3)
    skew = {
        alpha: np.mean(
            [label_skew(labels, partition_dirichlet(labels, 10, alpha, s)) for s in range(5)]
        )
        for alpha in (100.0, 1.0, 0.1)
    }
    assert skew[100.0] < skew[1.0] < skew[0.1]
    assert skew[100.0] < 0.1
    iid = label_skew(labels, partition_iid(labels, 10, 0))
    assert iid < 0.1


@pytest.mark.parametrize(
    ("n", "clients", "method", "alpha", "needle"),
    [
        (5, 6, "dirichlet", 0.5, "6 clients"),
        (5, 6, "iid", 0.5, "6 clients"),
        (5, 0, "iid", 0.5, "num_clients"),
        (5, 0, "dirichlet", 0.5, "num_clients"),
        (50, 2, "dirichlet", 0.0, "alpha"),
        (50, 2, "dirichlet", -1.0, "alpha"),
        (50, 2, "shards", 0.5, "iid, dirichlet"),
    ],
)
def test_impossible_requests(n: int, clients: int, method: str, alpha: float, needle: str) -> None:
    with pytest.raises(DataError, match=needle):
        partition(_labels(n, 2), clients, method, alpha, seed=0)


def test_histogram_and_skew_bounds() -> None:
    labels = [0, 0, 1, 1, 2]
    assert label_histogram(labels, [0, 2, 4], 3) == [1, 1, 1]
    assert label_histogram(labels, [], 3) == [0, 0, 0]
    assert label_skew(labels, [[0, 1, 2, 3, 4]]) == 0.0
    disjoint = label_skew([0, 0, 1, 1], [[0, 1], [2, 3]])
    assert disjoint == pytest.approx(0.5)


def test_eval_shards_follow_train_proportions() -> None:
    dev = [0] * 500 + [1] * 500
    train = [[0] * 80 + [1] * 20, [1] * 30, [0, 1]]
    shards = eval_shards(train, dev, 100, seed=0)
    counts = [Counter(dev[i] for i in s) for s in shards]
    assert counts[0] == {0: 80, 1: 20}
    assert counts[1] == {1: 100}
    assert counts[2] == {0: 50, 1: 50}
    for s in shards:
        assert len(set(s)) == len(s) and s == sorted(s)
    assert shards == eval_shards(train, dev, 100, seed=0)
    assert shards != eval_shards(train, dev, 100, seed=1)


def test_eval_shards_largest_remainder() -> None:
    dev = [0] * 50 + [1] * 50 + [2] * 50
    shards = eval_shards([[0, 1, 2]], dev, 10, seed=0)
    assert sorted(Counter(dev[i] for i in shards[0]).values()) == [3, 3, 4]


def test_eval_shards_availability_caps() -> None:
    # only 5 dev examples of label 1: the rest of the shard goes to label 0
    dev = [0] * 200 + [1] * 5 + [2] * 100
    shards = eval_shards([[0] * 50 + [1] * 50], dev, 40, seed=3)
    c = Counter(dev[i] for i in shards[0])
    assert c == {0: 35, 1: 5}
    # every label of the client exhausted: the shard is all that is available
    small = eval_shards([[1] * 10], dev, 40, seed=3)
    assert Counter(dev[i] for i in small[0]) == {1: 5}
    # redistribution is proportional across the client's remaining labels
    dev2 = [0] * 100 + [1] * 100 + [2] * 2
    c2 = Counter(dev2[i] for i in eval_shards([[0] * 25 + [1] * 50 + [2] * 25], dev2, 40, 0)[0])
    assert c2 == {2: 2, 1: 25, 0: 13} or c2 == {2: 2, 1: 26, 0: 12}
    assert sum(c2.values()) == 40


def test_eval_shards_errors() -> None:
    with pytest.raises(DataError, match="shard size"):
        eval_shards([[0]], [0, 1], 0, seed=0)
    with pytest.raises(DataError, match="client 1"):
        eval_shards([[0], []], [0, 1], 2, seed=0)
    with pytest.raises(DataError, match="none of its labels"):
        eval_shards([[2, 2]], [0, 1], 2, seed=0)


def test_eval_shards_on_dirichlet_split_nonempty() -> None:
    train = _labels(2000, 2, seed=1)
    dev = _labels(277, 2, seed=2)
    parts = partition_dirichlet(train, 20, 0.1, seed=0)
    shards = eval_shards([[train[i] for i in p] for p in parts], dev, 50, seed=0)
    assert len(shards) == 20
    for part, shard in zip(parts, shards, strict=True):
        assert 0 < len(shard) <= 50
        assert {dev[i] for i in shard} <= {train[i] for i in part}
