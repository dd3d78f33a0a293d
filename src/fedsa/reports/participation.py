"""Accuracy by how many rounds a client trained in, for federations that sample clients.

With ``federation.clients_per_round`` below the number of clients, a client trains in a few
rounds only, or in none. A method that keeps part of the model private (FedSA-LoRA's B, every
method's head) then depends on how often each client was sampled, while a fully shared model
does not; the client mean hides this. The table gives, per method, the mean final accuracy of
the clients that trained in 0, 1, 2, ... rounds (over seeds), with how many clients that is.
"""

from __future__ import annotations

import html
from collections import Counter

from fedsa.reports.runs import Run, mean_or_nan
from fedsa.reports.tables import html_table, md_table

TOP = 5
"""Counts from TOP on share one column (``5+``)."""


def trained_rounds(run: Run) -> Counter[str]:
    """Per client, the rounds whose aggregate took its update (round 0 trains nobody)."""
    counts: Counter[str] = Counter()
    for record in run.metrics:
        counts.update(str(c) for c in record.get("accepted", record.get("participants", [])))
    return counts


def _federated(runs: list[Run]) -> list[Run]:
    """The runs with clients to count (``centralized`` trains one pooled model, no client)."""
    return [r for r in runs if not any("pooled_steps" in rec for rec in r.metrics)]


def _sampled(runs: dict[str, list[Run]]) -> bool:
    """Whether some run left some scored client out of some round."""
    for rs in runs.values():
        for run in _federated(rs):
            counts, rounds = trained_rounds(run), int(run.summary.get("rounds", 0))
            if any(counts[c] < rounds for c in run.summary.get("final_clients", {})):
                return True
    return False


def participation_rows(runs: dict[str, list[Run]]) -> tuple[list[str], list[list[str]]]:
    """Header and rows (``acc (clients)``); empty when every client trained every round."""
    if not _sampled(runs):
        return [], []
    cells: dict[str, dict[int, list[float]]] = {}
    for algo, rs in runs.items():
        if not _federated(rs):
            continue
        by = cells.setdefault(algo, {})
        for run in _federated(rs):
            counts = trained_rounds(run)
            for client, m in run.summary["final_clients"].items():
                by.setdefault(min(counts[client], TOP), []).append(float(m["accuracy"]))
    keys = sorted({k for by in cells.values() for k in by})
    header = ["algorithm", *(f"{k}+" if k == TOP else str(k) for k in keys)]
    rows = [
        [algo, *(f"{mean_or_nan(by.get(k, [])):.3f} ({len(by.get(k, []))})" for k in keys)]
        for algo, by in cells.items()
    ]
    return header, rows


NOTE = (
    "By rounds trained in (clients sampled by `federation.clients_per_round`): mean final "
    "accuracy of the clients whose update was aggregated in that many rounds, over the seeds "
    "(number of clients in brackets)."
)


def participation_markdown(runs: dict[str, list[Run]]) -> str:
    """The table as Markdown with its note ("" without client sampling)."""
    header, rows = participation_rows(runs)
    return NOTE + "\n\n" + md_table(header, rows) if header else ""


def participation_html(runs: dict[str, list[Run]]) -> str:
    """The table as HTML ("" without client sampling)."""
    header, rows = participation_rows(runs)
    if not header:
        return ""
    return f"<p>{html.escape(NOTE).replace('`', '')}</p>\n{html_table(header, rows)}"
