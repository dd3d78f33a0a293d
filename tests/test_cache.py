"""The on-disk token cache: identical tensors, invalidation by data changes, corruption rebuilt."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import save

import fedsa.tasks.cache
from fedsa.config.load import load_config
from fedsa.engine.prepare import prepare
from fedsa.models.loaders import load_tokenizer, tiny_tokenizer
from fedsa.tasks.batching import Encoded, encode
from fedsa.tasks.cache import cached_encode, encode_split, tokenizer_fingerprint
from fedsa.tasks.examples import Example
from fedsa.tasks.glue import load_task

TINY = Path(__file__).parents[1] / "configs" / "tiny.toml"
IDENTITY = {"model": "tiny-bert", "task": "synthetic", "split": "train"}


def same(a: Encoded, b: Encoded) -> bool:
    return (
        a.input_ids == b.input_ids
        and a.token_type_ids == b.token_type_ids
        and a.labels.dtype == b.labels.dtype
        and np.array_equal(a.labels, b.labels)
        and a.pad_id == b.pad_id
    )


def examples() -> list[Example]:
    texts = ["the film was good", "awful plot", "a really very dull and boring story", "great"]
    pairs = [None, "the ending", None, "music"]
    return [Example(t, p, i % 2) for i, (t, p) in enumerate(zip(texts, pairs, strict=True))]


@pytest.fixture
def count_encodes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts real tokenisations done through the cache module."""
    calls: list[int] = []

    def counting(*args: object, **kwargs: object) -> Encoded:
        calls.append(1)
        return encode(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(fedsa.tasks.cache, "encode", counting)
    return calls


def test_hit_returns_tensors_identical_to_fresh_tokenisation(
    tmp_path: Path, count_encodes: list[int]
) -> None:
    tok, exs = tiny_tokenizer(), examples()
    fresh = encode(exs, tok, 16)
    first = cached_encode(exs, tok, 16, identity=IDENTITY, cache_dir=tmp_path)
    second = cached_encode(exs, tok, 16, identity=IDENTITY, cache_dir=tmp_path)
    assert count_encodes == [1]  # the second call was served from disk
    assert same(first, fresh) and same(second, fresh)
    assert len(list(tmp_path.glob("*.safetensors"))) == 1
    assert len(list(tmp_path.glob("*.json"))) == 1


def test_entry_layout_round_trips_token_types() -> None:
    from safetensors.torch import load

    from fedsa.tasks.cache import _from_tensors, _to_tensors

    ids = [[2, 7, 3], [2, 3], [], [2, 9, 9, 3, 5]]
    types = [[0, 0, 0], [0, 0], [], [0, 0, 0, 1, 1]]
    enc = Encoded(ids, types, np.array([1, 0, 1, 0], dtype=np.int64), pad_id=0)
    assert same(_from_tensors(load(save(_to_tensors(enc))), 4, 0), enc)


def test_key_covers_max_length_identity_and_tokenizer(
    tmp_path: Path, count_encodes: list[int]
) -> None:
    tok, exs = tiny_tokenizer(), examples()
    cached_encode(exs, tok, 16, identity=IDENTITY, cache_dir=tmp_path)
    short = cached_encode(exs, tok, 4, identity=IDENTITY, cache_dir=tmp_path)
    assert max(len(x) for x in short.input_ids) == 4
    cached_encode(exs, tok, 16, identity={**IDENTITY, "split": "dev"}, cache_dir=tmp_path)
    assert count_encodes == [1, 1, 1]
    other = tiny_tokenizer()
    other.add_tokens(["zzzword"])
    assert tokenizer_fingerprint(other) != tokenizer_fingerprint(tok)
    assert tokenizer_fingerprint(tiny_tokenizer()) == tokenizer_fingerprint(tok)


def _write_sst2(root: Path, rows: list[str]) -> Path:
    task_dir = root / "glue" / "SST-2"
    task_dir.mkdir(parents=True, exist_ok=True)
    body = "sentence\tlabel\n" + "".join(f"{r}\n" for r in rows)
    (task_dir / "train.tsv").write_text(body, encoding="utf-8")
    (task_dir / "dev.tsv").write_text(body, encoding="utf-8")
    return root


def test_changed_data_file_invalidates_the_cache(tmp_path: Path, count_encodes: list[int]) -> None:
    root = _write_sst2(tmp_path / "data", ["the film was good\t1", "awful plot\t0"])
    cache = tmp_path / "cache"
    tok = tiny_tokenizer()

    def run() -> Encoded:
        task = load_task("sst2", root)
        ident = {"model": "tiny-bert", "task": "sst2", "split": "train"}
        return cached_encode(task.train, tok, 16, identity=ident, cache_dir=cache)

    before = run()
    assert same(run(), before) and count_encodes == [1]
    _write_sst2(root, ["the film was good\t1", "awful plot and dull\t0"])  # one sentence edited
    after = run()
    assert count_encodes == [1, 1]  # the edit forced a fresh tokenisation
    assert after.input_ids != before.input_ids
    assert same(after, encode(load_task("sst2", root).train, tok, 16))
    _write_sst2(root, ["the film was good\t1", "awful plot and dull\t1"])  # only a label changed
    run()
    assert count_encodes == [1, 1, 1]


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))


