"""Exact match of the untrained starting point (round 0) of a generation config, per client.

Every client starts from the same adapter; with LoRA's ``B = 0`` (also FFA-LoRA's) that is the
base model itself, so this is the "before" number of every LoRA algorithm at once.

Usage: python scripts/eval_initial.py CONFIG [key=value ...] --out FILE.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from fedsa.config.load import load_config
from fedsa.core.io import atomic_write_json
from fedsa.engine.prepare import prepare
from fedsa.engine.server_step import ServerState
from fedsa.engine.simulation import evaluate_clients
from fedsa.engine.store import ClientStore


def main() -> int:
    """Evaluate the initial state of every client and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("overrides", nargs="*")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    start = time.perf_counter()
    fed = prepare(load_config(args.config, args.overrides))
    store = ClientStore(fed.init_private, fed.client_ids)
    result = evaluate_clients(fed, ServerState(dict(fed.init_shared)), store)
    result["wall_s"] = time.perf_counter() - start
    result["config"] = fed.cfg.to_dict()
    atomic_write_json(Path(args.out), result)
    print(
        f"round 0 ({fed.cfg.model.name} on {fed.cfg.data.task}): exact match mean "
        f"{result['accuracy_mean']:.4f}, per client "
        f"{[round(c['accuracy'], 4) for c in result['clients'].values()]}, "
        f"{result['wall_s']:.0f} s; wrote {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
