"""Golden outputs: every algorithm x variant on ``configs/tiny.toml`` (seed 1, 2 rounds).

Recorded before the architecture refactor (issue 11) and kept since: a change of layout, hooks or
server rules must not move one byte of ``global.safetensors`` or ``clients/*.safetensors``, nor
any value of ``metrics.jsonl`` apart from its timings. Regenerate only for a deliberate change of
results, with ``python tests/test_golden.py`` (and say why in the commit).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest

from fedsa.cli import main

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "fixtures" / "golden_tiny.json"
TIMINGS = {"wall_s", "eval_s"}
CASES = [
    (algorithm, variant)
    for algorithm in ("fedsa-lora", "fedit", "ffa-lora", "feddpa", "local-only", "centralized")
    for variant in ("lora", "rslora", "vera")
    if not (algorithm == "feddpa" and variant == "vera")  # FedDPA refuses VeRA
]


def _strip(record: object) -> object:
    if isinstance(record, dict):
        return {k: _strip(v) for k, v in record.items() if k not in TIMINGS}
    if isinstance(record, list):
        return [_strip(v) for v in record]
    return record


def fingerprint(algorithm: str, variant: str, out: Path) -> dict[str, str]:
    """sha256 of every tensor file and of the timing-free metrics of one tiny run."""
    args = [
        "run",
        str(REPO / "configs" / "tiny.toml"),
        "seed=1",
        "federation.rounds=2",
        f"algorithm={algorithm}",
        f"adapter.variant={variant}",
        "--out",
        str(out),
        "--overwrite",
    ]
    assert main(args) == 0
    hashes = {"global.safetensors": hashlib.sha256((out / "global.safetensors").read_bytes())}
    for path in sorted((out / "clients").glob("*.safetensors")):
        hashes[f"clients/{path.name}"] = hashlib.sha256(path.read_bytes())
    lines = (out / "metrics.jsonl").read_text().splitlines()
    metrics = json.dumps([_strip(json.loads(line)) for line in lines], sort_keys=True)
    hashes["metrics"] = hashlib.sha256(metrics.encode())
    return {k: v.hexdigest() for k, v in hashes.items()}


@pytest.mark.parametrize(("algorithm", "variant"), CASES)
def test_outputs_match_the_recorded_golden_hashes(
    algorithm: str, variant: str, tmp_path: Path
) -> None:
    golden = json.loads(FIXTURE.read_text())[f"{algorithm}/{variant}"]
    assert fingerprint(algorithm, variant, tmp_path / "run") == golden


if __name__ == "__main__":  # record the fixture
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        table = {f"{a}/{v}": fingerprint(a, v, Path(tmp) / f"{a}-{v}") for a, v in CASES}
    FIXTURE.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")
    print(f"wrote {FIXTURE} ({len(table)} runs)", file=sys.stderr)
