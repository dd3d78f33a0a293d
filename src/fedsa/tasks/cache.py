"""On-disk cache of tokenised splits, so a repeated run skips tokenisation.

Tokenising all of SST-2 (67k sentences) takes seconds, longer than the rest of start-up after
the imports; a run with the same tokenizer, task, max length and data reuses the earlier result.

An entry is two files under ``$FEDSA_CACHE_DIR/tokens/`` (default ``~/.cache/fedsa``):

* ``<key>.safetensors``: ``input_ids`` and ``token_type_ids`` flattened (int32), ``offsets``
  (N+1, int64; example ``i`` is ``flat[offsets[i]:offsets[i+1]]``) and ``labels`` (N, int64);
* ``<key>.json``: what the key was made of, the entry's size and the sha256 of the tensor file.

The key is the sha256 of: the cache format, the model name, a hash of the tokenizer's full
definition (vocabulary, normaliser, special tokens and post-processor, via its serialised form),
the task, the split, ``max_length`` and a checksum of the exact examples handed to the tokenizer
(texts and labels, in order). Hashing the parsed examples rather than file bytes covers local
TSVs, hub data, subsampling and the synthetic task alike: any edit of a data file that changes
what is read changes the key. Both files are written atomically (tensors first, the JSON last as
the commit record); on load the tensor bytes must match the recorded sha256 and the structure
must be consistent, otherwise the entry is logged as corrupt and rebuilt, never trusted.
No pickle: safetensors and JSON only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load, save
from transformers import PreTrainedTokenizerBase

from fedsa.config.schema import RunConfig
from fedsa.core.io import atomic_write_bytes, atomic_write_json
from fedsa.tasks.batching import Encoded, encode
from fedsa.tasks.examples import Example

log = logging.getLogger(__name__)

CACHE_DIR_ENV = "FEDSA_CACHE_DIR"
FORMAT = 1
"""Bump when :func:`~fedsa.tasks.batching.encode` or the entry layout changes (old entries are
then ignored)."""


def cache_root() -> Path:
    """``$FEDSA_CACHE_DIR`` if set, else ``~/.cache/fedsa``."""
    env = os.environ.get(CACHE_DIR_ENV, "")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "fedsa"


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerBase) -> str:
    """sha256 of everything that decides the token ids a tokenizer produces.

    Fast tokenizers serialise their whole pipeline (vocabulary, normaliser, pre-tokeniser,
    post-processor with special tokens) to one JSON string; slow ones fall back to their vocab.
    The serialised ``truncation`` and ``padding`` are left out: they are the settings of the
    last call (``max_length`` is a key part of its own), so they would make the fingerprint
    depend on what the tokenizer was used for before.
    """
    h = hashlib.sha256(type(tokenizer).__name__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        spec = json.loads(backend.to_str())
        spec.pop("truncation", None)
        spec.pop("padding", None)
        h.update(json.dumps(spec, sort_keys=True).encode())
    else:
        h.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
    h.update(f"pad={tokenizer.pad_token_id}".encode())
    return h.hexdigest()


def examples_checksum(examples: Sequence[Example]) -> str:
    """sha256 of the examples' texts and labels, in order (unit/record separators between)."""
    h = hashlib.sha256()
    for ex in examples:
        h.update(f"{ex.text_a}\x1f{ex.text_b if ex.text_b is not None else ''}".encode())
        h.update(f"\x1f{ex.text_b is None:d}\x1f{ex.label}\x1e".encode())
    return h.hexdigest()


def _to_tensors(enc: Encoded) -> dict[str, torch.Tensor]:
    lengths = [len(x) for x in enc.input_ids]
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    flat = [t for x in enc.input_ids for t in x]
    tensors = {
        "input_ids": torch.tensor(flat, dtype=torch.int32),
        "offsets": torch.from_numpy(offsets),
        "labels": torch.from_numpy(np.ascontiguousarray(enc.labels, dtype=np.int64)),
    }
    if enc.token_type_ids is not None:
        types = [t for x in enc.token_type_ids for t in x]
        tensors["token_type_ids"] = torch.tensor(types, dtype=torch.int32)
    return tensors


