"""Engine overhead and training throughput: one fedsa round vs the same steps in a bare loop.

Arms, interleaved in one process (A B C, A B C, ... with the order rotated each repeat) so that
load from other jobs on a shared CPU hits all of them alike:

* ``engine``: :func:`fedsa.engine.simulation.run_rounds` for 1 round of 3 clients x 10 local steps
  (MiniLM, SST-2, batch 16); its training time excludes the round's evaluation.
* ``bare``: the same 30 optimizer steps on the same, pre-collated batches in a plain PEFT +
  PyTorch loop on the same model: per client, reset the adapters to the common initial state,
  seed dropout, a fresh AdamW, 10 steps, keep a copy of the trained tensors; then average A.
  Its result is checked to equal the engine's global A bit for bit (same work, not just timing).
* ``engine+group``: the engine with ``federation.group_by_length = true`` (other batches, less
  padding), for the throughput comparison.

Then one engine round under cProfile shows where the time outside forward/backward/step goes.

Times are CPU seconds of this process with torch on one thread (``--threads 1``): on a CPU shared
with other jobs, wall time of minute-long arms swings with their load (we saw 5 s to 200 s for
the same round), while CPU time does not. Wall times are reported too.

    HF_HUB_OFFLINE=1 FEDSA_DATA_DIR=/work/shared/data PYTHONPATH=src \
        python benchmarks/engine_overhead.py --repeats 7
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import time
from typing import Any

import numpy as np
import torch
from common import REPO, fmt, machine, stats, table, write_json

import fedsa.engine.simulation
from fedsa.config.load import load_config
from fedsa.config.schema import RunConfig
from fedsa.core.params import Tensors
from fedsa.engine.client import client_seed
from fedsa.engine.prepare import Federation, prepare
from fedsa.engine.simulation import run_rounds
from fedsa.tasks.batching import collate, sample_batches

BASE = REPO / "configs" / "minilm-sst2.toml"


def config(*extra: str) -> RunConfig:
    return load_config(
        BASE,
        [
            "data.num_clients=3",
            "federation.clients_per_round=0",
            "federation.rounds=1",
            "federation.local_steps=10",
            "federation.batch_size=16",
            "data.eval_examples_per_client=64",
            *extra,
        ],
    )


EVAL_CPU: list[float] = []


def _timed_eval(*args: Any, **kwargs: Any) -> Any:
    """``evaluate_clients`` that also records its CPU time (benchmark instrumentation only)."""
    start = time.process_time()
    try:
        return _evaluate_clients(*args, **kwargs)
    finally:
        EVAL_CPU.append(time.process_time() - start)


_evaluate_clients = fedsa.engine.simulation.evaluate_clients
fedsa.engine.simulation.evaluate_clients = _timed_eval


def engine_round(fed: Federation) -> tuple[float, float, float, float, Tensors]:
    """Training wall s, training CPU s, eval wall s, eval CPU s, new global shared tensors."""
    cpu = time.process_time()
    state, _, history = run_rounds(fed)
    shared = state.shared
    cpu = time.process_time() - cpu
    rec = history[-1]
    return rec["wall_s"] - rec["eval_s"], cpu - EVAL_CPU[-1], rec["eval_s"], EVAL_CPU[-1], shared


def bare_batches(fed: Federation, grouped: bool = False) -> list[list[dict[str, torch.Tensor]]]:
    """Exactly the engine's batches (same seeds), collated in advance (not timed)."""
    cfg = fed.cfg
    out = []
    for k in range(len(fed.client_ids)):
        rng = np.random.default_rng(client_seed(cfg.seed, 1, k))
        idx = sample_batches(
            fed.client_train[k],
            cfg.federation.local_steps,
            cfg.federation.batch_size,
            rng,
            lengths=fed.train.lengths if grouped else None,
        )
        out.append([collate(fed.train, b) for b in idx])
    return out