def _bad_offsets_with_valid_checksum(path: Path) -> None:
    """A well-formed file whose offsets do not fit its tokens, recorded with a matching sha256."""
    import hashlib
    import json

    import torch

    tensors = {
        "input_ids": torch.zeros(3, dtype=torch.int32),
        "offsets": torch.tensor([0, 2, 9, 1, 3], dtype=torch.int64),
        "labels": torch.zeros(4, dtype=torch.int64),
    }
    data = save(tensors)
    path.write_bytes(data)
    meta_path = path.with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    meta["sha256"] = hashlib.sha256(data).hexdigest()
    meta_path.write_text(json.dumps(meta))


CORRUPTIONS: dict[str, Callable[[Path], None]] = {
    "flipped byte": _flip_byte,
    "truncated tensors": lambda p: p.write_bytes(p.read_bytes()[:20]),
    "missing tensors": lambda p: p.unlink(),
    "garbage record": lambda p: p.with_suffix(".json").write_text("{not json"),
    "inconsistent offsets": _bad_offsets_with_valid_checksum,
}


@pytest.mark.parametrize("corrupt", list(CORRUPTIONS), ids=list(CORRUPTIONS))
def test_corrupt_entry_is_detected_and_rebuilt(
    tmp_path: Path,
    count_encodes: list[int],
    caplog: pytest.LogCaptureFixture,
    corrupt: str,
) -> None:
    tok, exs = tiny_tokenizer(), examples()
    fresh = encode(exs, tok, 16)
    cached_encode(exs, tok, 16, identity=IDENTITY, cache_dir=tmp_path)
    (entry,) = tmp_path.glob("*.safetensors")
    CORRUPTIONS[corrupt](entry)
    with caplog.at_level(logging.WARNING, logger="fedsa.tasks.cache"):
        rebuilt = cached_encode(exs, tok, 16, identity=IDENTITY, cache_dir=tmp_path)
    assert "corrupt" in caplog.text
    assert count_encodes == [1, 1]  # not trusted: tokenised again
    assert same(rebuilt, fresh)
    assert same(cached_encode(exs, tok, 16, identity=IDENTITY, cache_dir=tmp_path), fresh)
    assert count_encodes == [1, 1]  # and the rewritten entry is intact


def test_prepare_uses_the_cache_and_can_disable_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, count_encodes: list[int]
) -> None:
    monkeypatch.setenv("FEDSA_CACHE_DIR", str(tmp_path))
    cold = prepare(load_config(TINY))
    warm = prepare(load_config(TINY))
    assert count_encodes == [1, 1]  # train and dev, once
    assert same(cold.train, warm.train) and same(cold.dev, warm.dev)
    assert len(list((tmp_path / "tokens").glob("*.json"))) == 2
    prepare(load_config(TINY, ["data.cache=false"]))
    assert count_encodes == [1, 1, 1, 1]


@pytest.mark.slow
def test_real_tokenizer_and_data_round_trip(
    tmp_path: Path, data_dir: Path, minilm_path: Path
) -> None:
    cfg = load_config(None, ["model.name=minilm", "data.task=rte", "model.max_length=64"])
    task = load_task("rte", data_dir)
    tok = load_tokenizer("minilm")
    fresh = encode(task.dev, tok, 64)
    assert fresh.token_type_ids is not None and any(1 in t for t in fresh.token_type_ids)
    fedsa_dir = tmp_path / "c"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FEDSA_CACHE_DIR", str(fedsa_dir))
        encode_split(task.dev, tok, cfg, "dev")
        hit = encode_split(task.dev, tok, cfg, "dev")
    assert same(hit, fresh)
