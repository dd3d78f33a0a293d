"""GPU path: local-training steps/s of fp32 vs bf16 autocast through fedsa's own client round.

Self-contained: no data files and no downloaded weights. It builds a randomly initialised BERT
with all-MiniLM-L6-v2's shape (hidden 384, 6 layers, 12 heads, intermediate 1536, vocab 30522),
adds LoRA through :func:`fedsa.adapters.build_peft_model` (fedsa-lora layout: r 8 on query and
value), and trains on random token batches of realistic lengths with
:func:`fedsa.engine.client.client_round`, the exact code every fedsa client runs, switching only
``precision``. Evaluation (inference mode, length-sorted batches) is timed too. Prints a markdown
table; ``--device cpu`` gives a quick smoke test. Runs in well under 3 minutes on one GPU.

    PYTHONPATH=src python benchmarks/gpu.py            # --steps 100 --repeats 3 by default
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, BertConfig

from fedsa.adapters.layout import Layout, apply_trainable, make_layout
from fedsa.adapters.variants import VARIANTS, build_peft_model
from fedsa.algorithms.hooks import ClientStart
from fedsa.algorithms.registry import ALGORITHMS
from fedsa.config.schema import AdapterConfig, FederationConfig, RunConfig
from fedsa.core.device import autocast, autocast_dtype, bf16_supported
from fedsa.core.params import Tensors, read_from, select
from fedsa.engine.client import client_round
from fedsa.tasks.batching import Encoded
from fedsa.tasks.classification import evaluate

MINILM_SHAPE = {
    "vocab_size": 30522,
    "hidden_size": 384,
    "num_hidden_layers": 6,
    "num_attention_heads": 12,
    "intermediate_size": 1536,
    "max_position_embeddings": 512,
}


def random_split(n: int, lengths: str, rng: np.random.Generator) -> Encoded:
    """Random token ids with ``[CLS] ... [SEP]``; lengths like SST-2's or all 128."""
    if lengths == "sst2":  # SST-2 under MiniLM's tokenizer: median ~12, long tail to ~66
        sizes = np.clip(rng.lognormal(2.5, 0.6, size=n).astype(int) + 2, 4, 66)
    else:
        sizes = np.full(n, 128)
    ids = [[101, *rng.integers(1000, 30000, size=int(s) - 2).tolist(), 102] for s in sizes]
    return Encoded(
        input_ids=ids,
        token_type_ids=[[0] * len(x) for x in ids],
        labels=rng.integers(0, 2, size=n).astype(np.int64),
        pad_id=0,
    )


def build(device: torch.device) -> tuple[torch.nn.Module, Layout, Tensors]:
    """The model, its fedsa-lora layout and its initial adapter state (every client's start)."""
    torch.manual_seed(0)
    config = BertConfig(**MINILM_SHAPE)  # type: ignore[arg-type]
    config.num_labels = 2
    base = AutoModelForSequenceClassification.from_config(config)  # type: ignore[no-untyped-call]
    model = build_peft_model(base, AdapterConfig(), 0).to(device)
    layout = make_layout(model, VARIANTS["lora"], ALGORITHMS["fedsa-lora"], False)
    apply_trainable(model, layout)
    state = read_from(model, [*layout.shared, *layout.private, *layout.frozen])
    return model, layout, state


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_round(
    model: torch.nn.Module,
    layout: Layout,
    state: Tensors,
    data: Encoded,
    cfg: RunConfig,
    seed: int,
    device: torch.device,
) -> float:
    """Seconds for one client round of ``cfg.federation.local_steps`` steps from ``state``."""
    sync(device)
    start = time.perf_counter()
    private = select(state, layout.private)
    start_state = ClientStart(
        select(state, layout.frozen), select(state, layout.shared), private, private, {}
    )
    client_round(
        model,
        layout,
        ALGORITHMS[cfg.algorithm],
        start=start_state,
        data=data,
        indices=list(range(len(data))),
        cfg=cfg,
        round_idx=1,
        seed=seed,
        device=device,
    )
    sync(device)
    return time.perf_counter() - start


def eval_rate(
    model: torch.nn.Module, data: Encoded, dtype: torch.dtype | None, device: torch.device
) -> float:
    """Examples/s of :func:`fedsa.tasks.classification.evaluate` (inference mode, batch 256,
    length-sorted)."""
    idx = list(range(len(data)))
    with autocast(device, dtype):
        evaluate(model, data, idx[:256], 256, device)  # warm-up
        sync(device)
        start = time.perf_counter()
        evaluate(model, data, idx, 256, device)
        sync(device)
    return len(idx) / (time.perf_counter() - start)


ARMS = (
    ("fp32", "fp32", False),
    ("fp32 + TF32 matmul", "fp32", True),
    ("bf16 autocast", "bf16", False),
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--steps", type=int, default=100, help="optimizer steps per measurement")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 64])
    ap.add_argument("--examples", type=int, default=4096, help="random examples per length mix")
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA device: run with --device cpu for a smoke test")

    model, layout, state = build(device)
    rng = np.random.default_rng(0)
    data = {name: random_split(args.examples, name, rng) for name in ("sst2", "len128")}
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device: {name}; torch {torch.__version__}; MiniLM-shaped BERT, random init, LoRA r 8")
    print(f"precision='auto' resolves to: {autocast_dtype('auto', device) or 'fp32'}\n")
    print("| lengths | batch | precision | steps/s min / med / max | vs fp32 | real tokens/s | "
          "eval examples/s (batch 256) | peak MiB |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for lengths, split in data.items():
        mean_len = float(np.mean(split.lengths))
        for bs in args.batch_sizes:
            base_rate = 0.0
            for label, precision, tf32 in ARMS:
                if precision == "bf16" and not bf16_supported(device):
                    continue
                if tf32 and device.type != "cuda":  # TF32 is a CUDA (Ampere+) matmul mode
                    continue
                torch.backends.cuda.matmul.allow_tf32 = tf32
                torch.backends.cudnn.allow_tf32 = tf32
                fed_cfg = FederationConfig(local_steps=args.steps, batch_size=bs)
                cfg = RunConfig(precision=precision, federation=fed_cfg)
                warm = dataclasses.replace(
                    cfg, federation=dataclasses.replace(fed_cfg, local_steps=5)
                )
                timed_round(model, layout, state, split, warm, 99, device)
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                rates = [
                    args.steps / timed_round(model, layout, state, split, cfg, r, device)
                    for r in range(args.repeats)
                ]
                peak = (
                    torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else 0
                )
                ev = eval_rate(model, split, autocast_dtype(precision, device), device)
                med = statistics.median(rates)
                base_rate = base_rate or med
                print(
                    f"| {lengths} (mean {mean_len:.0f} tok) | {bs} | {label} | "
                    f"{min(rates):.1f} / {med:.1f} / {max(rates):.1f} | {med / base_rate:.2f}x | "
                    f"{med * bs * mean_len:,.0f} | {ev:,.0f} | {peak:,.0f} |",
                    flush=True,
                )
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


if __name__ == "__main__":
    main()