def bare_round(fed: Federation, batches: list[list[dict[str, torch.Tensor]]]) -> Tensors:
    """The same round without the engine: plain PEFT model, plain AdamW, plain loop."""
    cfg = fed.cfg
    model = fed.model
    params = dict(model.named_parameters())
    init = {**fed.frozen, **fed.init_shared, **fed.init_private}
    trainable = [p for p in model.parameters() if p.requires_grad]
    shared_sum: dict[str, torch.Tensor] = {}
    total = 0
    for k, client_batches in enumerate(batches):
        with torch.no_grad():
            for name, value in init.items():
                params[name].copy_(value)
        torch.manual_seed(client_seed(cfg.seed, 1, k))
        opt = torch.optim.AdamW(trainable, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
        model.train()
        for batch in client_batches:
            loss = model(**batch).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        n = len(fed.client_train[k])
        total += n
        for name in fed.layout.shared:
            shared_sum[name] = shared_sum.get(name, 0) + params[name].detach() * n
    return {name: (v / total) for name, v in shared_sum.items()}


def tokens(batches: list[list[dict[str, torch.Tensor]]]) -> tuple[int, int]:
    """(real tokens, padded tokens) over all batches of a round."""
    real = sum(int(b["attention_mask"].sum()) for cb in batches for b in cb)
    padded = sum(b["attention_mask"].numel() for cb in batches for b in cb)
    return real, padded


def profile_round(fed: Federation) -> list[list[object]]:
    """cProfile of one engine round, bucketed into model work and the engine's own code."""
    prof = cProfile.Profile()
    prof.enable()
    start = time.perf_counter()
    run_rounds(fed)
    total = time.perf_counter() - start
    prof.disable()
    st = pstats.Stats(prof)
    entries: dict[tuple[str, int, str], Any] = st.stats  # type: ignore[attr-defined]

    def cum(pred: Any) -> float:
        return float(sum(v[3] for k, v in entries.items() if pred(k)))

    buckets = {
        "forward (model __call__, training + eval)": cum(
            lambda k: k[2] == "_call_impl" and "module.py" in k[0]
        ),
        "backward": cum(lambda k: k[2] == "backward" and "_tensor.py" in k[0]),
        "optimizer.step": cum(lambda k: k[2] == "step" and "adamw.py" in k[0]),
        "zero_grad": cum(lambda k: k[2] == "zero_grad"),
        "collate (fedsa.tasks.batching)": cum(lambda k: k[2] == "collate" and "batching" in k[0]),
        "sample_batches": cum(lambda k: k[2] == "sample_batches"),
        "load_client_state (write adapters)": cum(lambda k: k[2] == "load_client_state"),
        "read_from (copy out adapters)": cum(lambda k: k[2] == "read_from"),
        "make_optimizer": cum(lambda k: k[2] == "make_optimizer"),
        "ClientStore get/put (clones)": cum(
            lambda k: k[2] in ("get", "put") and k[0].endswith("store.py")
        ),
        "validate_update + weighted_mean": cum(
            lambda k: k[2] in ("validate_update", "weighted_mean")
        ),
        "evaluate_clients (whole)": cum(lambda k: k[2] == "evaluate_clients"),
    }
    rows: list[list[object]] = [
        [name, f"{sec * 1000:.1f}", f"{100 * sec / total:.1f}%"] for name, sec in buckets.items()
    ]
    rows.append(["whole round", f"{total * 1000:.1f}", "100%"])
    os.makedirs(REPO / "docs" / "benchmarks", exist_ok=True)
    with open(REPO / "docs" / "benchmarks" / "engine_profile.txt", "w") as fh:
        pstats.Stats(prof, stream=fh).strip_dirs().sort_stats("cumulative").print_stats(40)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: CPU time is exact)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    fed = prepare(config())
    fed_group = prepare(config("federation.group_by_length=true"))
    fed_group.model = fed.model  # one model in memory; both runs write its whole adapter state
    plain_batches = bare_batches(fed)
    grouped_batches = bare_batches(fed_group, grouped=True)
    real, padded = tokens(plain_batches)
    real_g, padded_g = tokens(grouped_batches)

    # Same work: the bare loop reaches the engine's global A bit for bit.
    shared = engine_round(fed)[-1]
    bare_shared = bare_round(fed, plain_batches)
    max_diff = max(float((shared[k] - bare_shared[k]).abs().max()) for k in shared)

    arms = ["engine", "bare", "engine+group"]
    times: dict[str, list[float]] = {a: [] for a in arms}  # wall seconds of training
    cpus: dict[str, list[float]] = {a: [] for a in arms}  # CPU seconds of training
    evals: list[float] = []
    walls: list[float] = []
    eval_cpu: list[float] = []
    loads = [os.getloadavg()[0]]
    for rep in range(args.repeats + 1):  # repeat 0 warms up and is dropped
        order = arms[rep % 3 :] + arms[: rep % 3]
        for arm in order:
            if arm in ("engine", "engine+group"):
                train_s, train_cpu, eval_s, ecpu, _ = engine_round(
                    fed if arm == "engine" else fed_group
                )
                if rep and arm == "engine":
                    evals.append(eval_s)
                    walls.append(train_s + eval_s)
                    eval_cpu.append(ecpu)
            else:
                start, cpu = time.perf_counter(), time.process_time()
                bare_round(fed, plain_batches)
                train_s = time.perf_counter() - start
                train_cpu = time.process_time() - cpu
            if rep:
                times[arm].append(train_s)
                cpus[arm].append(train_cpu)
        loads.append(os.getloadavg()[0])

    ratios = [e / b for e, b in zip(cpus["engine"], cpus["bare"], strict=True)]
    wall_ratios = [e / b for e, b in zip(times["engine"], times["bare"], strict=True)]
    tput = {  # real tokens per CPU second of training
        "engine": [real / t for t in cpus["engine"]],
        "bare": [real / t for t in cpus["bare"]],
        "engine+group": [real_g / t for t in cpus["engine+group"]],
    }
    tput_ratio = [e / b for e, b in zip(tput["engine"], tput["bare"], strict=True)]
    group_ratio = [e / b for e, b in zip(tput["engine+group"], tput["bare"], strict=True)]
    share = [e / (e + t) for e, t in zip(eval_cpu, cpus["engine"], strict=True)]
    prof_rows = profile_round(fed)

    result = {
        "machine": machine(),
        "loadavg_1min_during": stats(loads),
        "config": "configs/minilm-sst2.toml, 3 clients x 10 steps, batch 16, 1 round",
        "bare_vs_engine_max_abs_diff": max_diff,
        "torch_threads": args.threads,
        "train_wall_s": {a: stats(v) for a, v in times.items()},
        "train_cpu_s": {a: stats(v) for a, v in cpus.items()},
        "ratio_engine_over_bare_cpu": stats(ratios),
        "ratio_engine_over_bare_wall": stats(wall_ratios),
        "tokens_per_s": {a: stats(v) for a, v in tput.items()},
        "tokens_ratio_engine_over_bare": stats(tput_ratio),
        "tokens_ratio_grouped_engine_over_bare": stats(group_ratio),
        "padding_fraction": {"plain": 1 - real / padded, "grouped": 1 - real_g / padded_g},
        "real_tokens_per_round": {"plain": real, "grouped": real_g},
        "eval_wall_s": stats(evals),
        "eval_cpu_s": stats(eval_cpu),
        "eval_share_of_round_cpu": stats(share),
        "profile": prof_rows,
    }
    write_json(REPO / "docs" / "benchmarks" / "engine_overhead.json", result)

    print(f"machine: {result['machine']}")
    print(f"1-min load average during the run: {fmt(stats(loads), 2)}")
    print(f"bare loop vs engine global A: max |diff| = {max_diff:.3g}\n")
    rows = [
        [a, fmt(stats(cpus[a])), fmt(stats(times[a])), fmt(stats(tput[a]), 0)]
        for a in arms  # seconds of training per round, tokens/s
    ]
    header = ["arm", "train CPU s/round", "train wall s/round", "real tokens per CPU s"]
    print(table(header, rows))
    print()
    print(
        table(
            ["quantity", "min / median / max"],
            [
                ["CPU-time ratio engine / bare", fmt(stats(ratios))],
                ["wall-time ratio engine / bare (load-sensitive)", fmt(stats(wall_ratios))],
                ["tokens/s ratio engine / bare", fmt(stats(tput_ratio))],
                ["tokens/s ratio engine+group / bare", fmt(stats(group_ratio))],
                ["eval CPU s per round (3 clients x 64 ex.)", fmt(stats(eval_cpu))],
                ["eval share of round CPU time", fmt(stats(share))],
            ],
        )
    )
    print(f"\npadding fraction: plain {1 - real / padded:.3f}, grouped {1 - real_g / padded_g:.3f}")
    print()
    print(table(["engine round, cProfile bucket", "ms (cumulative)", "share"], prof_rows))


if __name__ == "__main__":
    main()
