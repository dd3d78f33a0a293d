"""Generation-task evaluation: greedy decoding, final-answer extraction, exact match per client.

A client's personalised model (global shared + its private adapter tensors) continues each of
its evaluation prompts greedily for at most ``generate.max_new_tokens`` tokens (stopping at the
end-of-turn token). The final answer is the number after the last ``####`` if there is one, else
the last number in the text; commas, a leading ``$`` and trailing zeros after a decimal point do
not matter (``1,234.50`` == ``1234.5``). Exact match is the share of prompts whose extracted
answer equals the reference's; it is reported under ``accuracy`` (and ``exact_match``) so that
summaries, ``fedsa compare`` tables and plots work unchanged. ``loss`` is the teacher-forced
loss on the reference responses (zero-shot prompt), which moves even while exact match is 0.

Few-shot prompting (``generate.few_shot = k``; the paper uses 8-shot chain-of-thought) puts
``k`` fixed training examples as earlier conversation turns before each evaluation prompt.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from fedsa.tasks.batching import Encoded, collate, length_sorted_chunks

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
_MARKER = "####"


def normalize_number(text: str) -> str | None:
    """Canonical form of a number string (``"1,234.50"`` -> ``"1234.5"``), or None."""
    try:
        value = Decimal(text.replace(",", "").replace("$", "").strip())
    except InvalidOperation:
        return None
    if not value.is_finite():
        return None
    if value == value.to_integral_value():
        return str(int(value))
    return format(value.normalize(), "f")


def extract_answer(text: str) -> str | None:
    """The final answer of a solution: the number after the last ``####``, else the last number.

    Returns the normalised number, or None when the text holds no number.
    """
    if _MARKER in text:
        found = _NUMBER.search(text.rsplit(_MARKER, 1)[1])
        if found:
            return normalize_number(found.group())
    numbers = _NUMBER.findall(text)
    return normalize_number(numbers[-1]) if numbers else None


def is_correct(generated: str, reference: str) -> bool:
    """Exact match of the extracted final number (or of the normalised text, for non-numbers)."""
    if normalize_number(reference) is not None:
        return extract_answer(generated) == reference
    return " ".join(generated.split()) == reference


@dataclass(frozen=True)
class Generation:
    """What generation evaluation needs beyond the model: prompts, references, decoding budget."""

    tokenizer: PreTrainedTokenizerBase
    prompts: list[list[int]]
    """Token ids of each test prompt (few-shot turns included), aligned with ``Federation.dev``."""
    references: list[str]
    """Reference final answers, aligned with ``prompts``."""
    max_new_tokens: int
    batch_size: int
    stop_ids: tuple[int, ...]
    """Token ids that end a turn (EOS and the template's end-of-turn token)."""
    questions: tuple[str, ...] = ()
    """The plain text of each test prompt (no few-shot turns, no chat template), for the
    generation records a person reads (empty: the records decode ``prompts`` instead)."""


@torch.inference_mode()
def generate_greedy(
    model: torch.nn.Module,
    gen: Generation,
    indices: Sequence[int],
    device: torch.device,
    batch_size: int | None = None,
) -> dict[int, str]:
    """Greedy continuations of ``gen.prompts[i]`` for each ``i`` in ``indices``, as plain text.

    Prompts are left-padded in batches of similar length so every row continues from its end.
    """
    model.eval()
    pad = gen.tokenizer.pad_token_id if gen.tokenizer.pad_token_id is not None else 0
    ordered = sorted(indices, key=lambda i: len(gen.prompts[i]))
    size = batch_size or gen.batch_size
    texts: dict[int, str] = {}
    for s in range(0, len(ordered), size):
        chunk = ordered[s : s + size]
        width = max(len(gen.prompts[i]) for i in chunk)
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)  # (B, T)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)  # (B, T)
        for row, i in enumerate(chunk):
            p = gen.prompts[i]
            ids[row, width - len(p) :] = torch.tensor(p)
            mask[row, width - len(p) :] = 1
        out = model.generate(  # type: ignore[operator]
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            max_new_tokens=gen.max_new_tokens,
            do_sample=False,
            pad_token_id=pad,
            eos_token_id=list(gen.stop_ids),
        )
        for row, i in enumerate(chunk):
            new = out[row, width:].tolist()
            texts[i] = str(gen.tokenizer.decode(new, skip_special_tokens=True))
    return texts


@torch.inference_mode()
def reference_loss(
    model: torch.nn.Module,
    dev: Encoded,
    indices: Sequence[int],
    batch_size: int,
    device: torch.device,
) -> float:
    """Mean over examples of the teacher-forced loss on the reference response tokens."""
    model.eval()
    total = 0.0
    for chunk in length_sorted_chunks(dev, indices, batch_size):
        batch = {k: v.to(device) for k, v in collate(dev, chunk).items()}
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        targets = batch["labels"][:, 1:]  # (B, T-1): token t+1 is predicted at position t
        nll = torch.nn.functional.cross_entropy(
            logits[:, :-1].transpose(1, 2).float(), targets, ignore_index=-100, reduction="none"
        )  # (B, T-1)
        counts = (targets != -100).sum(dim=1).clamp(min=1)
        total += float((nll.sum(dim=1) / counts).sum())
    return total / len(indices)


def exact_match(
    model: torch.nn.Module,
    gen: Generation,
    dev: Encoded,
    indices: Sequence[int],
    batch_size: int,
    device: torch.device,
    records: list[dict[str, Any]] | None = None,
) -> dict[str, float]:
    """Exact match (as ``accuracy`` and ``exact_match``), reference loss and size on a shard.

    With ``records`` given, one record per example is appended to it, in ``indices`` order: what
    was asked, what the model generated, the answer extracted from it, the reference and whether
    they match (see :func:`generation_record`), so a person can read what the model answered.
    """
    texts = generate_greedy(model, gen, indices, device)
    verdicts = {i: is_correct(texts[i], gen.references[i]) for i in indices}
    if records is not None:
        records.extend(generation_record(gen, i, texts[i], verdicts[i]) for i in indices)
    n = len(indices)
    em = sum(verdicts.values()) / n
    loss = reference_loss(model, dev, indices, batch_size, device)
    return {"accuracy": em, "exact_match": em, "loss": loss, "n": float(n)}


def generation_record(gen: Generation, i: int, generated: str, correct: bool) -> dict[str, Any]:
    """One line of ``generations/round_<t>/<client>.jsonl``: test example ``i`` as scored."""
    prompt = gen.questions[i] if gen.questions else str(gen.tokenizer.decode(gen.prompts[i]))
    return {
        "index": i,
        "prompt": prompt,
        "generated": generated,
        "answer": extract_answer(generated),
        "reference": gen.references[i],
        "correct": correct,
    }


def prompt_view(data: Encoded) -> Encoded:
    """The zero-shot prompts of an encoded split (its tokens labelled ``-100``), without targets."""
    labels = data.token_labels or [[-100] * len(ids) for ids in data.input_ids]
    prompts = [
        [t for t, y in zip(ids, ys, strict=True) if y == -100]
        for ids, ys in zip(data.input_ids, labels, strict=True)
    ]
    return Encoded(prompts, None, data.labels, data.pad_id)
