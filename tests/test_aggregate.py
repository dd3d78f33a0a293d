"""Golden-value tests of the server step and of update validation."""

from __future__ import annotations

import pytest
import torch

from fedsa.algorithms.aggregate import validate_update, weighted_mean
from fedsa.core.errors import UpdateError


def test_weighted_mean_golden_values() -> None:
    u1 = {"a": torch.tensor([1.0, 2.0]), "b": torch.tensor([[0.0, 4.0]])}
    u2 = {"a": torch.tensor([3.0, 6.0]), "b": torch.tensor([[8.0, 0.0]])}
    # weights 1:3 -> p = 0.25, 0.75 (hand-computed)
    out = weighted_mean([u1, u2], [10.0, 30.0])
    assert torch.equal(out["a"], torch.tensor([2.5, 5.0]))
    assert torch.equal(out["b"], torch.tensor([[6.0, 1.0]]))
    assert out["a"].dtype == torch.float32


def test_uniform_and_three_clients() -> None:
    ups = [{"w": torch.tensor([v])} for v in (1.0, 2.0, 6.0)]
    assert torch.equal(weighted_mean(ups, [1, 1, 1])["w"], torch.tensor([3.0]))
    # example counts 1, 1, 2 -> (1 + 2 + 12) / 4
    assert torch.equal(weighted_mean(ups, [1, 1, 2])["w"], torch.tensor([3.75]))


def test_mean_is_pure() -> None:
    u = {"w": torch.tensor([1.0])}
    before = u["w"].clone()
    out = weighted_mean([u], [5])
    assert torch.equal(out["w"], before) and out["w"] is not u["w"]
    assert torch.equal(u["w"], before)


def test_empty_dict_updates_average_to_empty() -> None:
    assert weighted_mean([{}, {}], [1, 2]) == {}


@pytest.mark.parametrize(
    ("updates", "weights", "needle"),
    [
        ([], [], "no client updates"),
        ([{"a": torch.zeros(2)}, {"b": torch.zeros(2)}], [1, 1], "keys that differ"),
        ([{"a": torch.zeros(2)}, {"a": torch.zeros(3)}], [1, 1], "shape or dtype"),
        ([{"a": torch.zeros(2)}, {"a": torch.zeros(2, dtype=torch.float64)}], [1, 1], "dtype"),
        ([{"a": torch.zeros(2)}], [1, 2], "weights"),
        ([{"a": torch.zeros(2)}], [0], "sum > 0"),
        ([{"a": torch.zeros(2)}], [-1], ">= 0"),
    ],
)
def test_mismatched_inputs_are_rejected(updates: list, weights: list, needle: str) -> None:
    with pytest.raises(UpdateError, match=needle):
        weighted_mean(updates, weights)


def test_validate_update() -> None:
    ref = {"a": torch.zeros(2, 3)}
    validate_update({"a": torch.ones(2, 3)}, ref, client="7")
    with pytest.raises(UpdateError, match="client 7 has the wrong keys"):
        validate_update({"b": torch.ones(2, 3)}, ref, client="7")
    with pytest.raises(UpdateError, match=r"\(3, 2\)"):
        validate_update({"a": torch.ones(3, 2)}, ref)
    with pytest.raises(UpdateError, match="NaN or inf"):
        validate_update({"a": torch.full((2, 3), float("nan"))}, ref)
    with pytest.raises(UpdateError, match="norm"):
        validate_update({"a": torch.ones(2, 3)}, ref, max_norm=1.0)
