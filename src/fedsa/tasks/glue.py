"""GLUE task loading from a local GLUE mirror, the public hub, or a synthetic generator.

Label ids everywhere equal those of the public ``nyu-mll/glue`` hub dataset, so a model trained
on local TSVs and one trained on hub data agree on what label 0 means.
"""

from __future__ import annotations

import csv
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fedsa.core.errors import DataError
from fedsa.tasks.examples import Example, TaskData
from fedsa.tasks.synthetic import synthetic_examples

logger = logging.getLogger(__name__)

HUB_DATASET = "nyu-mll/glue"
DATA_DIR_ENV = "FEDSA_DATA_DIR"


@dataclass(frozen=True)
class TaskSpec:
    """Everything needed to read one task from local TSVs or from the hub.

    Attributes:
        name: Lowercase id used in configs (``"sst2"``).
        glue_dir: Folder name in the standard GLUE download (``"SST-2"``).
        text_fields: TSV column names holding the one or two input texts.
        label_field: TSV column name holding the raw label.
        label_names: Label names; the index is the integer label id (hub ids).
        raw_labels: Raw TSV label strings in label-id order (``raw_labels[i]`` maps to id ``i``).
        hub_config: Configuration name of ``nyu-mll/glue``.
        hub_text_fields: Hub column names matching ``text_fields``.
        hub_eval_split: Hub split used as the dev set.
        description: One-line description.
        paper: Citation of the dataset.
        columns: Column names by position for headerless files (CoLA); None when a header exists.

    """

    name: str
    glue_dir: str
    text_fields: tuple[str, ...]
    label_field: str
    label_names: tuple[str, ...]
    raw_labels: tuple[str, ...]
    hub_config: str
    hub_text_fields: tuple[str, ...]
    hub_eval_split: str
    description: str
    paper: str
    columns: tuple[str, ...] | None = None

    @property
    def num_labels(self) -> int:
        """Number of classes."""
        return len(self.label_names)


_ENT = ("entailment", "not_entailment")

TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        TaskSpec("sst2", "SST-2", ("sentence",), "label", ("negative", "positive"), ("0", "1"),
                 "sst2", ("sentence",), "validation", "Binary movie-review sentiment.",
                 "Socher et al., 2013. Recursive Deep Models for Semantic Compositionality "
                 "Over a Sentiment Treebank. EMNLP."),
        TaskSpec("rte", "RTE", ("sentence1", "sentence2"), "label", _ENT, _ENT,
                 "rte", ("sentence1", "sentence2"), "validation",
                 "Recognizing textual entailment (two-way).",
                 "Dagan et al., 2005; Bar-Haim et al., 2006; Giampiccolo et al., 2007; "
                 "Bentivogli et al., 2009. The PASCAL RTE Challenges."),
        TaskSpec("qnli", "QNLI", ("question", "sentence"), "label", _ENT, _ENT,
                 "qnli", ("question", "sentence"), "validation",
                 "Does the sentence answer the question (from SQuAD).",
                 "Rajpurkar et al., 2016. SQuAD: 100,000+ Questions for Machine Comprehension "
                 "of Text. EMNLP; recast by Wang et al., 2019 (GLUE)."),
        TaskSpec("mnli", "MNLI", ("sentence1", "sentence2"), "gold_label",
                 ("entailment", "neutral", "contradiction"),
                 ("entailment", "neutral", "contradiction"),
                 "mnli", ("premise", "hypothesis"), "validation_matched",
                 "Multi-genre natural language inference (three-way).",
                 "Williams et al., 2018. A Broad-Coverage Challenge Corpus for Sentence "
                 "Understanding through Inference. NAACL."),
        TaskSpec("qqp", "QQP", ("question1", "question2"), "is_duplicate",
                 ("not_duplicate", "duplicate"), ("0", "1"),
                 "qqp", ("question1", "question2"), "validation",
                 "Are two Quora questions paraphrases.",
                 "Iyer et al., 2017. First Quora Dataset Release: Question Pairs."),
        TaskSpec("mrpc", "MRPC", ("#1 String", "#2 String"), "Quality",
                 ("not_equivalent", "equivalent"), ("0", "1"),
                 "mrpc", ("sentence1", "sentence2"), "validation",
                 "Are two news sentences paraphrases.",
                 "Dolan and Brockett, 2005. Automatically Constructing a Corpus of Sentential "
                 "Paraphrases. IWP."),
        TaskSpec("cola", "CoLA", ("sentence",), "label", ("unacceptable", "acceptable"),
                 ("0", "1"), "cola", ("sentence",), "validation",
                 "Grammatical acceptability of an English sentence.",
                 "Warstadt et al., 2019. Neural Network Acceptability Judgments. TACL.",
                 columns=("source", "label", "original_label", "sentence")),
        TaskSpec("synthetic", "", ("sentence",), "label", ("negative", "positive"), ("0", "1"),
                 "", ("sentence",), "validation",
                 "Generated sentiment-like sentences for tests and demos (no files, no network).",
                 "None (generated by fedsa.data)."),
    )
}  # fmt: skip


