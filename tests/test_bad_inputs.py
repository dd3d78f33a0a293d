"""The catalogue of bad inputs (docs/reliability.md): each is one line, exit 2, nothing lost.

Every case runs the real ``fedsa`` command in-process against an earlier finished run (as
``--out ... --overwrite`` or ``--resume``) and checks that the command prints exactly one
``fedsa: error:`` line naming the problem, no traceback, exits with status 2, and leaves every
byte of the earlier run as it was.
"""

from __future__ import annotations

import errno
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from fedsa.cli import main
from fedsa.engine import checkpoint

TINY = Path(__file__).parents[1] / "configs" / "tiny.toml"
FAST = ["federation.rounds=2", "federation.local_steps=1"]
SST2_HEADER = "sentence\tlabel\n"
GOOD_ROWS = "".join(
    f"a {'fine' if i % 2 else 'poor'} film number {i}\t{i % 2}\n" for i in range(40)
)


@dataclass
class Env:
    """What a case can use: a finished earlier run, a scratch folder, a fake GLUE mirror."""

    previous: Path
    tmp: Path
    glue: Path

    def data(self, train: str | None = SST2_HEADER + GOOD_ROWS, dev: str | None = None) -> str:
        """A GLUE mirror whose SST-2 files hold ``train``/``dev`` (None: file absent)."""
        root = self.tmp / "mirror"
        folder = root / "glue" / "SST-2"
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in (("train.tsv", train), ("dev.tsv", dev or SST2_HEADER + GOOD_ROWS)):
            if text is not None:
                (folder / name).write_text(text)
        return f"data.data_dir={str(root)!r}"

    def sst2(self, **files: str | None) -> list[str]:
        """Arguments of a tiny-model SST-2 run on the fake mirror, over the earlier run."""
        return ["run", str(TINY), *FAST, "data.task=sst2", self.data(**files), *self.over()]

    def over(self) -> list[str]:
        return ["--out", str(self.previous), "--overwrite"]

    def resumable(self) -> Path:
        """A copy of the earlier run, cut back to before its last round, to resume."""
        copy = self.tmp / "copy"
        if not copy.exists():
            shutil.copytree(self.previous, copy)
            (copy / "summary.json").unlink()
        return copy


def _toml(env: Env, text: str) -> str:
    path = env.tmp / "bad.toml"
    path.write_text(text)
    return str(path)


def _corrupt_all(env: Env, how: Callable[[Path], None]) -> list[str]:
    run = env.resumable()
    for ckpt in (run / "checkpoints").iterdir():
        how(ckpt / "state.safetensors")
    return ["run", "--resume", str(run)]


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _disk_full(env: Env, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    real = checkpoint._write

    def write(path: Path, data: bytes) -> None:
        if "round_000002" in str(path):
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, data)

    monkeypatch.setattr(checkpoint, "_write", write)
    return ["run", str(TINY), *FAST, "--out", str(env.tmp / "new")]