def _split(flat: torch.Tensor, offsets: list[int]) -> list[list[int]]:
    values = flat.tolist()
    return [values[a:b] for a, b in zip(offsets[:-1], offsets[1:], strict=True)]


def _from_tensors(tensors: Mapping[str, torch.Tensor], n: int, pad_id: int) -> Encoded:
    """Rebuild an :class:`Encoded`; raises ValueError if the tensors are not a consistent entry."""
    offsets_t = tensors["offsets"]
    flat = tensors["input_ids"]
    labels = tensors["labels"]
    if offsets_t.shape != (n + 1,) or labels.shape != (n,):
        raise ValueError(f"sizes do not match {n} examples")
    offsets = offsets_t.tolist()
    steps_ok = all(b >= a for a, b in zip(offsets[:-1], offsets[1:], strict=True))
    if offsets[0] != 0 or offsets[-1] != flat.numel() or not steps_ok:
        raise ValueError("offsets are not a partition of the token array")
    types = tensors.get("token_type_ids")
    if types is not None and types.shape != flat.shape:
        raise ValueError("token_type_ids and input_ids differ in length")
    return Encoded(
        input_ids=_split(flat, offsets),
        token_type_ids=_split(types, offsets) if types is not None else None,
        labels=labels.numpy().astype(np.int64),
        pad_id=pad_id,
    )


def _load(root: Path, key: str, n: int) -> Encoded | None:
    """The entry for ``key`` if present and intact; None (after a warning if corrupt) otherwise."""
    meta_path, data_path = root / f"{key}.json", root / f"{key}.safetensors"
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        data = data_path.read_bytes()
        if meta.get("key") != key or meta.get("format") != FORMAT:
            raise ValueError("record names another key or format")
        if hashlib.sha256(data).hexdigest() != meta.get("sha256"):
            raise ValueError("tensor file does not match its recorded sha256")
        return _from_tensors(load(data), n, int(meta["pad_id"]))
    except (OSError, ValueError, KeyError, TypeError, SafetensorError) as exc:
        log.warning("token cache entry %s is corrupt (%s): rebuilding it", meta_path, exc)
        return None


def cached_encode(
    examples: Sequence[Example],
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    *,
    identity: Mapping[str, str],
    cache_dir: Path | None,
) -> Encoded:
    """:func:`~fedsa.tasks.batching.encode`, reusing an intact cache entry for the same inputs.

    Args:
        examples: the split to tokenise.
        tokenizer: the tokenizer; its fingerprint is part of the key.
        max_length: truncation length; part of the key.
        identity: further key parts, e.g. ``{"model": ..., "task": ..., "split": ...}``.
        cache_dir: folder of entries; None disables the cache (always tokenise).
    """
    if cache_dir is None:
        return encode(examples, tokenizer, max_length)
    parts = {
        "format": str(FORMAT),
        **identity,
        "tokenizer": tokenizer_fingerprint(tokenizer),
        "max_length": str(max_length),
        "examples": examples_checksum(examples),
    }
    key = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
    hit = _load(cache_dir, key, len(examples))
    if hit is not None:
        log.info("token cache hit %s (%s)", key[:12], identity)
        return hit
    enc = encode(examples, tokenizer, max_length)
    try:
        data = save(_to_tensors(enc))
        atomic_write_bytes(cache_dir / f"{key}.safetensors", data)
        record = {"format": FORMAT, "key": key, "parts": parts, "n": len(enc)}
        record |= {"pad_id": enc.pad_id, "sha256": hashlib.sha256(data).hexdigest()}
        atomic_write_json(cache_dir / f"{key}.json", record)
    except OSError as exc:  # a read-only or full disk must not stop the run
        log.warning("could not write token cache entry in %s (%s)", cache_dir, exc)
    return enc


def encode_split(
    examples: Sequence[Example],
    tokenizer: PreTrainedTokenizerBase,
    cfg: RunConfig,
    split: str,
    task: str = "",
) -> Encoded:
    """Tokenise one split of ``task`` (default ``cfg``'s), through the cache if ``data.cache``."""
    return cached_encode(
        examples,
        tokenizer,
        cfg.model.max_length,
        identity={"model": cfg.model.name, "task": task or cfg.data.task, "split": split},
        cache_dir=cache_root() / "tokens" if cfg.data.cache else None,
    )
