from collections import Counter
from pathlib import Path

import pytest

from fedsa.core.errors import DataError
from fedsa.tasks.examples import Example, TaskData
from fedsa.tasks.glue import TASKS, load_task, resolve_data_dir
from fedsa.tasks.synthetic import SYNTHETIC_VOCAB

EXPECTED_ROWS = {
    "sst2": (67349, 872),
    "rte": (2490, 277),
    "cola": (8551, 1043),
    "mrpc": (3668, 408),
    "qnli": (8999, 5463),
    "mnli": (8999, 1000),
    "qqp": (8999, 1000),
}
GLUE_TASKS = [name for name in TASKS if name != "synthetic"]


def test_every_glue_task_has_expected_rows() -> None:
    assert set(GLUE_TASKS) == set(EXPECTED_ROWS)


@pytest.mark.parametrize("name", GLUE_TASKS)
def test_load_local_task(data_dir: Path, name: str) -> None:
    data = load_task(name, data_dir)
    spec = TASKS[name]
    assert (len(data.train), len(data.dev)) == EXPECTED_ROWS[name]
    assert data.num_labels == len(spec.label_names)
    assert data.source.endswith(spec.glue_dir)
    pair = len(spec.text_fields) == 2
    for ex in data.train + data.dev:
        assert 0 <= ex.label < data.num_labels
        assert ex.text_a
        assert (ex.text_b is not None and ex.text_b != "") if pair else ex.text_b is None
    # both classes (all three for MNLI) occur in each split
    assert len({ex.label for ex in data.train}) == data.num_labels
    assert len({ex.label for ex in data.dev}) == data.num_labels


def test_label_ids_match_hub(data_dir: Path) -> None:
    rte = load_task("rte", data_dir)
    # first RTE train row is labelled not_entailment (hub id 1)
    assert rte.train[0].label == 1
    assert rte.label_names == ("entailment", "not_entailment")
    assert TASKS["mnli"].label_names == ("entailment", "neutral", "contradiction")
    assert load_task("mnli", data_dir).train[0].label == 0  # first row: entailment
    assert load_task("sst2", data_dir).train[0].label == 0


def test_mrpc_bom_and_cola_headerless(data_dir: Path) -> None:
    mrpc = load_task("mrpc", data_dir)
    assert mrpc.train[0].label == 1
    assert mrpc.train[0].text_a.startswith("Amrozi accused his brother")
    cola = load_task("cola", data_dir)
    assert cola.train[0] == Example(
        "Our friends won't buy this analysis, let alone the next one we propose.", None, 1
    )
    assert Counter(ex.label for ex in cola.dev) == {1: 721, 0: 322}


def test_subsample_deterministic_and_labels_attached(data_dir: Path) -> None:
    full = load_task("rte", data_dir)
    a = load_task("rte", data_dir, max_train_examples=300, seed=3)
    b = load_task("rte", data_dir, max_train_examples=300, seed=3)
    c = load_task("rte", data_dir, max_train_examples=300, seed=4)
    assert a.train == b.train
    assert a.train != c.train
    assert len(a.train) == 300
    assert a.dev == full.dev
    full_pairs = {(ex.text_a, ex.text_b): ex.label for ex in full.train}
    for ex in a.train:
        assert full_pairs[(ex.text_a, ex.text_b)] == ex.label
    assert len(load_task("rte", data_dir, max_train_examples=10**6).train) == len(full.train)


def _write_rte(root: Path, train: str, dev: str | None = None) -> Path:
    task_dir = root / "glue" / "RTE"
    task_dir.mkdir(parents=True)
    header = "index\tsentence1\tsentence2\tlabel\n"
    (task_dir / "train.tsv").write_text(header + train, encoding="utf-8")
    good = header + "0\tA man sleeps.\tA man rests.\tentailment\n"
    (task_dir / "dev.tsv").write_text(good if dev is None else dev, encoding="utf-8")
    return root


def test_tmp_rte_parses_with_stray_quotes(tmp_path: Path) -> None:
    root = _write_rte(tmp_path, '0\tHe said "hi.\tHe spoke.\tnot_entailment\n')
    data = load_task("rte", root)
    assert data.train == [Example('He said "hi.', "He spoke.", 1)]


@pytest.mark.parametrize(
    ("row", "needle"),
    [
        ("0\tonly two\tcolumns\n", "3 columns"),
        ("0\tA.\tB.\tmaybe\n", "'maybe'"),
        ("0\t \tB.\tentailment\n", "empty text"),
    ],
)
def test_malformed_rows(tmp_path: Path, row: str, needle: str) -> None:
    root = _write_rte(tmp_path, "0\tA.\tB.\tentailment\n" + row)
    with pytest.raises(DataError) as err:
        load_task("rte", root)
    msg = str(err.value)
    assert "train.tsv" in msg and "line 3" in msg and needle in msg
    assert "\n" not in msg


