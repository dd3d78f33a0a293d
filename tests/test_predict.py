"""``fedsa predict`` gives, for evaluation examples, exactly the evaluation's predictions."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

import fedsa
from fedsa.cli import main
from fedsa.engine.prepare import prepare
from fedsa.tasks.batching import collate, length_sorted_chunks
from fedsa.tasks.generate import extract_answer, generate_greedy, is_correct

REPO = Path(__file__).resolve().parents[1]


def _evaluation_labels(run: Any, client: str) -> tuple[list[Any], list[int], list[int]]:
    """The client's evaluation examples, their labels, and the evaluation loop's argmax."""
    fed = prepare(run.cfg)
    indices = list(fed.client_eval[int(client)])
    model = run.client_model(client).model
    pred: dict[int, int] = {}
    with torch.inference_mode():
        for chunk in length_sorted_chunks(fed.dev, indices, 16):
            batch = {k: v for k, v in collate(fed.dev, chunk).items() if k != "labels"}
            pred.update(zip(chunk, model(**batch).logits.argmax(-1).tolist(), strict=True))
    examples = [fed.task.dev[i] for i in indices]
    return examples, [int(fed.dev.labels[i]) for i in indices], [pred[i] for i in indices]


def _read(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def cls_run(tmp_path_factory: pytest.TempPathFactory) -> Any:
    out = tmp_path_factory.mktemp("predict") / "run"
    return fedsa.run(REPO / "configs" / "tiny.toml", ["optim.lr=0.05"], out=out)


def test_predict_equals_the_evaluation_on_its_examples(cls_run: Any, tmp_path: Path) -> None:
    client = "2"
    examples, labels, evaluated = _evaluation_labels(cls_run, client)
    tsv = tmp_path / "shard.tsv"
    with open(tsv, "w", newline="") as fh:
        w = csv.writer(fh, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar="\\")
        w.writerow(["sentence", "label"])
        w.writerows([[ex.text_a, ex.label] for ex in examples])
    out = tmp_path / "pred.jsonl"
    argv = ["predict", str(cls_run.path), "--client", client, "--input", str(tsv)]
    assert main([*argv, "--out", str(out), "--batch-size", "7"]) == 0
    records = _read(out)
    assert [r["index"] for r in records] == list(range(len(examples)))
    assert [r["label_id"] for r in records] == evaluated
    accuracy = sum(r["label_id"] == y for r, y in zip(records, labels, strict=True)) / len(labels)
    assert accuracy == cls_run.summary["final_clients"][client]["accuracy"]
    for r in records:
        assert set(r["probabilities"]) == {"negative", "positive"}
        assert sum(r["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        assert r["label"] == max(r["probabilities"], key=r["probabilities"].get)
    # the same inputs as JSONL and as plain text (and from stdin) give the same answers
    jsonl = tmp_path / "shard.jsonl"
    jsonl.write_text("".join(json.dumps({"sentence": ex.text_a}) + "\n" for ex in examples))
    assert main([*argv[:4], "--input", str(jsonl), "--out", str(tmp_path / "j.jsonl")]) == 0
    assert _read(tmp_path / "j.jsonl") == records
    text = "".join(ex.text_a + "\n" for ex in examples)
    old = sys.stdin
    sys.stdin = io.StringIO(text)
    try:
        assert main([*argv[:4], "--input", "-", "--out", str(tmp_path / "t.jsonl")]) == 0
    finally:
        sys.stdin = old
    assert _read(tmp_path / "t.jsonl") == records


def test_predict_on_a_pair_task_reads_the_glue_tsv(data_dir: Path, tmp_path: Path) -> None:
    over = ["data.task=rte", "data.max_train_examples=120", "data.eval_examples_per_client=12"]
    run = fedsa.run(REPO / "configs" / "tiny.toml", over, out=tmp_path / "rte")
    examples, _, evaluated = _evaluation_labels(run, "0")
    assert all(ex.text_b for ex in examples)
    rows = [{"sentence1": ex.text_a, "sentence2": ex.text_b} for ex in examples]
    jsonl = tmp_path / "pairs.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "p.jsonl"
    assert (
        main(["predict", str(run.path), "--client", "0", "--input", str(jsonl), "--out", str(out)])
        == 0
    )
    assert [r["label_id"] for r in _read(out)] == evaluated
    head = (data_dir / "glue" / "RTE" / "dev.tsv").read_text().splitlines()[:6]
    tsv = tmp_path / "dev_head.tsv"
    tsv.write_text("\n".join(head) + "\n")
    assert (
        main(["predict", str(run.path), "--client", "0", "--input", str(tsv), "--out", str(out)])
        == 0
    )
    assert len(_read(out)) == 5
    assert {r["label"] for r in _read(out)} <= {"entailment", "not_entailment"}


def test_predict_generates_the_evaluations_answers(tmp_path: Path) -> None:
    run = fedsa.run(REPO / "configs" / "tiny-llama.toml", [], out=tmp_path / "lm")
    client = "1"
    fed = prepare(run.cfg)
    indices = list(fed.client_eval[int(client)])
    prompts = [fed.task.dev[i].prompt for i in indices]
    refs = [fed.task.dev[i].answer for i in indices]
    jsonl = tmp_path / "prompts.jsonl"
    jsonl.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts))
    out = tmp_path / "gen.jsonl"
    assert (
        main(
            ["predict", str(run.path), "--client", client, "--input", str(jsonl), "--out", str(out)]
        )
        == 0
    )
    records = _read(out)
    assert [r["prompt"] for r in records] == prompts
    # the evaluation's own decoding of its own prompts (tasks/prompting.py built them)
    evaluated = generate_greedy(
        run.client_model(client).model, fed.scorer.generation, indices, fed.device
    )
    assert [r["generated"] for r in records] == [evaluated[i] for i in indices]
    assert [r["answer"] for r in records] == [extract_answer(evaluated[i]) for i in indices]
    em = sum(is_correct(r["generated"], ref) for r, ref in zip(records, refs, strict=True))
    assert em / len(refs) == run.summary["final_clients"][client]["exact_match"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist"),
        ('{"sentence": "good"}\nnot json\n', ":2: not a JSON object"),
        ('{"other": "good"}\n', "no input text"),
        ("", "holds no input"),
    ],
)
def test_bad_predict_inputs_are_one_line_errors(
    cls_run: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    content: str | None,
    message: str,
) -> None:
    path = tmp_path / "in.jsonl"
    if content is not None:
        path.write_text(content)
    capsys.readouterr()
    assert main(["predict", str(cls_run.path), "--client", "0", "--input", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
