"""The Flower ServerApp: the in-process round loop's server half over Flower messages.

sample -> send train messages -> screen replies -> the algorithm's server rule (through
:func:`fedsa.engine.server_step.server_update`, the in-process engine's own server step) ->
evaluate -> record. The server holds no data: it builds the seeded model only to know the initial
shared tensors (the same ones every client builds), and takes example counts, losses and
personalised metrics from the clients' replies. It writes the in-process engine's RUN_DIR layout
(``config.json``, ``metrics.jsonl``, ``summary.json``, ``global.safetensors``) on the SuperLink's
host; private tensors never leave the sites.

Run config (``flwr run ... --run-config FILE``, written by :mod:`fedsa.flower.launch`):
``config-json`` (the resolved fedsa config), ``out-dir``, ``round-timeout``, ``node-timeout``,
``fold-eval``, ``resume``, ``overwrite``, ``poll-interval``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flwr.app import Context, Message, RecordDict
from flwr.serverapp import Grid, ServerApp

from fedsa.config.schema import RunConfig
from fedsa.core.errors import ConfigError, UpdateError
from fedsa.core.params import Tensors
from fedsa.engine.metrics import summarize
from fedsa.engine.server_step import expected_upload, sent_view, server_update
from fedsa.flower.codec import config_record, to_record
from fedsa.flower.exchange import discover, exchange
from fedsa.flower.grid import POLL_S, FastGrid
from fedsa.flower.records import RunRecorder
from fedsa.flower.uplink import Gather, RoundIO, gather_plain, gather_secure

log = logging.getLogger(__name__)

app = ServerApp()


@dataclass(frozen=True)
class Settings:
    """The ServerApp's run config, parsed."""

    cfg: RunConfig
    out: Path
    round_timeout: float
    node_timeout: float
    fold_eval: bool
    resume: bool
    overwrite: bool
    poll_s: float

    @classmethod
    def from_run_config(cls, rc: dict[str, Any]) -> Settings:
        """Read and check the run config (``config-json`` and ``out-dir`` are required)."""
        import json

        from fedsa.config.load import config_from_dict

        if not rc.get("config-json") or not rc.get("out-dir"):
            raise ConfigError(
                "Flower run config needs 'config-json' and 'out-dir': start runs with "
                "`fedsa flower run` or `fedsa flower local`"
            )
        return cls(
            cfg=config_from_dict(json.loads(str(rc["config-json"]))),
            out=Path(str(rc["out-dir"])),
            round_timeout=float(rc.get("round-timeout", 600.0)),
            node_timeout=float(rc.get("node-timeout", 120.0)),
            fold_eval=bool(rc.get("fold-eval", True)),
            resume=bool(rc.get("resume", False)),
            overwrite=bool(rc.get("overwrite", False)),
            poll_s=float(rc.get("poll-interval", POLL_S)),
        )


def message(
    node: int,
    kind: str,
    shared: Tensors,
    cfg: RunConfig,
    base: Tensors | None = None,
    form: str = "base",
    **extra: int | float | bool | str,
) -> Message:
    """A train or evaluate instruction for one client.

    It holds the shared tensors, the config and any base-weight change: record ``base`` for
    absolute weights, ``merge`` for the latest change in its wire form (``base-kind`` names it).
    """
    extra["base-kind"] = form if base else ""
    content = RecordDict({"shared": to_record(shared), "config": config_record(cfg, **extra)})
    if base:
        content[form] = to_record(base)
    return Message(content, node, kind)


def eval_of(reply: Message | None) -> dict[str, float] | str:
    """A client's personalised metrics from a reply, or why there are none."""
    if reply is None:
        return "no reply within the round timeout"
    if reply.has_error():
        return f"client error: {(reply.error.reason or '').strip()[-300:]}"
    rec = reply.content.metric_records.get("eval")
    if rec is None:
        return "reply lacks the 'eval' MetricRecord"
    return {k: float(v) for k, v in rec.items() if isinstance(v, int | float)}


def timing_of(replies: dict[str, Message | None]) -> dict[str, dict[str, float]]:
    """Each client's reported time split (process start, prepare, work), where it sent one."""
    out: dict[str, dict[str, float]] = {}
    for c, r in replies.items():
        if r is not None and not r.has_error() and "timing" in r.content.metric_records:
            rec = r.content.metric_records["timing"]
            out[c] = {k: round(float(v), 3) for k, v in rec.items() if isinstance(v, int | float)}
    return out


def collect_eval(results: dict[str, dict[str, float] | str]) -> dict[str, Any]:
    """The in-process engine's ``eval`` entry from per-client results (failures listed apart)."""
    ok = {c: r for c, r in sorted(results.items(), key=lambda x: int(x[0])) if isinstance(r, dict)}
    failed = {c: r for c, r in results.items() if isinstance(r, str)}
    if not ok:
        raise UpdateError(f"no client returned evaluation metrics: {failed}")
    per_client = {c: dict(r) for c, r in ok.items()}  # every metric, as in-process
    out: dict[str, Any] = {"clients": per_client, **summarize(per_client)}
    out["majority_per_client"] = {c: r["majority"] for c, r in ok.items() if "majority" in r}
    if failed:
        out["failed"] = failed
    return out


