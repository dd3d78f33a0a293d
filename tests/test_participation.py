"""The report's accuracy-by-rounds-trained table, for federations that sample clients."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fedsa.reports.participation import (
    participation_html,
    participation_markdown,
    participation_rows,
    trained_rounds,
)
from fedsa.reports.runs import Run


def _run(rounds: list[list[str]], accs: dict[str, float], **extra: Any) -> Run:
    metrics = [{"round": 0, "participants": []}]  # eval.initial's round 0 trains nobody
    metrics += [
        {"round": t, "participants": p, "accepted": p, **extra} for t, p in enumerate(rounds, 1)
    ]
    summary = {
        "rounds": len(rounds),
        "final_clients": {c: {"accuracy": a} for c, a in accs.items()},
    }
    return Run("x", 0, Path("."), summary, metrics)


def test_clients_are_grouped_by_the_rounds_their_update_was_aggregated_in() -> None:
    a = _run([["0", "1"], ["0", "2"], ["0", "1"]], {"0": 0.9, "1": 0.7, "2": 0.5, "3": 0.2})
    b = _run([["1", "3"], ["1", "3"], ["1", "2"]], {"0": 0.4, "1": 0.8, "2": 0.6, "3": 0.6})
    b.metrics[1]["accepted"] = ["3"]  # client 1's update was rejected in round 1
    assert trained_rounds(a) == {"0": 3, "1": 2, "2": 1}
    assert trained_rounds(b) == {"1": 2, "3": 2, "2": 1}
    header, rows = participation_rows({"fedsa-lora": [a, b]})
    assert header == ["algorithm", "0", "1", "2", "3"]
    # 0 rounds: a's 3 (0.2) and b's 0 (0.4); 1: a's 2 and b's 2; 2: a's 1, b's 1 and 3; 3: a's 0
    assert rows == [["fedsa-lora", "0.300 (2)", "0.550 (2)", "0.700 (3)", "0.900 (1)"]]
    md = participation_markdown({"fedsa-lora": [a, b]})
    assert "| fedsa-lora | 0.300 (2) |" in md and "rounds trained in" in md
    assert "<td>0.900 (1)</td>" in participation_html({"fedsa-lora": [a, b]})


def test_counts_from_five_rounds_share_a_column() -> None:
    run = _run([["0"]] * 7 + [["1"]], {"0": 1.0, "1": 0.5})
    header, rows = participation_rows({"m": [run]})
    assert header == ["algorithm", "1", "5+"] and rows == [["m", "0.500 (1)", "1.000 (1)"]]


def test_no_table_when_every_client_trains_every_round_or_nothing_is_federated() -> None:
    full = _run([["0", "1"], ["0", "1"]], {"0": 0.9, "1": 0.8})
    assert participation_rows({"fedit": [full]}) == ([], [])
    assert participation_markdown({"fedit": [full]}) == participation_html({"fedit": [full]}) == ""
    pooled = _run([[], []], {"0": 0.9, "1": 0.8}, pooled_steps=20)  # centralized: no clients
    assert participation_rows({"centralized": [pooled]}) == ([], [])
    sampled = _run([["0"], ["1"]], {"0": 0.9, "1": 0.8})
    header, rows = participation_rows({"fedit": [sampled], "centralized": [pooled]})
    assert header == ["algorithm", "1"] and [r[0] for r in rows] == ["fedit"]