def test_empty_files(tmp_path: Path) -> None:
    root = _write_rte(tmp_path, "", dev="")
    (root / "glue" / "RTE" / "train.tsv").write_text("")
    with pytest.raises(DataError, match=r"train\.tsv is empty"):
        load_task("rte", root)
    (root / "glue" / "RTE" / "train.tsv").write_text("index\tsentence1\tsentence2\tlabel\n")
    with pytest.raises(DataError, match=r"train\.tsv has no data rows"):
        load_task("rte", root)


def test_missing_column_and_missing_dir(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="FEDSA_DATA_DIR"):
        load_task("sst2", tmp_path / "nowhere")
    task_dir = tmp_path / "glue" / "SST-2"
    task_dir.mkdir(parents=True)
    with pytest.raises(DataError, match=r"train\.tsv not found"):
        load_task("sst2", tmp_path)
    (task_dir / "train.tsv").write_text("text\tlabel\nhi\t1\n")
    with pytest.raises(DataError, match="lacks column"):
        load_task("sst2", tmp_path)


def test_unknown_task() -> None:
    with pytest.raises(DataError, match="sst2"):
        load_task("imdb", None)


def test_resolve_data_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FEDSA_DATA_DIR", raising=False)
    assert resolve_data_dir(None) is None
    assert resolve_data_dir("") is None
    monkeypatch.setenv("FEDSA_DATA_DIR", "/env/dir")
    assert resolve_data_dir(None) == Path("/env/dir")
    assert resolve_data_dir("/cfg") == Path("/cfg")
    monkeypatch.setenv("FEDSA_DATA_DIR", "")
    assert resolve_data_dir(None) is None


def test_hub_path(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    calls: list[tuple[str, str]] = []

    def fake_load(path: str, name: str) -> datasets.DatasetDict:
        calls.append((path, name))
        train = {"premise": ["P1", "P2", "P3"], "hypothesis": ["H1", "H2", "H3"],
                 "label": [0, 2, 1], "idx": [0, 1, 2]}  # fmt: skip
        dev = {"premise": ["P"], "hypothesis": ["H"], "label": [1], "idx": [0]}
        return datasets.DatasetDict(
            train=datasets.Dataset.from_dict(train),
            validation_matched=datasets.Dataset.from_dict(dev),
        )

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    data = load_task("mnli", None)
    assert calls == [("nyu-mll/glue", "mnli")]
    assert isinstance(data, TaskData)
    assert data.source == "hub:nyu-mll/glue/mnli"
    assert data.train == [Example("P1", "H1", 0), Example("P2", "H2", 2), Example("P3", "H3", 1)]
    assert data.dev == [Example("P", "H", 1)]
    sub = load_task("mnli", None, max_train_examples=2, seed=1)
    assert len(sub.train) == 2 and set(sub.train) <= set(data.train)


def test_hub_bad_label_and_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    def bad_labels(path: str, name: str) -> datasets.DatasetDict:
        split = datasets.Dataset.from_dict({"sentence": ["x"], "label": [-1]})
        return datasets.DatasetDict(train=split, validation=split)

    monkeypatch.setattr(datasets, "load_dataset", bad_labels)
    with pytest.raises(DataError, match="label id -1"):
        load_task("sst2", None)

    def offline(path: str, name: str) -> datasets.DatasetDict:
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataError, match="FEDSA_DATA_DIR"):
        load_task("sst2", None)


def test_synthetic() -> None:
    a = load_task("synthetic", None, seed=5)
    assert a == load_task("synthetic", None, seed=5)
    assert a.train != load_task("synthetic", None, seed=6).train
    assert (len(a.train), len(a.dev)) == (1000, 400)
    assert len(load_task("synthetic", None, max_train_examples=64).train) == 64
    vocab = set(SYNTHETIC_VOCAB)
    for ex in a.train + a.dev:
        words = ex.text_a.split()
        assert 4 <= len(words) <= 10
        assert set(words) <= vocab
        assert ex.text_b is None
    positive_share = sum(ex.label for ex in a.train) / len(a.train)
    assert 0.4 < positive_share < 0.6
    # not a one-word task: some sentences hold cues of both polarities
    pos_words = {"good", "great", "excellent"}
    neg_words = {"bad", "awful", "terrible"}
    assert any(
        set(ex.text_a.split()) & pos_words and set(ex.text_a.split()) & neg_words for ex in a.train
    )