def run_federation(grid: Grid, s: Settings) -> dict[str, Any]:
    """All rounds of one run; returns the summary written to ``summary.json``."""
    cfg = s.cfg
    rec = RunRecorder(cfg, s.out, resume=s.resume, overwrite=s.overwrite)
    found = time.perf_counter()
    nodes = discover(grid, rec.client_ids, s.node_timeout)
    rec.discovery_s = time.perf_counter() - found
    log.info("clients -> nodes: %s (%.1fs)", nodes, rec.discovery_s)
    state = rec.state
    pending: dict[str, Any] | None = None  # a round whose evaluation rides on the next train
    gather: Gather = gather_secure if cfg.privacy.secure_aggregation else gather_plain

    def to(c: str, kind: str, t: int, **extra: int | float | bool | str) -> Message:
        sync: dict[str, int | str] = {"base-round": state.base_round}
        sync["base-from"] = state.synced.get(c, 0)
        form, base = state.base_payload(c)  # nothing, the latest change, or dense weights
        sent = sent_view(state, c, cfg, rec.layout)
        return message(nodes[c], kind, sent, cfg, base, form, round=t, **sync, **extra)

    def lost(clients: list[str], replies: dict[str, Message | None]) -> None:
        for c in clients:  # a client without a good reply may lack the latest base weights
            if replies.get(c) is None or replies[c].has_error():  # type: ignore[union-attr]
                state.forget(c)

    for t in range(rec.next_round, cfg.federation.rounds + 1):
        start = time.perf_counter()
        participants = rec.sample(t)
        train = {c: to(c, "train", t, **{"eval-before": pending is not None}) for c in participants}
        others = [c for c in rec.client_ids if c not in participants]
        # clients not training this round are evaluated on their own
        evals = {c: to(c, "evaluate", t - 1) for c in others} if pending is not None else {}
        sent_to = {c: sent_view(state, c, cfg, rec.layout) for c in participants}
        expected = {
            c: expected_upload(rec.algorithm, rec.layout, cfg, t, sent_to[c]) for c in participants
        }
        io = RoundIO(t, cfg, nodes, train, evals, expected, sent_to, s.round_timeout, s.poll_s)
        sent = time.perf_counter()
        got = gather(grid, io)
        waited = time.perf_counter() - sent
        by_client = {c: got.replies.get(c) for c in rec.client_ids}
        lost([*train, *evals], by_client)
        if pending is not None:
            pending["bytes_down_eval"] = sum(rec.sent_bytes(m) for m in evals.values())
            results = {c: eval_of(r) for c, r in by_client.items()}
            rec.finish(pending, collect_eval(results), folded=True)
            pending = None
        accepted, rejected = got.accepted, got.rejected
        skipped = len(accepted) < cfg.federation.min_clients
        if skipped:  # as in-process: the shared state stays; the round is recorded as skipped
            log.warning("round %d skipped: %d valid replies < min_clients", t, len(accepted))
        else:  # the algorithm's server rule, exactly as in-process
            state = server_update(
                rec.algorithm,
                state,
                got.uploads,
                round_idx=t,
                cfg=cfg,
                layout=rec.layout,
                client_ids=rec.client_ids,
                base_of=rec.base_of,
                released=got.released,
            )
        train_msgs = list(train.values())
        record = rec.round_record(t, participants, accepted, rejected, train_msgs, start)
        rec.add_down(record, got.extra_down)
        if got.secagg is not None:
            record["secagg"] = got.secagg
        record["accepted"], record["skipped"] = list(accepted), skipped
        record["exchange_s"] = waited
        record["client_timing"] = timing_of({c: by_client[c] for c in participants})
        rec.save_global(state, t)
        due = t % cfg.eval.every == 0 or t == cfg.federation.rounds
        if due and s.fold_eval and t < cfg.federation.rounds:
            pending = record
        elif due:
            ev = [to(c, "evaluate", t) for c in rec.client_ids]
            sent = time.perf_counter()
            replies = exchange(grid, ev, s.round_timeout, poll_s=s.poll_s)
            lost(rec.client_ids, {c: replies.get(nodes[c]) for c in rec.client_ids})
            record["exchange_s"] += time.perf_counter() - sent
            record["bytes_down_eval"] = sum(rec.sent_bytes(m) for m in ev)
            results = {c: eval_of(replies.get(nodes[c])) for c in rec.client_ids}
            record["client_timing_eval"] = timing_of({c: replies.get(nodes[c]) for c in nodes})
            rec.finish(record, collect_eval(results), folded=False)
        else:
            rec.finish(record, None, folded=False)
    return rec.close(state)


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Flower entry point: parse the run config and run every round."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per Flower API call
    settings = Settings.from_run_config(dict(context.run_config))
    summary = run_federation(FastGrid(grid, settings.poll_s), settings)
    log.info("run finished: mean client accuracy %.4f", summary["final"]["accuracy_mean"])
