"""Local batch sampling: plain random batches and the length-grouped option."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from fedsa.tasks.batching import sample_batches


def padding_fraction(lengths: np.ndarray, batches: list[list[int]]) -> float:
    padded = sum(len(b) * int(lengths[b].max()) for b in batches)
    return 1.0 - sum(int(lengths[b].sum()) for b in batches) / padded


LENGTHS = np.random.default_rng(3).integers(3, 60, size=500)


@pytest.mark.parametrize("pool_size", [200, 37, 5])
def test_grouping_uses_the_same_examples_with_less_padding(pool_size: int) -> None:
    pool = sorted(np.random.default_rng(1).choice(500, size=pool_size, replace=False).tolist())
    plain = sample_batches(pool, 10, 16, np.random.default_rng(7))
    grouped = sample_batches(pool, 10, 16, np.random.default_rng(7), lengths=LENGTHS)
    again = sample_batches(pool, 10, 16, np.random.default_rng(7), lengths=LENGTHS)
    assert grouped == again  # seeded: reproducible
    assert len(grouped) == 10 and {len(b) for b in grouped} == {min(16, pool_size)}
    # The same examples (with the same multiplicities) are trained on in the round.
    assert Counter(i for b in grouped for i in b) == Counter(i for b in plain for i in b)
    if pool_size >= 10 * 16:  # one pass covers the round: sorted once, little padding left
        assert padding_fraction(LENGTHS, grouped) < 0.3 * padding_fraction(LENGTHS, plain)
    elif pool_size > 16:  # several passes, each sorted: batches spanning two passes mix lengths
        assert padding_fraction(LENGTHS, grouped) < padding_fraction(LENGTHS, plain)
    if pool_size >= 10 * 16:  # one pass covers the round: no example repeats inside a batch
        assert all(len(set(b)) == len(b) for b in grouped)


def test_plain_sampling_is_unchanged_by_the_option_default() -> None:
    pool = list(range(0, 100, 3))
    expect = sample_batches(pool, 4, 8, np.random.default_rng(0))
    rng = np.random.default_rng(0)
    order = [int(i) for i in rng.permutation(np.asarray(pool))]
    assert expect == [order[s * 8 : (s + 1) * 8] for s in range(4)]
