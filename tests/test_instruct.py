"""Instruction data: loading (local JSONL, hub, synthetic), prompts, and loss masking."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from fedsa.core.errors import DataError
from fedsa.models.causal_lm import tiny_llama, tiny_llama_tokenizer
from fedsa.tasks.batching import collate
from fedsa.tasks.instruct import InstructExample, load_instruct
from fedsa.tasks.partition import label_skew, partition
from fedsa.tasks.prompting import (
    build_generation,
    encode_instruct,
    prompt_text,
    response_text,
    stop_ids,
)

CHAT = (
    "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}</s>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def _examples() -> list[InstructExample]:
    return [
        InstructExample("What is 2 plus 3?", "2 + 3 = 5 #### 5", "5", 0),
        InstructExample("What is 10 plus 31?", "10 + 31 = 41 #### 41", "41", 1),
    ]


def _write_gsm8k(folder: Path) -> None:
    folder.mkdir(parents=True)
    rows = [
        {"question": f"Q{i}: how many?", "answer": f"{i} * 2 = <<{i}*2={2 * i}>>{2 * i}" + " x" * i
         + f"\n#### {2 * i}"}
        for i in range(12)
    ]  # fmt: skip
    for split in ("train", "test"):
        (folder / f"{split}.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")


def test_gsm8k_local_strips_calculator_and_extracts_answer(tmp_path: Path) -> None:
    _write_gsm8k(tmp_path / "gsm8k")
    data = load_instruct("gsm8k", tmp_path)
    assert data.source == str(tmp_path / "gsm8k")
    ex = data.train[3]
    assert ex.prompt == "Q3: how many?"
    assert "<<" not in ex.response and ex.response.startswith("3 * 2 = 6")
    assert ex.answer == "6"
    # length buckets are quartiles of response length: longer answers, higher bucket
    labels = [e.label for e in data.train]
    assert labels == sorted(labels) and len(set(labels)) == 4
    assert len(load_instruct("gsm8k", tmp_path, max_train_examples=5, seed=1).train) == 5


def test_gsm8k_hub_path(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    calls: list[tuple[str, str]] = []

    def fake_load(path: str, name: str) -> datasets.DatasetDict:
        calls.append((path, name))
        split = datasets.Dataset.from_dict(
            {"question": ["A?", "B?"], "answer": ["1+1=<<1+1=2>>2\n#### 2", "#### 1,000"]}
        )
        return datasets.DatasetDict(train=split, test=split)

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    data = load_instruct("gsm8k", None)
    assert calls == [("openai/gsm8k", "main")]
    assert data.source == "hub:openai/gsm8k/main"
    assert [e.answer for e in data.dev] == ["2", "1000"]
    assert data.train[0].response == "1+1=2\n#### 2"

    def offline(path: str, name: str) -> datasets.DatasetDict:
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataError, match="FEDSA_DATA_DIR"):
        load_instruct("gsm8k", None)


def test_instruct_jsonl_and_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="instruct_path"):
        load_instruct("instruct", None)
    (tmp_path / "train.jsonl").write_text(
        json.dumps({"prompt": "Capital of France?", "response": "Paris"}) + "\n"
    )
    (tmp_path / "test.jsonl").write_text('{"prompt": "x"}\n')
    with pytest.raises(DataError, match=r"test.jsonl line 1.*prompt"):
        load_instruct("instruct", None, str(tmp_path))
    (tmp_path / "test.jsonl").write_text(
        json.dumps({"prompt": "2+2?", "response": "It is 4."}) + "\n"
    )
    data = load_instruct("instruct", None, str(tmp_path))
    assert data.train[0].answer == "Paris" and data.dev[0].answer == "4"


def test_dirichlet_by_length_skews_buckets() -> None:
    data = load_instruct("arith", None, max_train_examples=600, seed=0)
    labels = [e.label for e in data.train]
    iid = partition(labels, 3, "iid", 0.5, 0)
    skewed = partition(labels, 3, "dirichlet", 0.1, 0)
    assert label_skew(labels, skewed) > label_skew(labels, iid) + 0.2


def test_prompt_tokens_carry_no_label() -> None:
    tok = tiny_llama_tokenizer()
    enc = encode_instruct(_examples(), tok, max_length=128)
    assert enc.token_labels is not None
    for ex, ids, labels in zip(_examples(), enc.input_ids, enc.token_labels, strict=True):
        n_prompt = len(tok(prompt_text(tok, ex.prompt), add_special_tokens=False)["input_ids"]) + 1
        assert ids[0] == tok.bos_token_id
        assert labels[:n_prompt] == [-100] * n_prompt
        assert labels[n_prompt:] == ids[n_prompt:]
        assert tok.decode(labels[n_prompt:]) == ex.response + "</s>"
    batch = collate(enc, [0, 1])
    assert batch["labels"].shape == batch["input_ids"].shape
    short = int(batch["attention_mask"][0].sum())
    assert (batch["labels"][0, short:] == -100).all()  # padding carries no loss


def test_chat_template_masks_the_whole_prompt_and_learns_the_turn_end() -> None:
    tok = tiny_llama_tokenizer()
    tok.chat_template = CHAT
    ex = _examples()[0]
    assert prompt_text(tok, ex.prompt) == "<|user|>What is 2 plus 3?</s><|assistant|>"
    assert response_text(tok, ex.prompt, ex.response) == "2 + 3 = 5 #### 5</s>"
    enc = encode_instruct([ex], tok, max_length=128)
    assert enc.token_labels is not None
    supervised = [t for t in enc.token_labels[0] if t != -100]
    assert tok.decode(supervised) == "2 + 3 = 5 #### 5</s>"
    assert tok.eos_token_id in stop_ids(tok)


def test_truncation_keeps_response_tokens() -> None:
    tok = tiny_llama_tokenizer()
    long = InstructExample("word " * 100, "the answer is #### 7", "7", 0)
    enc = encode_instruct([long], tok, max_length=40)
    assert enc.token_labels is not None
    assert len(enc.input_ids[0]) == 40
    assert sum(t != -100 for t in enc.token_labels[0]) >= 20


def test_loss_ignores_prompt_logits() -> None:
    torch.manual_seed(0)
    tok = tiny_llama_tokenizer()
    model = tiny_llama(0).eval()
    enc = encode_instruct(_examples(), tok, max_length=128)
    batch = collate(enc, [0, 1])
    with torch.no_grad():
        out = model(**batch)
    logits = out.logits  # (B, T, V); position t predicts token t+1
    labels = batch["labels"]
    next_labels = torch.cat([labels[:, 1:], torch.full_like(labels[:, :1], -100)], dim=1)
    manual = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=-100
    )
    assert torch.allclose(out.loss, manual, atol=1e-6)

    def loss_of(lg: torch.Tensor) -> torch.Tensor:
        return model.loss_function(lg, labels, vocab_size=lg.shape[-1])  # type: ignore[no-any-return]

    base = loss_of(logits)
    noise = torch.randn_like(logits) * 5
    prompt_pos = (next_labels == -100).unsqueeze(-1)  # (B, T, 1)
    assert torch.allclose(loss_of(logits + noise * prompt_pos), base, atol=1e-6)
    assert not torch.allclose(loss_of(logits + noise * ~prompt_pos), base, atol=1e-3)


def test_few_shot_prompts_hold_fixed_demonstrations() -> None:
    data = load_instruct("arith", None, max_train_examples=50, seed=0)
    tok = tiny_llama_tokenizer()
    zero = build_generation(data, tok, few_shot=0, max_new_tokens=8, batch_size=4, seed=0)
    three = build_generation(data, tok, few_shot=3, max_new_tokens=8, batch_size=4, seed=0)
    assert zero.references == [e.answer for e in data.dev]
    text0, text3 = tok.decode(zero.prompts[0]), tok.decode(three.prompts[0])
    assert text3.count("Question:") == 4 and text0.count("Question:") == 1
    assert text3.endswith(text0.removeprefix("<s>"))
    demos = text3[: len(text3) - len(text0) + 3]
    assert demos == tok.decode(three.prompts[1])[: len(demos)]  # same shots for every prompt
    assert np.all([len(p) > 0 for p in three.prompts])


def test_real_gsm8k_files(data_dir: Path) -> None:
    if not (data_dir / "gsm8k" / "test.jsonl").is_file():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{data_dir}/gsm8k/test.jsonl not found (required under CI=true)")
        pytest.skip(f"{data_dir}/gsm8k/test.jsonl not found")
    data = load_instruct("gsm8k", data_dir)
    assert (len(data.train), len(data.dev)) == (7473, 1319)
    first = data.dev[0]
    assert first.prompt.startswith("Janet") and first.answer == "18"
    assert all(e.answer is not None and "<<" not in e.response for e in data.train)
    assert sum(e.answer.lstrip("-").isdigit() for e in data.dev) == len(data.dev)
