"""The ServerApp's bookkeeping: RUN_DIR, resume, per-round records and the summary.

Writes the same layout and record keys as the in-process engine (:mod:`fedsa.engine.results`,
:func:`fedsa.engine.summary.build_summary`), plus what only a network run has: ``rejected``
(client -> reason), ``payload_bytes_up`` and ``payload_bytes_down_per_client`` (tensor bytes
alone, comparable to the in-process ``bytes_up`` and ``bytes_down_per_client``) and
``bytes_down_eval``. ``bytes_up``/``bytes_down`` here are the ArrayRecords actually sent, as
Flower counts them (``.npy`` data with headers, plus key names).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from flwr.app import Message
from safetensors import safe_open

from fedsa.algorithms.registry import ALGORITHMS
from fedsa.config.load import config_from_dict
from fedsa.config.schema import RunConfig
from fedsa.core.errors import ConfigError
from fedsa.core.io import load_tensors, save_tensors
from fedsa.core.params import Tensors, numel, read_from
from fedsa.engine.prepare import build_model, sample_clients
from fedsa.engine.results import RunDir, read_metrics
from fedsa.engine.server_step import ServerState
from fedsa.flower.codec import experiment_key, record_bytes
from fedsa.flower.packing import data_nbytes
from fedsa.flower.screen import Accepted
from fedsa.privacy.accounting import spent
from fedsa.tasks.client_tasks import head_labels
from fedsa.tracking.fanout import check_trackers, open_trackers

SERVER_STATE = "server.safetensors"
"""The server state beyond the shared tensors, for algorithms that have any."""


def flower_refusal(cfg: RunConfig) -> str | None:
    """Why ``cfg`` cannot run over Flower (None: it can)."""
    if ALGORITHMS[cfg.algorithm].pooled:
        return f"algorithm {cfg.algorithm!r} pools all data in one place: run it with `fedsa run`"
    if cfg.eval.initial or cfg.eval.holdout_clients:
        key = "eval.initial" if cfg.eval.initial else "eval.holdout_clients"
        return f"{key} runs in-process only for now: drop it or use `fedsa run`"
    if cfg.data.client_tasks:
        return "data.client_tasks runs in-process only for now: drop it or use `fedsa run`"
    return None


class RunRecorder:
    """One run's server state that outlives a round: RUN_DIR, history, byte totals."""

    def __init__(self, cfg: RunConfig, out: Path, *, resume: bool, overwrite: bool) -> None:
        """Build the initial shared tensors from the seeded model; open or resume ``out``.

        The trackers of ``[tracking] report_to`` are checked first and opened on ``out``: they
        log what the in-process engine logs, as each round's record is finished.
        """
        check_trackers(cfg)
        if (why := flower_refusal(cfg)) is not None:
            raise ConfigError(why)
        self.cfg = cfg
        self.out = Path(out)
        self.client_ids = [str(k) for k in range(cfg.data.num_clients)]
        labels = head_labels(cfg)
        self.num_labels = labels
        model, layout = build_model(cfg, labels, torch.device("cpu"))
        self.algorithm = ALGORITHMS[cfg.algorithm]
        self.layout = layout
        self.shared: Tensors = read_from(model, layout.shared)
        self.state = ServerState(shared=self.shared)
        self.params = {
            "trainable": numel(self.shared) + numel(read_from(model, layout.private)),
            "shared": numel(self.shared),
            "private": numel(read_from(model, layout.private)),
            "frozen_adapter": numel(read_from(model, layout.frozen)),
        }
        del model
        self.history: list[dict[str, Any]] = []
        self.sizes: dict[str, int] = {}
        self.next_round = 1
        self.cum_up = self.cum_down = 0
        self._starts: dict[int, float] = {}
        self.discovery_s = 0.0
        self._t0 = time.perf_counter()
        if resume and (self.out / "global.safetensors").exists():
            self._resume()
        else:
            self.run_dir = RunDir(self.out, overwrite=overwrite)
        self.run_dir.write_config(cfg.to_dict())
        done = self.history[-1]["round"] if self.history else 0
        self.trackers = open_trackers(cfg, self.out, resume_from=done)

    def _resume(self) -> None:
        saved = config_from_dict(json.loads((self.out / "config.json").read_text("utf-8")))
        if experiment_key(saved) != experiment_key(self.cfg):
            raise ConfigError(
                f"resume: {self.out} holds a run of another experiment (only federation.rounds, "
                "eval and analysis may change): choose another out-dir or drop resume"
            )
        path = self.out / "global.safetensors"
        with safe_open(str(path), framework="pt") as fh:
            done = int((fh.metadata() or {}).get("round", "0"))
        self.shared = load_tensors(path)
        extra = self.out / SERVER_STATE
        self.state = ServerState.restore(self.shared, load_tensors(extra) if extra.exists() else {})
        self.state.synced.clear()  # sites may have restarted since: send them dense weights first
        old = [r for r in read_metrics(self.out) if r["round"] <= done]
        self.run_dir = RunDir.reopen(self.out)  # keeps the tracker stores and their run ids
        self.run_dir.rewrite_metrics(old)
        self.history = old
        if old:
            self.cum_up, self.cum_down = old[-1]["cum_bytes_up"], old[-1]["cum_bytes_down"]
        self.next_round = done + 1

    def sample(self, t: int) -> list[str]:
        """Round ``t``'s participants, drawn exactly as the in-process engine draws them."""
        fed = self.cfg.federation
        private = self.cfg.privacy.private
        return sample_clients(self.client_ids, fed.clients_per_round, self.cfg.seed, t, private)

    def base_of(self, names: Iterable[str]) -> Tensors:
        """Initial values of base weights, from the seeded model rebuilt.

        Needed only the first time a server rule changes a base weight.
        """
        model, _ = build_model(self.cfg, self.num_labels, torch.device("cpu"))
        return read_from(model, names)

    @staticmethod
    def sent_bytes(msg: Message) -> int:
        """Bytes of the tensors' ArrayRecords (shared, and base changes if any) in a message."""
        return sum(record_bytes(r) for r in msg.content.array_records.values())

    @staticmethod
    def tensor_bytes(msg: Message) -> int:
        """Tensor data alone in a message (no headers or keys): the in-process ``bytes_down``."""
        return sum(data_nbytes(r) for r in msg.content.array_records.values())

    def round_record(
        self,
        t: int,
        participants: list[str],
        accepted: dict[str, Accepted],
        rejected: dict[str, str],
        train_msgs: list[Message],
        start: float,
    ) -> dict[str, Any]:
        """The in-process engine's round record from screened replies (eval added later)."""
        self._starts[t] = start
        up = {c: a.record_bytes for c, a in accepted.items()}
        down = {c: self.sent_bytes(m) for c, m in zip(participants, train_msgs, strict=False)}
        losses = {c: a.train_loss for c, a in accepted.items()}
        self.sizes.update({c: a.num_examples for c, a in accepted.items()})
        record: dict[str, Any] = {
            "round": t,
            "participants": participants,
            "bytes_up": sum(up.values()),
            "bytes_down": sum(down.values()),
            "bytes_up_per_client": up,
            "bytes_down_per_client": down,
            "payload_bytes_up": sum(a.payload_bytes for a in accepted.values()),
            "payload_bytes_down_per_client": {
                c: self.tensor_bytes(m) for c, m in zip(participants, train_msgs, strict=False)
            },
            "train_loss": sum(losses.values()) / len(losses) if losses else None,
            "train_loss_per_client": losses,
            "rejected": rejected,
        }
        if self.cfg.privacy.private:
            record["privacy"] = spent(self.cfg, t)
        self.cum_up += record["bytes_up"]
        self.cum_down += record["bytes_down"]
        record["cum_bytes_up"], record["cum_bytes_down"] = self.cum_up, self.cum_down
        record["wall_s"] = time.perf_counter() - start
        return record

    def add_down(self, record: dict[str, Any], extra: dict[str, int]) -> None:
        """Add bytes sent beyond the train messages' tensors (SecAgg+'s records) to a round."""
        for c, n in extra.items():
            per = record["bytes_down_per_client"]
            per[c] = per.get(c, 0) + n
        more = sum(extra.values())
        record["bytes_down"] += more
        self.cum_down += more
        record["cum_bytes_down"] = self.cum_down

    def save_global(self, state: ServerState, t: int) -> None:
        """Keep the server state after round ``t`` (a later run can resume from it).

        ``global.safetensors`` holds the shared tensors; an algorithm with more server state
        (per-client tensors, base-weight changes, its rule's state) also gets
        ``server.safetensors`` (written first; each file is replaced atomically).
        """
        extra = state.extra_tensors()
        if extra:
            save_tensors(self.out / SERVER_STATE, extra, {"round": str(t)})
        save_tensors(self.out / "global.safetensors", state.shared, {"round": str(t)})

    def finish(self, record: dict[str, Any], ev: dict[str, Any] | None, *, folded: bool) -> None:
        """Attach the evaluation (if any), time the round, append the record to metrics.jsonl.

        A round whose evaluation rode on the next round's train replies (``folded``) keeps the
        wall time of its training and aggregation; otherwise the evaluation is included.
        """
        if ev is not None:
            record["eval"] = ev
            if folded:
                record["eval_folded"] = True
            else:
                record["wall_s"] = time.perf_counter() - self._starts[record["round"]]
        if "exchange_s" in record:  # what the server itself spent: screening, averaging, saving
            record["server_s"] = record["wall_s"] - record["exchange_s"]
        self.history.append(record)
        self.run_dir.append_metrics(record)
        self.trackers.on_round(record)

    def close(self, state: ServerState) -> dict[str, Any]:
        """Write ``global.safetensors`` and ``summary.json``; return the summary."""
        final = self.history[-1]
        self.save_global(state, final["round"])
        ev = final["eval"]
        majority = ev.get("majority_per_client", {})
        summary = {
            "engine": "flower",
            "algorithm": self.cfg.algorithm,
            "variant": self.cfg.adapter.variant,
            "task": self.cfg.data.task,
            "model": self.cfg.model.name,
            "seed": self.cfg.seed,
            "rounds": final["round"],
            "num_clients": len(self.client_ids),
            "client_train_sizes": dict(sorted(self.sizes.items(), key=lambda x: int(x[0]))),
            "client_eval_sizes": {c: int(m["n"]) for c, m in ev["clients"].items()},
            "final": {
                k: v for k, v in ev.items() if k not in ("clients", "majority_per_client", "failed")
            },
            "final_clients": ev["clients"],
            **(
                {"majority_baseline": sum(majority.values()) / len(majority)}
                if majority and len(majority) == len(ev["clients"])
                else {}
            ),
            "total_bytes_up": final["cum_bytes_up"],
            "total_bytes_down": final["cum_bytes_down"],
            "mb_up": final["cum_bytes_up"] / 1e6,
            "mb_down": final["cum_bytes_down"] / 1e6,
            "params": self.params,
            **({"privacy": final["privacy"]} if "privacy" in final else {}),
            "wall_s": time.perf_counter() - self._t0,
            "discovery_s": self.discovery_s,
            "config_sha256": self.cfg.sha256(),
        }
        self.run_dir.write_summary(summary)
        self.trackers.finish()
        self.trackers.__exit__(None, None, None)
        return summary
