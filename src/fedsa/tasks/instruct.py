r"""Instruction data for causal LMs: GSM8K, generic prompt/response JSONL, and a synthetic task.

Tasks:

* ``gsm8k``: grade-school maths (Cobbe et al., 2021). Read from ``<data_dir>/gsm8k/{train,test}
  .jsonl`` (fields ``question``, ``answer``; the official release) or the hub (``openai/gsm8k``,
  config ``main``). The response is the reference solution with its calculator annotations
  ``<<48/2=24>>`` removed; it ends in ``#### N``, the final answer used for exact match.
* ``instruct``: any JSONL pair ``<data.instruct_path>/{train,test}.jsonl`` with fields ``prompt``
  and ``response``.
* ``arith``: generated one-line additions ("What is 12 plus 7?" -> "12 + 7 = 19 #### 19"); no
  files, no network; for tests and the tiny config.

Prompts use the tokenizer's chat template when it has one (user turn, then the assistant turn
holding the response); otherwise ``Question: ...\nAnswer: ...``. Loss is on response tokens only:
prompt and padding positions carry label ``-100``.

Partitions: generation examples have no class label, so each example gets a *pseudo-label*, the
quartile (over the training set) of its response length in characters. ``data.partition = "iid"``
splits uniformly; ``"dirichlet"`` reuses the label-Dirichlet partitioner on these length buckets
(Dirichlet-by-length: some clients get mostly short solutions, others long ones), and each
client's evaluation shard is drawn from the test set with its training bucket mix.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fedsa.core.errors import DataError
from fedsa.tasks.generate import extract_answer

log = logging.getLogger(__name__)

GSM8K_HUB = ("openai/gsm8k", "main")
LENGTH_BUCKETS = 4
"""Number of response-length pseudo-labels (quartiles of the training set)."""

GENERATION_TASKS: dict[str, str] = {
    "gsm8k": "Grade-school maths word problems, exact match of the final number "
    "[Cobbe et al., 2021. Training Verifiers to Solve Math Word Problems. arXiv 2110.14168]",
    "instruct": "Generic instruction tuning from JSONL prompt/response pairs at data.instruct_path",
    "arith": "Generated one-line additions for tests (no files, no network)",
}


@dataclass(frozen=True)
class InstructExample:
    """One instruction: the prompt, the reference response, its final answer, a length bucket."""

    prompt: str
    response: str
    answer: str
    """What exact match compares against: the final number, else the whole normalised response."""
    label: int
    """Length-bucket pseudo-label (used by partitioners only)."""


@dataclass(frozen=True)
class InstructData:
    """A loaded generation task (train and test) and where it came from."""

    task: str
    train: list[InstructExample]
    dev: list[InstructExample]
    source: str
    label_names: tuple[str, ...] = tuple(f"length_q{i + 1}" for i in range(LENGTH_BUCKETS))

    @property
    def num_labels(self) -> int:
        """Number of length buckets."""
        return len(self.label_names)


def is_generation_task(name: str) -> bool:
    """Whether ``data.task`` names a generation (causal-LM) task."""
    return name in GENERATION_TASKS


def reference_answer(response: str) -> str:
    """The final number of a response, else its whitespace-normalised text."""
    number = extract_answer(response)
    return number if number is not None else " ".join(response.split())


def _read_jsonl(path: Path, fields: tuple[str, str]) -> list[tuple[str, str]]:
    if not path.is_file():
        raise DataError(
            f"data file {path} not found: set FEDSA_DATA_DIR, data.data_dir or "
            "data.instruct_path to the folder holding it"
        )
    pairs = []
    with path.open(encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                a, b = str(row[fields[0]]).strip(), str(row[fields[1]]).strip()
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise DataError(
                    f"{path} line {line_no}: not a JSON object with fields {list(fields)} "
                    f"({type(exc).__name__}): fix or remove the line"
                ) from None
            if not a or not b:
                raise DataError(f"{path} line {line_no}: empty {list(fields)}: fix or remove it")
            pairs.append((a, b))
    if not pairs:
        raise DataError(f"{path} has no examples: expected JSON lines with {list(fields)}")
    return pairs


_CALC = re.compile(r"<<[^<>]*>>")


def _gsm8k_pairs(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(q, _CALC.sub("", a)) for q, a in pairs]


def _load_gsm8k_hub() -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    import datasets  # lazy: slow import, not needed for local data

    try:
        dsd = datasets.load_dataset(*GSM8K_HUB)
        splits = [
            list(zip(dsd[s]["question"], dsd[s]["answer"], strict=True)) for s in ("train", "test")
        ]
    except Exception as exc:  # network, auth, cache and schema errors all end here
        raise DataError(
            f"could not load {GSM8K_HUB[0]}/{GSM8K_HUB[1]} from the hub ({type(exc).__name__}: "
            f"{exc}): set FEDSA_DATA_DIR to a folder holding gsm8k/{{train,test}}.jsonl"
        ) from None
    return splits[0], splits[1]


def _arith(n: int, rng: np.random.Generator) -> list[tuple[str, str]]:
    a, b = rng.integers(0, 50, size=(2, n))
    return [
        (f"What is {x} plus {y}?", f"{x} + {y} = {x + y} #### {x + y}")
        for x, y in zip(a, b, strict=True)
    ]


def _bucketed(pairs: Sequence[tuple[str, str]], edges: np.ndarray) -> list[InstructExample]:
    return [
        InstructExample(p, r, reference_answer(r), int(np.searchsorted(edges, len(r))))
        for p, r in pairs
    ]


def load_instruct(
    name: str,
    data_dir: Path | None,
    instruct_path: str = "",
    *,
    max_train_examples: int = 0,
    seed: int = 0,
) -> InstructData:
    """Load a generation task's train and test sets with length-bucket pseudo-labels.

    Args:
        name: ``gsm8k``, ``instruct`` or ``arith``.
        data_dir: Folder holding ``gsm8k/{train,test}.jsonl``; None loads GSM8K from the hub.
        instruct_path: For ``instruct``: folder holding ``{train,test}.jsonl``.
        max_train_examples: If > 0, a seeded random subset of this many training examples.
        seed: Seed of the subsample (and of the synthetic generator).

    Raises:
        DataError: Missing or malformed files, hub failure, or an unset ``instruct_path``.
    """
    if name == "gsm8k":
        if data_dir is not None:
            folder = data_dir / "gsm8k"
            fields = ("question", "answer")
            train = _read_jsonl(folder / "train.jsonl", fields)
            test = _read_jsonl(folder / "test.jsonl", fields)
            source = str(folder)
        else:
            train, test = _load_gsm8k_hub()
            source = f"hub:{GSM8K_HUB[0]}/{GSM8K_HUB[1]}"
        train, test = _gsm8k_pairs(train), _gsm8k_pairs(test)
    elif name == "instruct":
        if not instruct_path:
            raise DataError(
                "data.task = 'instruct' needs data.instruct_path: a folder holding "
                "train.jsonl and test.jsonl with fields prompt and response"
            )
        folder = Path(instruct_path).expanduser()
        train = _read_jsonl(folder / "train.jsonl", ("prompt", "response"))
        test = _read_jsonl(folder / "test.jsonl", ("prompt", "response"))
        source = str(folder)
    elif name == "arith":
        train = _arith(max_train_examples or 600, np.random.default_rng([seed, 0]))
        test = _arith(200, np.random.default_rng([seed, 1]))
        source = "synthetic"
    else:
        raise DataError(f"unknown generation task {name!r}: use one of {sorted(GENERATION_TASKS)}")
    if 0 < max_train_examples < len(train):
        keep = np.sort(np.random.default_rng(seed).choice(len(train), max_train_examples, False))
        train = [train[i] for i in keep]
    lengths = np.array([len(r) for _, r in train])
    edges = np.quantile(lengths, np.linspace(0, 1, LENGTH_BUCKETS + 1)[1:-1])
    log.info("loaded %s from %s: %d train, %d test", name, source, len(train), len(test))
    return InstructData(name, _bucketed(train, edges), _bucketed(test, edges), source)