Case = Callable[[Env, pytest.MonkeyPatch], list[str]]
CASES: dict[str, tuple[Case, str]] = {
    "secure aggregation in-process": (
        lambda e, m: ["run", str(TINY), "privacy.secure_aggregation=true", *e.over()],
        "runs on Flower only",
    ),
    "secure aggregation with a non-sum method": (
        lambda e, m: [
            "run",
            str(TINY),
            "privacy.secure_aggregation=true",
            "algorithm=fedex-lora",
            *e.over(),
        ],
        "does not apply to fedex-lora",
    ),
    "unknown key": (lambda e, m: ["run", str(TINY), "federation.round=3", *e.over()], "rounds"),
    "unknown section": (
        lambda e, m: ["run", str(TINY), "fedration.rounds=3", *e.over()],
        "fedration",
    ),
    "misspelled key in file": (
        lambda e, m: ["run", _toml(e, "[adapter]\nrank = 4\n"), *e.over()],
        "adapter.rank",
    ),
    "wrong type": (
        lambda e, m: ["run", str(TINY), 'federation.rounds="ten"', *e.over()],
        "wrong type",
    ),
    "rounds zero": (
        lambda e, m: ["run", str(TINY), "federation.rounds=0", *e.over()],
        "federation.rounds",
    ),
    "alpha zero": (
        lambda e, m: ["run", str(TINY), "data.dirichlet_alpha=0", *e.over()],
        "dirichlet_alpha",
    ),
    "rank zero": (lambda e, m: ["run", str(TINY), "adapter.r=0", *e.over()], "adapter.r"),
    "negative lr": (lambda e, m: ["run", str(TINY), "optim.lr=-1", *e.over()], "optim.lr"),
    "more clients than examples": (
        lambda e, m: [
            "run",
            str(TINY),
            "data.num_clients=50",
            "data.max_train_examples=20",
            *e.over(),
        ],
        "50 clients",
    ),
    "unknown algorithm": (
        lambda e, m: ["run", str(TINY), "algorithm=fedsa", *e.over()],
        "fedsa-lora",
    ),
    "unknown variant": (
        lambda e, m: ["run", str(TINY), "adapter.variant=dora", *e.over()],
        "variant",
    ),
    "unknown task": (lambda e, m: ["run", str(TINY), "data.task=sst3", *e.over()], "sst2"),
    "unknown model": (
        lambda e, m: ["run", str(TINY), "model.name=/no/such/model", *e.over()],
        "model.name",
    ),
    "missing data directory": (
        lambda e, m: [
            "run",
            str(TINY),
            "data.task=sst2",
            "data.data_dir='/no/such/dir'",
            *e.over(),
        ],
        "not found",
    ),
    "missing data file": (lambda e, m: e.sst2(train=None), "train.tsv not found"),
    "malformed TSV row": (
        lambda e, m: e.sst2(train=SST2_HEADER + GOOD_ROWS + "a\tb\t1\n"),
        "line 42",
    ),
    "label the task lacks": (
        lambda e, m: e.sst2(train=SST2_HEADER + GOOD_ROWS + "ok\t7\n"),
        "unknown label",
    ),
    "empty dataset": (lambda e, m: e.sst2(train=SST2_HEADER), "no data rows"),
    "missing config file": (lambda e, m: ["run", str(e.tmp / "nope.toml"), *e.over()], "not found"),
    "invalid TOML": (
        lambda e, m: ["run", _toml(e, "[federation\nrounds = 2\n"), *e.over()],
        "not valid TOML",
    ),
    "override without =": (
        lambda e, m: ["run", str(TINY), "federation.rounds", *e.over()],
        "dotted.key=value",
    ),
    "head sharing with fedsa-lora": (
        lambda e, m: ["run", str(TINY), "federation.share_head=true", *e.over()],
        "share_head",
    ),
    "min_clients above sampled": (
        lambda e, m: ["run", str(TINY), "federation.min_clients=4", *e.over()],
        "min_clients",
    ),
    "fault rate above 1": (
        lambda e, m: ["run", str(TINY), "faults.lost_reply=1.5", *e.over()],
        "probability",
    ),
    "keep zero checkpoints": (
        lambda e, m: ["run", str(TINY), "checkpoint.keep=0", *e.over()],
        "checkpoint.keep",
    ),
    "output is a file": (
        lambda e, m: ["run", str(TINY), "--out", str(e.previous / "summary.json")],
        "is a file",
    ),
    "output holds a run": (
        lambda e, m: ["run", str(TINY), "--out", str(e.previous)],
        "--overwrite",
    ),
    "resume a non-run folder": (
        lambda e, m: ["run", "--resume", str(e.tmp)],
        "not a run directory",
    ),
    "resume with another config": (
        lambda e, m: ["run", str(TINY), "seed=5", "--resume", str(e.resumable())],
        "seed",
    ),
    "truncated checkpoints": (
        lambda e, m: _corrupt_all(e, lambda p: p.write_bytes(p.read_bytes()[:64])),
        "no valid checkpoint",
    ),
    "tampered checkpoints": (lambda e, m: _corrupt_all(e, _flip), "checksum"),
    "unreadable checkpoints": (
        lambda e, m: _corrupt_all(e, lambda p: (p.parent / "manifest.json").write_text("{")),
        "unreadable",
    ),
    "disk full while checkpointing": (_disk_full, "No space left on device"),
}


@pytest.fixture(scope="module")
def previous(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("previous") / "run"
    assert main(["run", str(TINY), *FAST, "--out", str(out)]) == 0
    return out


def _snapshot(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_the_catalogue_has_at_least_25_cases() -> None:
    assert len(CASES) >= 25


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_is_one_line_exit_2_and_loses_nothing(
    name: str,
    previous: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    make_args, expected = CASES[name]
    env = Env(previous, tmp_path, tmp_path / "mirror")
    argv = make_args(env, monkeypatch)
    before = {root: _snapshot(root) for root in (previous, tmp_path)}
    code = main(argv)
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("fedsa: error:")]
    assert code == 2, err
    assert len(errors) == 1 and "Traceback" not in err, err
    assert expected in errors[0], errors[0]
    for root, files in before.items():
        after = _snapshot(root)
        changed = [p for p in files if after.get(p) != files[p]]
        assert not changed, f"{name}: earlier files changed or vanished: {changed[:3]}"
    if name == "disk full while checkpointing":
        ckpts = sorted(p.name for p in (tmp_path / "new" / "checkpoints").iterdir())
        assert ckpts == ["round_000001"]  # the earlier checkpoint survives, no temp leftovers
