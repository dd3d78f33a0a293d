"""Tokenise once per run, sample local batches, and pad each batch dynamically.

Token ids are kept as plain integer lists (one entry per example) and padded per batch to the
longest member, so short SST-2 sentences do not pay for ``max_length`` tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from fedsa.tasks.examples import Example


@dataclass(frozen=True)
class Encoded:
    """A tokenised split: ``input_ids[i]`` and ``token_type_ids[i]`` belong to ``labels[i]``."""

    input_ids: list[list[int]]
    token_type_ids: list[list[int]] | None
    labels: np.ndarray  # (N,) int64
    pad_id: int
    token_labels: list[list[int]] | None = None
    """Causal LMs: per-token targets (``-100`` on prompt tokens); batches then carry these as
    ``labels`` (B, T), padded with ``-100``, and ``labels`` above is only a partition key."""

    def __len__(self) -> int:
        return len(self.input_ids)

    @cached_property
    def lengths(self) -> np.ndarray:
        """Token count of every example, (N,) int64 (computed once, for length grouping)."""
        return np.fromiter((len(x) for x in self.input_ids), dtype=np.int64, count=len(self))


def encode(
    examples: Sequence[Example], tokenizer: PreTrainedTokenizerBase, max_length: int
) -> Encoded:
    """Tokenise all examples in one call (fast tokenizers batch this internally)."""
    a = [ex.text_a for ex in examples]
    pairs = [ex.text_b for ex in examples]
    has_pair = any(b is not None for b in pairs)
    if has_pair:
        b = [p if p is not None else "" for p in pairs]
        enc = tokenizer(a, b, truncation=True, max_length=max_length)
    else:
        enc = tokenizer(a, truncation=True, max_length=max_length)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return Encoded(
        input_ids=[list(x) for x in enc["input_ids"]],
        token_type_ids=[list(x) for x in enc["token_type_ids"]]
        if "token_type_ids" in enc
        else None,
        labels=np.asarray([ex.label for ex in examples], dtype=np.int64),
        pad_id=int(pad_id),
    )


def concat(parts: Sequence[Encoded]) -> Encoded:
    """One split made of ``parts`` in order (tasks tokenised apart, ``data.client_tasks``).

    A part without token types (one that never had a second text) gets zeros, as BERT-style
    tokenizers give a single text; a single part is returned as it is.
    """
    if len(parts) == 1:
        return parts[0]
    types = None
    if any(p.token_type_ids is not None for p in parts):
        types = [
            row
            for p in parts
            for row in (p.token_type_ids or [[0] * len(ids) for ids in p.input_ids])
        ]
    return Encoded(
        input_ids=[row for p in parts for row in p.input_ids],
        token_type_ids=types,
        labels=np.concatenate([p.labels for p in parts]),
        pad_id=parts[0].pad_id,
    )


def collate(data: Encoded, indices: Sequence[int]) -> dict[str, torch.Tensor]:
    """Pad the selected examples to their longest member.

    Returns:
        ``input_ids``, ``attention_mask`` (and ``token_type_ids``), each (batch, longest), and
        ``labels`` (batch,), or (batch, longest) with ``-100`` padding for per-token targets.
    """
    length = max(len(data.input_ids[i]) for i in indices)
    ids = torch.full((len(indices), length), data.pad_id, dtype=torch.long)  # (B, T)
    mask = torch.zeros((len(indices), length), dtype=torch.long)  # (B, T)
    types = torch.zeros((len(indices), length), dtype=torch.long) if data.token_type_ids else None
    for row, i in enumerate(indices):
        seq = data.input_ids[i]
        ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
        if types is not None and data.token_type_ids is not None:
            types[row, : len(seq)] = torch.tensor(data.token_type_ids[i], dtype=torch.long)
    batch = {
        "input_ids": ids,
        "attention_mask": mask,
        "labels": torch.from_numpy(data.labels[list(indices)]),
    }
    if data.token_labels is not None:
        targets = torch.full((len(indices), length), -100, dtype=torch.long)  # (B, T)
        for row, i in enumerate(indices):
            targets[row, : len(data.token_labels[i])] = torch.tensor(data.token_labels[i])
        batch["labels"] = targets
    if types is not None:
        batch["token_type_ids"] = types
    return batch


def sample_batches(
    indices: Sequence[int],
    steps: int,
    batch_size: int,
    rng: np.random.Generator,
    lengths: np.ndarray | None = None,
) -> list[list[int]]:
    """``steps`` batches drawn by walking random permutations of ``indices``.

    Each example is seen once per pass before any is repeated; a client with fewer examples than
    ``batch_size`` gets batches of all its examples. Stateless given ``rng``, which the engine
    derives from (seed, round, client) so a resumed or reordered run draws the same batches.

    With ``lengths`` (token counts of all examples), the examples used from each pass are sorted
    by length before being cut into batches, and the batch order is then shuffled: the round
    trains on exactly the same examples as without it, but each batch holds similar lengths, so
    dynamic padding wastes little. Sorting stays within a pass, so (as without grouping) an
    example can repeat within a batch only where that batch spans two passes.
    """
    pool = np.asarray(indices, dtype=np.int64)
    size = min(batch_size, len(pool))
    needed = steps * size
    order: list[int] = []
    while len(order) < needed:
        drawn = rng.permutation(pool)
        if lengths is not None:
            drawn = drawn[: needed - len(order)]
            drawn = drawn[np.argsort(lengths[drawn], kind="stable")]
        order.extend(int(i) for i in drawn)
    batches = [order[s * size : (s + 1) * size] for s in range(steps)]
    if lengths is not None:
        batches = [batches[int(p)] for p in rng.permutation(steps)]
    return batches


def length_sorted_chunks(data: Encoded, indices: Sequence[int], batch_size: int) -> list[list[int]]:
    """Evaluation batches of similar lengths, which minimises padding."""
    ordered = sorted(indices, key=lambda i: len(data.input_ids[i]))
    return [ordered[s : s + batch_size] for s in range(0, len(ordered), batch_size)]