def resolve_data_dir(configured: str | None) -> Path | None:
    """Return the local data directory to use, or None to use the public hub.

    The configured value wins so a config file is reproducible; the environment variable lets
    offline machines point every run at a mirror without editing configs.
    """
    if configured:
        return Path(configured).expanduser()
    env = os.environ.get(DATA_DIR_ENV, "")
    return Path(env).expanduser() if env else None


def _spec(name: str) -> TaskSpec:
    try:
        return TASKS[name]
    except KeyError:
        raise DataError(
            f"unknown task {name!r}: set data.task to one of {', '.join(sorted(TASKS))}"
        ) from None


def _read_tsv(path: Path, spec: TaskSpec) -> list[Example]:
    """Read one GLUE TSV by column name, failing loudly on any malformed row."""
    if not path.is_file():
        raise DataError(
            f"data file {path} not found: set {DATA_DIR_ENV} or data.data_dir to a folder "
            f"holding glue/{spec.glue_dir}/{{train,dev}}.tsv"
        )
    examples: list[Example] = []
    label_ids = {raw: i for i, raw in enumerate(spec.raw_labels)}
    try:
        with path.open(encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
            if spec.columns is None:
                header = next(reader, None)
                if header is None:
                    raise DataError(f"{path} is empty: expected a header row and data rows")
            else:
                header = list(spec.columns)
            needed = (*spec.text_fields, spec.label_field)
            missing = [c for c in needed if c not in header]
            if missing:
                raise DataError(
                    f"{path}: header {header} lacks column(s) {missing}: use the official "
                    f"GLUE file for {spec.glue_dir}"
                )
            text_pos = [header.index(c) for c in spec.text_fields]
            label_pos = header.index(spec.label_field)
            for row in reader:
                line = reader.line_num
                if len(row) != len(header):
                    raise DataError(
                        f"{path} line {line}: {len(row)} columns, expected {len(header)} "
                        f"({' '.join(header)}): fix or remove the row"
                    )
                raw = row[label_pos].strip()
                if raw not in label_ids:
                    raise DataError(
                        f"{path} line {line}: unknown label {raw!r}, expected one of "
                        f"{list(spec.raw_labels)}: fix or remove the row"
                    )
                texts = [row[p].strip() for p in text_pos]
                for col, text in zip(spec.text_fields, texts, strict=True):
                    if not text:
                        raise DataError(
                            f"{path} line {line}: empty text in column {col!r}: "
                            "fix or remove the row"
                        )
                examples.append(
                    Example(texts[0], texts[1] if len(texts) > 1 else None, label_ids[raw])
                )
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path} is not a readable UTF-8 TSV file: {exc}") from None
    if not examples:
        raise DataError(f"{path} has no data rows: use the official GLUE file")
    return examples


