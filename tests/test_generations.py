"""Generations kept: every evaluation of a causal LM writes what each client's model answered.

``generations/round_<t>/<client>.jsonl`` holds one line per test prompt of the client's shard
(index, prompt, generated, answer, reference, correct); the lines must be the evaluation's own
decoding and its own verdicts, so a person reading them reads what was scored.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fedsa.config.load import load_config
from fedsa.engine.prepare import prepare
from fedsa.engine.results import RunDir, read_metrics
from fedsa.engine.runner import run
from fedsa.tasks.generate import extract_answer, generate_greedy, is_correct
from fedsa.use.saved import SavedRun

CONFIGS = Path(__file__).parents[1] / "configs"
FIELDS = ["index", "prompt", "generated", "answer", "reference", "correct"]


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gen") / "run"
    cfg = load_config(CONFIGS / "tiny-llama.toml", ["federation.rounds=2", "adapter.alpha=12"])
    run(cfg, out)
    return out


def test_every_evaluated_round_keeps_each_clients_answers(lm_run: Path) -> None:
    cfg = SavedRun(lm_run).cfg
    fed = prepare(cfg)
    metrics = read_metrics(lm_run)
    assert sorted(p.name for p in (lm_run / "generations").iterdir()) == ["round_1", "round_2"]
    for record in metrics:
        folder = lm_run / "generations" / f"round_{record['round']}"
        assert sorted(p.name for p in folder.iterdir()) == [f"{c}.jsonl" for c in fed.client_ids]
        for cid, scored in record["eval"]["clients"].items():
            lines = _lines(folder / f"{cid}.jsonl")
            assert [list(line) for line in lines] == [FIELDS] * len(lines)
            assert [line["index"] for line in lines] == list(fed.client_eval[int(cid)])
            assert sum(line["correct"] for line in lines) / len(lines) == scored["exact_match"]
            for line in lines:
                example = fed.task.dev[line["index"]]
                assert line["prompt"] == example.prompt
                assert line["reference"] == example.answer
                assert line["answer"] == extract_answer(line["generated"])
                assert line["correct"] == is_correct(line["generated"], example.answer)


def test_the_last_rounds_lines_are_the_final_models_decoding(lm_run: Path) -> None:
    saved = SavedRun(lm_run)
    fed = prepare(saved.cfg)
    client = "2"
    indices = list(fed.client_eval[int(client)])
    decoded = generate_greedy(
        saved.client_model(client).model,
        fed.scorer.generation,  # type: ignore[attr-defined]
        indices,
        fed.device,
    )
    lines = _lines(lm_run / "generations" / "round_2" / f"{client}.jsonl")
    assert [line["generated"] for line in lines] == [decoded[i] for i in indices]


def test_classifiers_keep_no_generations(tmp_path: Path) -> None:
    cfg = load_config(CONFIGS / "tiny.toml", ["federation.rounds=1"])
    run(cfg, tmp_path / "cls")
    assert not (tmp_path / "cls" / "generations").exists()


def test_eval_every_decides_which_rounds_are_kept(tmp_path: Path) -> None:
    cfg = load_config(
        CONFIGS / "tiny-llama.toml",
        ["federation.rounds=3", "eval.every=2", "data.num_clients=2", "generate.max_new_tokens=4"],
    )
    run(cfg, tmp_path / "lm")
    kept = sorted(p.name for p in (tmp_path / "lm" / "generations").iterdir())
    assert kept == ["round_2", "round_3"]


def test_feddpa_keeps_one_line_per_prompt(tmp_path: Path) -> None:
    """FedDPA scores prompts one at a time under each one's own adapter mix."""
    cfg = load_config(
        CONFIGS / "tiny-llama.toml",
        ["algorithm=feddpa", "data.num_clients=2", "generate.max_new_tokens=4"],
    )
    run(cfg, tmp_path / "dpa")
    fed = prepare(cfg)
    for cid in fed.client_ids:
        lines = _lines(tmp_path / "dpa" / "generations" / "round_1" / f"{cid}.jsonl")
        assert [line["index"] for line in lines] == list(fed.client_eval[int(cid)])


def test_resume_drops_the_generations_of_rounds_it_redoes(tmp_path: Path) -> None:
    run_dir = RunDir(tmp_path / "run")
    for t in (1, 2, 3, 10):
        run_dir.write_generations(t, {"0": [{"index": 0}]})
    (tmp_path / "run" / "generations" / "notes").mkdir()
    run_dir.drop_generations_after(2)
    kept = sorted(p.name for p in (tmp_path / "run" / "generations").iterdir())
    assert kept == ["notes", "round_1", "round_2"]
    assert _lines(tmp_path / "run" / "generations" / "round_2" / "0.jsonl") == [{"index": 0}]


def test_overwrite_clears_an_earlier_runs_generations(tmp_path: Path) -> None:
    RunDir(tmp_path / "run").write_generations(5, {"0": [{"index": 0}]})
    (tmp_path / "run" / "config.json").write_text("{}")
    RunDir(tmp_path / "run", overwrite=True)
    assert not (tmp_path / "run" / "generations").exists()
