"""``fedsa predict``: a client's personalised model on new inputs, as JSONL.

Classifiers give each input's label and class probabilities; causal LMs the greedy continuation
and its extracted final answer. Both reuse the evaluation's own pieces (tokenisation by
:func:`~fedsa.tasks.batching.encode` or the prompt template, length-sorted batches, greedy
decoding), so a prediction on an evaluation example is exactly what evaluation scored.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from fedsa.algorithms.hooks import task_evaluation
from fedsa.core.errors import ConfigError
from fedsa.tasks.batching import Encoded, collate, encode, length_sorted_chunks
from fedsa.tasks.examples import Example
from fedsa.tasks.generate import Generation, extract_answer, generate_greedy
from fedsa.tasks.glue import TASKS, resolve_data_dir
from fedsa.tasks.instruct import InstructData, load_instruct
from fedsa.tasks.prompting import prompt_ids, prompt_text, shot_examples, stop_ids
from fedsa.use.export import tokenizer_of
from fedsa.use.inputs import Item
from fedsa.use.saved import SavedRun


def input_fields(run: SavedRun) -> tuple[str, ...]:
    """The task's input columns (``()`` for prompt tasks)."""
    return () if run.is_generation else TASKS[run.cfg.data.task].text_fields


def check_predictable(run: SavedRun) -> None:
    """Refuse what predict cannot reproduce, with the reason."""
    alg = run.algorithm
    if alg.evaluate is not task_evaluation and run.cfg.feddpa.combination == "instance":
        raise ConfigError(
            f"{alg.name} scores each input with a mix computed from the client's training "
            "examples (feddpa.combination = 'instance'), which fedsa predict does not rebuild: "
            "use a run with feddpa.combination = 'sum', or export the adapters"
        )


@torch.inference_mode()
def class_logits(
    model: torch.nn.Module, data: Encoded, batch_size: int, device: torch.device, bar: bool
) -> torch.Tensor:
    """(N, num_labels) float32 logits of every example, in input order."""
    model.eval()
    chunks = length_sorted_chunks(data, range(len(data)), batch_size)
    rows: dict[int, torch.Tensor] = {}
    for chunk in tqdm(chunks, desc="predict", unit="batch", disable=not bar, leave=False):
        batch = {k: v.to(device) for k, v in collate(data, chunk).items() if k != "labels"}
        logits = model(**batch).logits.float().cpu()  # (B, K)
        rows.update({i: logits[row] for row, i in enumerate(chunk)})
    return torch.stack([rows[i] for i in range(len(data))])


def encode_items(run: SavedRun, items: Sequence[Item]) -> Encoded:
    """Tokenised classification inputs, exactly as evaluation tokenises its examples."""
    examples = [Example(it.text_a, it.text_b, 0) for it in items]
    return encode(examples, tokenizer_of(run), run.cfg.model.max_length)


def classify(
    run: SavedRun, model: torch.nn.Module, items: Sequence[Item], batch_size: int
) -> Iterator[dict[str, Any]]:
    """One record per input: ``label``, ``label_id`` and ``probabilities`` by class name."""
    device = next(model.parameters()).device
    data = encode_items(run, items)
    probs = torch.softmax(class_logits(model, data, batch_size, device, len(items) > 256), -1)
    names = run.label_names
    for i, p in enumerate(probs.tolist()):
        k = int(np.argmax(p))
        yield {
            "index": i,
            "label": names[k],
            "label_id": k,
            "probabilities": {n: round(v, 6) for n, v in zip(names, p, strict=True)},
        }


def _shots(run: SavedRun) -> list[Any]:
    """The run's few-shot demonstrations (they need the training data), or none."""
    cfg = run.cfg
    if cfg.generate.few_shot <= 0:
        return []
    task = load_instruct(
        cfg.data.task,
        resolve_data_dir(cfg.data.data_dir),
        cfg.data.instruct_path,
        max_train_examples=cfg.data.max_train_examples,
        seed=cfg.seed,
    )
    assert isinstance(task, InstructData)
    return shot_examples(task.train, cfg.generate.few_shot, cfg.seed)


def generate(
    run: SavedRun,
    model: torch.nn.Module,
    items: Sequence[Item],
    batch_size: int,
    max_new_tokens: int | None,
) -> Iterator[dict[str, Any]]:
    """One record per prompt: the greedy continuation and its extracted final answer."""
    tokenizer = tokenizer_of(run)
    shots = _shots(run)
    gen = Generation(
        tokenizer=tokenizer,
        prompts=[prompt_ids(tokenizer, prompt_text(tokenizer, it.text_a, shots)) for it in items],
        references=[""] * len(items),
        max_new_tokens=max_new_tokens or run.cfg.generate.max_new_tokens,
        batch_size=batch_size,
        stop_ids=stop_ids(tokenizer),
    )
    device = next(model.parameters()).device
    order = sorted(range(len(items)), key=lambda i: len(gen.prompts[i]))
    chunks = [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
    texts: dict[int, str] = {}
    for chunk in tqdm(chunks, desc="generate", unit="batch", disable=len(chunks) < 2):
        texts.update(generate_greedy(model, gen, chunk, device, batch_size))
    for i, it in enumerate(items):
        yield {
            "index": i,
            "prompt": it.text_a,
            "generated": texts[i],
            "answer": extract_answer(texts[i]),
        }


def predict(
    run: SavedRun,
    client: str,
    items: Sequence[Item],
    *,
    batch_size: int | None = None,
    max_new_tokens: int | None = None,
    device: str = "cpu",
) -> list[dict[str, Any]]:
    """Client ``client``'s predictions for ``items``, in input order."""
    check_predictable(run)
    model = run.client_model(client, device).model
    if run.is_generation:
        size = batch_size or run.cfg.generate.batch_size
        return list(generate(run, model, items, size, max_new_tokens))
    return list(classify(run, model, items, batch_size or run.cfg.eval.batch_size))