def _load_local(spec: TaskSpec, data_dir: Path) -> tuple[list[Example], list[Example], str]:
    task_dir = data_dir / "glue" / spec.glue_dir
    if not task_dir.is_dir():
        raise DataError(
            f"data directory {task_dir} not found: set {DATA_DIR_ENV} or data.data_dir to a "
            f"folder holding glue/<TASK>/{{train,dev}}.tsv"
        )
    return (
        _read_tsv(task_dir / "train.tsv", spec),
        _read_tsv(task_dir / "dev.tsv", spec),
        str(task_dir),
    )


def _hub_examples(split: object, spec: TaskSpec, split_name: str) -> list[Example]:
    source = f"hub:{HUB_DATASET}/{spec.hub_config}[{split_name}]"
    try:
        columns = [list(split[c]) for c in (*spec.hub_text_fields, "label")]  # type: ignore[index]
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(
            f"{source} lacks expected columns {[*spec.hub_text_fields, 'label']}: {exc}"
        ) from None
    examples = []
    for row, values in enumerate(zip(*columns, strict=True)):
        texts = [str(v).strip() for v in values[:-1]]
        if not all(texts):
            raise DataError(f"{source} row {row}: empty text")
        examples.append(Example(texts[0], texts[1] if len(texts) > 1 else None, int(values[-1])))
    return examples


def _load_hub(spec: TaskSpec) -> tuple[list[Example], list[Example], str]:
    import datasets  # lazy: importing datasets is slow and not needed for local data

    try:
        dsd = datasets.load_dataset(HUB_DATASET, spec.hub_config)
        train_split, eval_split = dsd["train"], dsd[spec.hub_eval_split]
    except Exception as exc:  # network, auth, cache and missing-split errors all end here
        raise DataError(
            f"could not load {HUB_DATASET}/{spec.hub_config} from the hub "
            f"({type(exc).__name__}: {exc}): set {DATA_DIR_ENV} to a local GLUE mirror for "
            "offline use"
        ) from None
    train = _hub_examples(train_split, spec, "train")
    dev = _hub_examples(eval_split, spec, spec.hub_eval_split)
    return train, dev, f"hub:{HUB_DATASET}/{spec.hub_config}"


def _subsample(examples: list[Example], k: int, seed: int) -> list[Example]:
    """Keep a seeded random subset, in original order; examples carry their own labels."""
    if k <= 0 or k >= len(examples):
        return examples
    idx = np.sort(np.random.default_rng(seed).choice(len(examples), size=k, replace=False))
    return [examples[i] for i in idx]


def load_task(
    name: str, data_dir: Path | None, *, max_train_examples: int = 0, seed: int = 0
) -> TaskData:
    """Load a task's train and dev sets.

    Args:
        name: Task id, a key of :data:`TASKS`.
        data_dir: Folder holding ``glue/<TASK>/{train,dev}.tsv``; None loads from the hub.
        max_train_examples: If > 0, keep a seeded random subset of this many training examples
            (for synthetic: generate this many).
        seed: Seed of the subsample (and of synthetic generation).

    Returns:
        The loaded :class:`TaskData`.

    Raises:
        DataError: Unknown task, missing or malformed files, hub failure, or bad labels.

    """
    spec = _spec(name)
    if spec.name == "synthetic":
        n_train = max_train_examples if max_train_examples > 0 else 1000
        train = synthetic_examples(n_train, np.random.default_rng([seed, 0]))
        dev = synthetic_examples(400, np.random.default_rng([seed, 1]))
        source = "synthetic"
    else:
        if data_dir is not None:
            train, dev, source = _load_local(spec, data_dir)
        else:
            train, dev, source = _load_hub(spec)
        train = _subsample(train, max_train_examples, seed)
    for split_name, split in (("train", train), ("dev", dev)):
        bad = next((ex.label for ex in split if not 0 <= ex.label < spec.num_labels), None)
        if bad is not None:
            raise DataError(
                f"{source} {split_name}: label id {bad} outside 0..{spec.num_labels - 1} for "
                f"task {spec.name}: use the official {spec.name} data"
            )
    logger.info("loaded %s from %s: %d train, %d dev", name, source, len(train), len(dev))
    return TaskData(spec.name, train, dev, spec.label_names, source)
