"""Packed ArrayRecords: one Flower object tree of 5 objects per message, lossless, strict on input.

The packing exists to cut flwr 1.42's per-object requests (one per ``Array`` and per chunk on
every hop); these tests pin that a message's object count no longer grows with its tensor count,
that names, order, dtypes and values survive both the torch and the numpy side, that records in
the earlier one-``Array``-per-tensor form are still read, and that malformed packed bytes are a
``ValueError`` (which screening turns into a rejection) rather than a crash.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import require_flwr

require_flwr()

from flwr.app import Array, ArrayRecord, MetricRecord, RecordDict  # noqa: E402
from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects  # noqa: E402

from fedsa.flower.codec import from_record, to_record  # noqa: E402
from fedsa.flower.packing import PACKED, data_nbytes, pack_numpy, unpack_numpy  # noqa: E402
from fedsa.flower.screen import Accepted, screen_reply  # noqa: E402


def _tensors(n: int) -> dict[str, torch.Tensor]:
    """``n`` LoRA-like factors, names deliberately not in sorted order (d_in != d_out)."""
    gen = torch.Generator().manual_seed(n)
    return {f"z{n - i}.lora_{'AB'[i % 2]}": torch.randn(8, 20 + i, generator=gen) for i in range(n)}


@pytest.mark.parametrize("n", [2, 24, 96])
def test_object_count_does_not_grow_with_tensor_count(n: int) -> None:
    content = RecordDict({"upload": to_record(_tensors(n)), "train": MetricRecord({"n": 1})})
    kinds = sorted(type(o).__name__ for o in get_all_nested_objects(content).values())
    assert kinds == ["Array", "ArrayChunk", "ArrayRecord", "MetricRecord", "RecordDict"]
    # the earlier form: two objects (the array and its chunk) per tensor
    legacy = ArrayRecord.from_torch_state_dict(_tensors(n))
    assert len(get_all_nested_objects(legacy)) == 2 * n + 1


def test_round_trip_keeps_names_order_dtypes_and_values() -> None:
    tensors = _tensors(6)
    tensors["counts"] = torch.arange(5, dtype=torch.int64)
    tensors["bf16"] = torch.randn(3, 4).to(torch.bfloat16)
    back = from_record(to_record(tensors))
    assert list(back) == list(tensors)  # the sender's order, not safetensors' sorted one
    for name, value in tensors.items():
        assert back[name].dtype == value.dtype and torch.equal(back[name], value), name
    back[next(iter(back))].add_(1.0)  # independent of the record's buffer
    assert torch.equal(from_record(to_record(tensors))["z6.lora_A"], tensors["z6.lora_A"])


def test_numpy_side_reads_torch_side_and_back() -> None:
    tensors = _tensors(5)
    arrays = unpack_numpy(to_record(tensors))  # what the thin ClientApp sees
    assert list(arrays) == list(tensors)
    assert all(np.array_equal(arrays[k], v.numpy()) for k, v in tensors.items())
    back = from_record(pack_numpy({k: v * 2 for k, v in arrays.items()}))  # its reply
    assert list(back) == list(tensors)
    assert all(torch.equal(back[k], v * 2) for k, v in tensors.items())


def test_records_with_one_array_per_tensor_are_still_read() -> None:
    tensors = _tensors(4)
    legacy = ArrayRecord.from_torch_state_dict(tensors)
    back = from_record(legacy)
    assert list(back) == list(tensors) and all(torch.equal(back[k], tensors[k]) for k in tensors)
    assert list(unpack_numpy(legacy)) == list(tensors)


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        (
            ArrayRecord({PACKED: Array(np.frombuffer(b"\xff" * 40, dtype=np.uint8))}),
            "cannot be read",
        ),
        (ArrayRecord({PACKED: Array(np.zeros(3, dtype=np.uint8))}), "cannot be read"),
        (ArrayRecord({PACKED: Array(np.zeros((2, 2), dtype=np.uint8))}), "1-D uint8"),
        (ArrayRecord({PACKED: Array(np.zeros(8, dtype=np.float32))}), "1-D uint8"),
        (
            ArrayRecord(
                {
                    PACKED: Array(np.zeros(8, dtype=np.uint8)),
                    "extra": Array(np.zeros(2, dtype=np.float32)),
                }
            ),
            "holds only",
        ),
    ],
)
def test_malformed_packed_records_raise_value_error(record: ArrayRecord, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        from_record(record)
    with pytest.raises(ValueError, match=reason):
        unpack_numpy(record)


def test_truncated_upload_is_rejected_by_screening() -> None:
    reference = {"a.lora_A": torch.ones(2, 3), "b.lora_A": torch.zeros(2, 3)}
    payload = to_record(reference)[PACKED].numpy()
    cut = ArrayRecord({PACKED: Array(payload[: len(payload) // 2].copy())})

    class _Reply:
        content = RecordDict(
            {"upload": cut, "train": MetricRecord({"num-examples": 3, "train-loss": 0.1})}
        )

        def has_error(self) -> bool:
            return False

    verdict = screen_reply(_Reply(), reference, "1")  # type: ignore[arg-type]
    assert isinstance(verdict, str) and "upload cannot be decoded" in verdict, verdict
    _Reply.content["upload"] = to_record(reference)
    good = screen_reply(_Reply(), reference, "1")  # type: ignore[arg-type]
    assert isinstance(good, Accepted) and good.payload_bytes == 2 * 6 * 4


def test_data_nbytes_counts_tensor_data_alone_in_either_form() -> None:
    tensors = _tensors(5)
    tensors["counts"] = torch.arange(7, dtype=torch.int64)
    expected = sum(v.numel() * v.element_size() for v in tensors.values())
    assert data_nbytes(to_record(tensors)) == expected
    assert data_nbytes(ArrayRecord.from_torch_state_dict(tensors)) == expected
    assert to_record(tensors).count_bytes() > expected  # what crossed: header and names too
    with pytest.raises(ValueError, match="cannot be read"):
        data_nbytes(ArrayRecord({PACKED: Array(np.zeros(3, dtype=np.uint8))}))
