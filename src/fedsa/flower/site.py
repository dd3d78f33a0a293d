"""One site's work for one message, wherever it runs: in the resident worker or in-process.

This is the only module of the Flower backend that calls the core's client step, and the only
place those calls live (``prepare``, ``client_round``, ``client_seed``, the algorithm's install
step, ``evaluate_client``), so a refactor of the core re-points them here. A
:class:`SiteRunner` keeps what a message needs across messages: the prepared run (torch, base
model, tokenised data; rebuilt only when the config changes something :func:`build_key` covers)
and the client's private tensors (re-read only when the state file on disk changed under it).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fedsa.algorithms.hooks import ClientStart
from fedsa.config.schema import NOT_COMPUTED, RunConfig
from fedsa.core.errors import ConfigError
from fedsa.core.io import atomic_write_bytes
from fedsa.core.params import Tensors
from fedsa.engine.client import client_round, client_seed, install_start
from fedsa.engine.evaluation import evaluate_client
from fedsa.engine.prepare import Federation, prepare
from fedsa.engine.server_step import start_rank, upload_weight
from fedsa.flower.basesync import BaseCopies
from fedsa.flower.channel import Arrays, Packet
from fedsa.flower.codec import config_from_record, experiment_key
from fedsa.flower.state import (
    generations_path,
    load_private,
    pick_state,
    state_path,
    store_private,
)
from fedsa.privacy.secure import client_update

log = logging.getLogger(__name__)

BASE, MERGE = "base/", "merge/"
"""Prefixes of base-weight tensors in a request's arrays (adapter names start ``base_model.``):
absolute changed weights, or the latest change in its wire form."""

#: Config sections that shape no prepared piece (data, split, tokens, model, layout).
_NOT_BUILT = ("optim", "eval", "analysis", "checkpoint", "faults", "privacy", *NOT_COMPUTED)


def build_key(cfg: RunConfig) -> str:
    """A fingerprint of what :func:`fedsa.engine.prepare.prepare` builds from ``cfg``.

    Local steps, batch size, optimiser and evaluation settings are read from the message's config
    at every step, so changing them between runs reuses the loaded model and data.
    """
    tree = cfg.to_dict()
    for key in _NOT_BUILT:
        tree.pop(key, None)
    tree["federation"] = {"share_head": tree["federation"]["share_head"]}
    return hashlib.sha256(json.dumps(tree, sort_keys=True).encode()).hexdigest()[:16]


def to_numpy(tensors: Tensors) -> Arrays:
    """Named CPU tensors as numpy arrays (what the channel and Flower's ``Array`` carry)."""
    return {k: v.detach().cpu().numpy() for k, v in tensors.items()}


def from_numpy(arrays: Arrays) -> Tensors:
    """Named numpy arrays as independent torch tensors."""
    return {k: torch.from_numpy(np.array(v, copy=True)) for k, v in arrays.items()}


class SiteRunner:
    """A site's client across messages and runs (the resident worker holds one for its life)."""

    def __init__(self, max_runs: int = 1) -> None:
        """Keep the prepared pieces of up to ``max_runs`` distinct configs in memory."""
        self.max_runs = max_runs
        self._feds: OrderedDict[str, Federation] = OrderedDict()
        self._private: dict[tuple[str, str, str], tuple[tuple[str, int, int], Tensors]] = {}
        self._bases = BaseCopies()

    def federation(self, cfg: RunConfig) -> tuple[Federation, bool]:
        """The prepared run for ``cfg`` (from memory when only unbuilt settings changed)."""
        key = build_key(cfg)
        cached = key in self._feds
        if cached:
            self._feds.move_to_end(key)
        else:
            log.info("preparing model and data for config %s", key)
            self._feds[key] = prepare(cfg)
            while len(self._feds) > self.max_runs:
                self._feds.popitem(last=False)
        return dataclasses.replace(self._feds[key], cfg=cfg), cached

    def _load_private(
        self, fed: Federation, state_dir: Path | None, exp: str, client: str, run: int, t: int,
        training: bool, context: Any,
    ) -> Tensors:  # fmt: skip
        if state_dir is None:
            return load_private(context, None, exp, client, fed.init_private)
        path = pick_state(state_dir, exp, client, run, t, training)
        if path is None:
            return dict(fed.init_private)
        info = path.stat()
        sig = (str(path), info.st_mtime_ns, info.st_size)
        memo = self._private.get((str(state_dir), exp, client))
        if memo is not None and memo[0] == sig:
            return memo[1]
        return load_private(
            context, state_dir, exp, client, fed.init_private,
            run_id=run, round_idx=t, training=training,
        )  # fmt: skip

    def handle(self, request: Packet, context: Any = None) -> Packet:
        """Train or evaluate this node's client for one message; the reply as a packet.

        ``request.header`` holds ``kind`` (``train``/``evaluate``), ``config`` (the message's
        ConfigRecord), ``node`` (the node config) and ``run-id``; ``request.arrays`` the global
        shared tensors. ``context`` (Flower's, in-process only) keeps private state when the
        node has no state dir.
        """
        start = time.perf_counter()
        head = request.header
        settings: dict[str, Any] = head["config"]
        node: dict[str, Any] = head["node"]
        cfg = config_from_record(settings)
        exp = experiment_key(cfg)
        if node.get("data-dir"):
            cfg = dataclasses.replace(
                cfg, data=dataclasses.replace(cfg.data, data_dir=str(node["data-dir"]))
            )
        client = str(node["client-id"])
        fed, cached = self.federation(cfg)
        if client not in fed.client_ids:
            raise ConfigError(
                f"node client-id {client!r} is not a client of this config "
                f"(0..{len(fed.client_ids) - 1}): fix --node-config client-id"
            )
        k = fed.client_ids.index(client)
        t, run = int(settings["round"]), int(head.get("run-id", 0))
        state_dir = Path(str(node["state-dir"])) if node.get("state-dir") else None
        training = head["kind"] == "train"
        private = self._load_private(fed, state_dir, exp, client, run, t, training, context)
        arrays = from_numpy(request.arrays)
        changes = {k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith((BASE, MERGE))}
        shared = {k: v for k, v in arrays.items() if not k.startswith((BASE, MERGE))}
        base = self._bases.current(fed, (exp, client, run), changes, settings, context)
        rank = start_rank(fed.cfg, client)
        start_state = ClientStart(fed.frozen, shared, private, fed.init_private, base, rank)
        ready = time.perf_counter()
        records: dict[str, dict[str, float | int]] = {}
        upload: Arrays = {}
        if not training or bool(settings.get("eval-before", False)):
            evaluated = t - 1 if training else t  # eval-before scores the previous round's model
            keep = generations_path(state_dir, exp, client, evaluated) if state_dir else None
            records["eval"] = self._evaluate(fed, k, start_state, keep)
        if training:
            result = client_round(
                fed.model, fed.layout, fed.algorithm, start=start_state,
                data=fed.train, indices=fed.client_train[k], cfg=fed.cfg, round_idx=t,
                seed=client_seed(fed.cfg.seed, t, k), device=fed.device,
            )  # fmt: skip
            store_private(context, state_dir, exp, client, result.private, t, run)
            if state_dir is not None:
                path = state_path(state_dir, exp, client)
                info = path.stat()
                sig = (str(path), info.st_mtime_ns, info.st_size)
                self._private[(str(state_dir), exp, client)] = (sig, result.private)
            sent = result.upload
            if cfg.privacy.secure_aggregation:  # masked by SecAgg+: the update, clipped under DP
                weight = upload_weight(cfg, result.num_examples)
                sent = client_update(result.upload, shared, cfg, weight)
                records["secure"] = {"weight": weight}
            upload = to_numpy(sent)
            records["train"] = {
                "train-loss": result.train_loss,
                "num-examples": result.num_examples,
            }
        records["timing"] = {
            "prepare-s": ready - start,
            "work-s": time.perf_counter() - ready,
            "prepared-cached": float(cached),
        }
        return Packet({"client": client, "records": records}, upload)

    @staticmethod
    def _evaluate(
        fed: Federation, k: int, start: ClientStart, keep: Path | None
    ) -> dict[str, float]:
        """Personalised metrics: what the server sent + own private, on the client's eval shard.

        A generation task's records (prompt, generated text, answer, reference) are written to
        ``keep`` on this node; they never go to the server.
        """
        install_start(fed.model, fed.algorithm, start, fed.layout, fed.cfg)
        texts: list[dict[str, Any]] = []
        metrics: dict[str, float] = dict(evaluate_client(fed, k, texts))
        if texts and keep is not None:
            lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in texts)
            atomic_write_bytes(keep, lines.encode())
        return metrics  # with the majority prior and the gain over it (evaluate_client)
