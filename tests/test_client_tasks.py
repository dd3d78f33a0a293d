"""Task-heterogeneous federations (``data.client_tasks``): own data, label space and head."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from fedsa.adapters.label_space import set_label_space
from fedsa.config.load import load_config
from fedsa.config.schema import RunConfig
from fedsa.core.errors import ConfigError
from fedsa.core.params import read_from
from fedsa.engine.client import install_start
from fedsa.engine.evaluation import client_start
from fedsa.engine.prepare import Federation, prepare
from fedsa.engine.server_step import ServerState
from fedsa.engine.simulation import run_rounds
from fedsa.engine.summary import build_summary
from fedsa.flower.records import flower_refusal
from fedsa.models.loaders import load_tokenizer
from fedsa.tasks.batching import collate, encode
from fedsa.tasks.client_tasks import MixedTaskData
from fedsa.tasks.glue import TASKS

TINY = Path(__file__).parents[1] / "configs" / "tiny.toml"
TASK_LIST = '["sst2","mnli","rte"]'
OVER = [
    f"data.client_tasks={TASK_LIST}",
    "data.num_clients=4",  # client 3 shares SST-2 with client 0
    "data.max_train_examples=300",
    "data.eval_examples_per_client=40",
]
HEAD_W = "base_model.model.classifier.modules_to_save.default.weight"
HEAD_B = "base_model.model.classifier.modules_to_save.default.bias"


def _fed(data_dir: Path, *extra: str) -> Federation:
    cfg = load_config(TINY, [*OVER, f"data.data_dir={data_dir}", *extra])
    return prepare(cfg)


def _ranges(fed: Federation, split: str) -> dict[str, range]:
    assert isinstance(fed.task, MixedTaskData)
    off = fed.task.offsets(split)
    return {p.task: range(off[j], off[j + 1]) for j, p in enumerate(fed.task.parts)}


def test_each_client_trains_and_is_scored_on_its_own_task(data_dir: Path) -> None:
    fed = _fed(data_dir)
    own = {"0": "sst2", "1": "mnli", "2": "rte", "3": "sst2"}
    train, dev = _ranges(fed, "train"), _ranges(fed, "dev")
    for k, cid in enumerate(fed.client_ids):
        task = own[cid]
        assert fed.client_train[k] and set(fed.client_train[k]) <= set(train[task])
        assert fed.client_eval[k] and set(fed.client_eval[k]) <= set(dev[task])
        n = TASKS[task].num_labels
        assert set(fed.train.labels[fed.client_train[k]].tolist()) <= set(range(n))
    # the two SST-2 clients split SST-2's 300 training examples, disjointly
    assert set(fed.client_train[0]).isdisjoint(fed.client_train[3])
    assert len(fed.client_train[0]) + len(fed.client_train[3]) == 300
    assert {len(fed.client_train[1]), len(fed.client_train[2])} == {300}
    # one head of max(n_k) = 3 outputs (MNLI's three labels)
    assert fed.init_private[HEAD_W].shape[0] == 3
    # each task tokenised on its own: an SST-2 sentence as SST-2 alone would give it
    i = fed.client_train[0][0]
    alone = encode([fed.task.train[i]], load_tokenizer("tiny-bert"), fed.cfg.model.max_length)
    assert fed.train.input_ids[i] == alone.input_ids[0]


def _install(fed: Federation, cid: str, private: dict[str, torch.Tensor] | None = None) -> None:
    state = ServerState(shared=read_from(fed.model, fed.layout.shared))
    start = client_start(fed, state, cid, fed.init_private if private is None else private)
    install_start(fed.model, fed.algorithm, start, fed.layout, fed.cfg)


def test_a_binary_client_has_exactly_a_two_way_head(data_dir: Path) -> None:
    """Its loss, logits and gradients are those of a head of its own two labels."""
    fed = _fed(data_dir)
    model = fed.model
    model.eval()
    batch = collate(fed.train, fed.client_train[0][:8])
    set_label_space(model, 0)  # the whole head, for reference
    full = model(**batch).logits.detach().double()  # (8, 3)
    _install(fed, "0")  # SST-2: two labels
    out = model(**batch)
    assert torch.isneginf(out.logits[:, 2]).all()
    assert torch.equal(out.logits[:, :2].detach().double(), full[:, :2])
    two_way = torch.nn.functional.cross_entropy(full[:, :2], batch["labels"])  # float64
    assert float(out.loss) == pytest.approx(float(two_way), rel=1e-6)
    out.loss.backward()
    grads = dict(model.named_parameters())
    weight, bias = grads[HEAD_W].grad, grads[HEAD_B].grad
    assert weight is not None and bias is not None
    assert torch.count_nonzero(weight[2]) == 0 and float(bias[2]) == 0.0  # never moves
    assert torch.count_nonzero(weight[:2]) > 0
    model.zero_grad()
    _install(fed, "1")  # MNLI: the mask of the previous client is lifted
    assert torch.isfinite(model(**batch).logits).all()


def test_a_federation_of_tasks_keeps_every_head_local(data_dir: Path) -> None:
    fed = _fed(data_dir, "federation.rounds=2")
    state, store, history = run_rounds(fed)
    init_w = fed.init_private[HEAD_W]
    heads = {c: store.get(c)[HEAD_W] for c in fed.client_ids}
    for c in ("0", "2", "3"):  # binary clients: the third row is exactly where it started
        assert torch.equal(heads[c][2], init_w[2]) and not torch.equal(heads[c][:2], init_w[:2])
    assert not torch.equal(heads["1"][2], init_w[2])  # MNLI trains all three
    assert not any(HEAD_W in name for name in state.shared)  # no head ever reaches the server
    scored = history[-1]["eval"]["clients"]
    assert set(scored) == set(fed.client_ids)
    for c, metrics in scored.items():  # scored on its own shard, against its own prior
        assert metrics["n"] == len(fed.client_eval[int(c)])
        assert 0.0 <= metrics["balanced_accuracy"] <= 1.0 and "prior_gain" in metrics
    summary = build_summary(fed, history, 0.0)
    assert summary["task"] == "sst2+mnli+rte"
    assert summary["client_tasks"] == {"0": "sst2", "1": "mnli", "2": "rte", "3": "sst2"}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["algorithm=fedit", "federation.share_head=true"], "set federation.share_head = false"),
        (["algorithm=centralized"], "keeps the head on the client"),
        (['data.client_tasks=["sst2","gsm8k"]'], "data.client_tasks[1] = 'gsm8k' is not a"),
        (['data.client_tasks=["sst2","rte","mnli","qnli","cola"]'], "give every task a client"),
    ],
)
def test_methods_and_tasks_that_cannot_run_are_refused(extra: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_config(TINY, [*OVER, *extra])


def test_flower_export_and_digests() -> None:
    plain = load_config(TINY, [])
    cfg = load_config(TINY, OVER)
    assert flower_refusal(cfg) is not None and "client_tasks" in str(flower_refusal(cfg))
    assert flower_refusal(plain) is None
    # earlier runs' digests hold; a federation of tasks is a different run
    assert plain.sha256() == "8f65bcdbd2d27214ecdd07d99d961608957f629d105fd31867539aa150d2bfbe"
    same = dataclasses.replace(plain, data=dataclasses.replace(plain.data, client_tasks=()))
    assert same.sha256() == plain.sha256() and cfg.sha256() != plain.sha256()
    assert isinstance(cfg, RunConfig) and cfg.data.client_tasks == ("sst2", "mnli", "rte")


def test_saved_runs_of_task_federations_refuse_export(data_dir: Path, tmp_path: Path) -> None:
    from fedsa.api import run
    from fedsa.use.saved import SavedRun

    run(TINY, [*OVER, f"data.data_dir={data_dir}", "federation.rounds=1"], out=tmp_path / "r")
    saved = SavedRun(tmp_path / "r")
    with pytest.raises(ConfigError, match="do not support such runs yet"):
        _ = saved.label_names
    model = saved.client_model("0").model  # the client itself loads, restricted to its labels
    batch = collate(_fed(data_dir).train, [0, 1])
    assert torch.isneginf(model(**batch).logits[:, 2]).all()


def test_the_per_task_table_averages_a_tasks_clients_then_seeds(tmp_path: Path) -> None:
    from fedsa.reports.per_task import task_html, task_markdown, task_rows
    from fedsa.reports.runs import Run

    def run(seed: int, accs: list[float]) -> Run:
        own = {"0": "sst2", "1": "mnli", "2": "sst2"}
        clients = {
            str(k): {"accuracy": a, "balanced_accuracy": a / 2, "majority": 0.5 + k / 10}
            for k, a in enumerate(accs)
        }
        summary = {"client_tasks": own, "final_clients": clients}
        return Run("fedsa-lora", seed, tmp_path, summary, [])

    runs = {"fedsa-lora": [run(0, [0.6, 0.4, 0.8]), run(1, [0.7, 0.5, 0.9])]}
    header, rows = task_rows(runs)
    assert header == ["algorithm", "sst2", "mnli"]
    assert rows[0] == ["majority prior", "0.600", "0.600"]  # clients 0 and 2: 0.5, 0.7
    assert rows[1] == ["fedsa-lora", "0.750 / 0.375", "0.450 / 0.225"]
    assert "| fedsa-lora | 0.750 / 0.375 | 0.450 / 0.225 |" in task_markdown(runs)
    assert "<td>0.450 / 0.225</td>" in task_html(runs)
    plain = {"fedit": [Run("fedit", 0, tmp_path, {"final_clients": {}}, [])]}
    assert task_markdown(plain) == "" and task_html(plain) == ""
