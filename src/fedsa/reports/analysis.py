"""Client-to-client similarity of the A and B factors: the evidence behind FedSA-LoRA.

FedSA-LoRA (arXiv 2410.01463, Figure 2) rests on an observation: after local training the ``A``
matrices of different clients are similar while the ``B`` matrices differ, more so under stronger
non-IID data. This module measures that on our own runs, from the per-client snapshots written
with ``analysis.snapshot_rounds``: per adapted layer, the client x client cosine similarity of the
trained ``A`` and ``B`` and of their local changes (after - before). The changes matter because
clients that start from the same global ``A`` look similar after a few steps whatever they learn;
only the change shows whether they moved the same way.

Heavy libraries (torch, PEFT, matplotlib) are imported lazily to keep the CLI parser fast.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fedsa.core.errors import DataError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

KINDS = ("A", "B", "dA", "dB")
"""Measured quantities: trained A and B (after local training) and their local changes."""


def pairwise_cosine(matrices: Sequence[torch.Tensor]) -> np.ndarray:
    """Cosine similarity of every pair of flattened tensors, in float64.

    A zero tensor (e.g. FedIT's ``B`` before any training) has no direction: it gets similarity 0
    with every other tensor and 1 with itself, so the result never contains NaN.

    Args:
        matrices: K tensors of one shape (one per client).

    Returns:
        A K x K symmetric array with ones on the diagonal and values in [-1, 1].

    Raises:
        ValueError: If the tensors do not all have the same number of elements.
    """
    flat = [m.detach().double().reshape(-1).cpu().numpy() for m in matrices]
    if len({f.size for f in flat}) > 1:
        raise ValueError(f"tensors differ in size: {[f.size for f in flat]}")
    if not flat:
        return np.zeros((0, 0), dtype=np.float64)
    x = np.stack(flat)
    norms = np.linalg.norm(x, axis=1)
    denom = np.outer(norms, norms)
    sim = np.divide(x @ x.T, denom, out=np.zeros_like(denom), where=denom > 0)
    sim = np.asarray(np.clip(sim, -1.0, 1.0), dtype=np.float64)
    np.fill_diagonal(sim, 1.0)
    return sim


def _mean_offdiag(sim: np.ndarray) -> float | None:
    """Mean over client pairs (i != j); None when fewer than two clients."""
    k = sim.shape[0]
    if k < 2:
        return None
    return float((sim.sum() - np.trace(sim)) / (k * (k - 1)))


def _entry(sim: np.ndarray, **extra: Any) -> dict[str, Any]:
    """JSON form of one similarity matrix with its mean over client pairs."""
    return {"matrix": sim.tolist(), "mean_offdiag": _mean_offdiag(sim), **extra}


def _client_order(client_id: str) -> tuple[int, int, str]:
    """Sort numeric ids numerically ("2" before "10"), others after them by name."""
    return (0, int(client_id), "") if client_id.isdigit() else (1, 0, client_id)


def analyze_round(
    snapshots: Mapping[str, Mapping[str, torch.Tensor]], variant: str
) -> dict[str, Any]:
    """Client x client cosine similarities of A, B, dA and dB for one round.

    A layer is the name stem before the variant's A/B marker (e.g. ``...layer.0.attention.self.
    query``). A kind is left out of a layer when it is not in every client's snapshot, e.g. ``A``
    under FFA-LoRA, where it is frozen and never snapshotted.

    Args:
        snapshots: ``{client_id: tensors}`` with ``before.<name>`` and ``after.<name>`` keys.
        variant: Adapter variant name (``lora``, ``rslora``, ``vera``).

    Returns:
        JSON-serialisable dict: ``clients``, per-layer ``layers[stem][kind]`` with ``matrix`` and
        ``mean_offdiag``, and ``mean[kind]`` averaged over the layers that have that kind.

    Raises:
        DataError: If the variant is unknown or there are no snapshots or no adapter tensors.
    """
    from fedsa.adapters.variants import VARIANTS

    if variant not in VARIANTS:
        raise DataError(f"unknown adapter variant {variant!r}: use one of {sorted(VARIANTS)}")
    if not snapshots:
        raise DataError("no client snapshots given: rerun with analysis.snapshot_rounds=[...]")
    v = VARIANTS[variant]
    markers = {"A": v.a_marker, "B": v.b_marker}
    clients = sorted(snapshots, key=_client_order)
    names: dict[str, dict[str, str]] = {}  # stem -> slot -> parameter name
    for key in snapshots[clients[0]]:
        name = key.removeprefix("after.")
        slot = v.slot_of(name) if key.startswith("after.") else None
        if slot in markers:
            names.setdefault(name.split(markers[str(slot)])[0], {})[str(slot)] = name
    if not names:
        raise DataError(f"snapshots of client {clients[0]} hold no {variant} A/B tensors")

    layers: dict[str, dict[str, Any]] = {}
    for stem in sorted(names):
        layer: dict[str, Any] = {}
        for slot, name in sorted(names[stem].items()):
            if not all(f"after.{name}" in snapshots[c] for c in clients):
                log.warning("%s is missing for some clients; skipped", name)
                continue
            after = [snapshots[c][f"after.{name}"] for c in clients]
            layer[slot] = pairwise_cosine(after)
            if all(f"before.{name}" in snapshots[c] for c in clients):
                before = [snapshots[c][f"before.{name}"] for c in clients]
                layer[f"d{slot}"] = pairwise_cosine(
                    [a - b for a, b in zip(after, before, strict=True)]
                )
        layers[stem] = layer

    mean = {}
    for kind in KINDS:
        mats = [layer[kind] for layer in layers.values() if kind in layer]
        if mats:
            mean[kind] = _entry(np.mean(np.stack(mats), axis=0), num_layers=len(mats))
    return {
        "clients": clients,
        "num_clients": len(clients),
        "layers": {stem: {k: _entry(m) for k, m in lay.items()} for stem, lay in layers.items()},
        "mean": mean,
    }


def _available_rounds(run_dir: Path) -> list[int]:
    """Rounds that have a ``snapshots/round_<t>`` folder with at least one snapshot."""
    found = []
    for d in (run_dir / "snapshots").glob("round_*"):
        t = d.name.removeprefix("round_")
        if t.isdigit() and any(d.glob("*.safetensors")):
            found.append(int(t))
    return sorted(found)


def _summary_line(t: int, rnd: Mapping[str, Any]) -> str:
    def f(kind: str) -> str:
        value = rnd["mean"].get(kind, {}).get("mean_offdiag")
        return "n/a" if value is None else f"{value:.2f}"

    return (
        f"round {t}: mean pairwise cosine A {f('A')} (change {f('dA')}), "
        f"B {f('B')} (change {f('dB')}) over {rnd['num_clients']} clients"
    )


def analyze_run(run_dir: Path, rounds: Sequence[int] | None = None) -> dict[str, Any]:
    """Analyse the snapshots of a finished (or running) run directory.

    Args:
        run_dir: Directory written by ``fedsa run`` with ``analysis.snapshot_rounds`` set.
        rounds: Rounds to analyse; all rounds with snapshots when None.

    Returns:
        Run metadata (``algorithm``, ``variant``, ``partition``, ``dirichlet_alpha``), a list
        ``rounds`` of :func:`analyze_round` results with ``round`` and ``summary_line`` added,
        and ``summary_line`` of the last analysed round.

    Raises:
        DataError: If ``config.json`` is missing, the run has no snapshots or a round is missing.
    """
    from fedsa.core.io import load_tensors

    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.json"
    if not cfg_path.is_file():
        raise DataError(f"{run_dir} has no config.json: give a run directory made by fedsa run")
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    available = _available_rounds(run_dir)
    if not available:
        raise DataError(
            f"{run_dir} has no client snapshots: rerun with analysis.snapshot_rounds=[1,...]"
        )
    wanted = available if rounds is None else sorted(set(rounds))
    missing = [t for t in wanted if t not in available]
    if missing:
        raise DataError(
            f"{run_dir} has no snapshots for round(s) {missing} (it has {available}): pick from "
            f"those or rerun with analysis.snapshot_rounds={missing}"
        )
    variant = cfg["adapter"]["variant"]
    result: dict[str, Any] = {
        "run_dir": str(run_dir),
        "algorithm": cfg["algorithm"],
        "variant": variant,
        "partition": cfg["data"]["partition"],
        "dirichlet_alpha": cfg["data"]["dirichlet_alpha"],
        "rounds": [],
    }
    for t in wanted:
        files = sorted((run_dir / "snapshots" / f"round_{t}").glob("*.safetensors"))
        rnd = analyze_round({p.stem: load_tensors(p) for p in files}, variant)
        rnd = {"round": t, "summary_line": _summary_line(t, rnd), **rnd}
        log.info("%s", rnd["summary_line"])
        result["rounds"].append(rnd)
    result["summary_line"] = result["rounds"][-1]["summary_line"]
    return result
