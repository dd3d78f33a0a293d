"""Reading what ``fedsa predict`` is asked about: TSV, JSONL, or one text a line.

A GLUE TSV (with its header) is read by the task's own column names, so a task's ``dev.tsv``
can be given as it is; JSONL objects use the same names (or ``text``/``text_a``/``text_b``, and
``prompt``/``question`` for causal LMs); plain text is one input a line, a pair separated by a
tab. Every malformed line is reported with its number and the fix.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from fedsa.core.errors import DataError

FORMATS = ("auto", "tsv", "jsonl", "text")
_PAIR_KEYS = (("text_a", "text_b"), ("text", "text_pair"))
_PROMPT_KEYS = ("prompt", "question", "text", "instruction")


@dataclass(frozen=True)
class Item:
    """One input: a text or a pair of texts (a prompt, for causal LMs)."""

    text_a: str
    text_b: str | None = None


def _format(source: str, fmt: str) -> str:
    if fmt != "auto":
        return fmt
    suffix = Path(source).suffix.lower()
    return {".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl"}.get(suffix, "text")


def read_source(source: str) -> str:
    """The text of ``source`` (``-``: standard input)."""
    if source == "-":
        return sys.stdin.read()
    try:
        return Path(source).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(
            f"--input {source!r} does not exist: give a file path or - for stdin"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(
            f"--input {source!r} is unreadable ({exc}): give a UTF-8 text file"
        ) from None


def _from_fields(row: dict[str, object], fields: tuple[str, ...], where: str) -> Item:
    """An item from the task's field names, else from the generic ones."""
    candidates = [fields, *_PAIR_KEYS] if len(fields) > 1 else [fields, ("text",), ("sentence",)]
    for keys in candidates:
        if keys and keys[0] in row:
            texts = [row.get(k) for k in keys]
            if not all(isinstance(t, str) for t in texts[:1]) or (
                len(texts) > 1 and not isinstance(texts[1], (str, type(None)))
            ):
                raise DataError(f"{where}: {', '.join(keys)} must be strings")
            first = str(texts[0])
            second = texts[1] if len(texts) > 1 and isinstance(texts[1], str) else None
            if len(fields) > 1 and second is None:
                raise DataError(f"{where}: this task takes a pair of texts: add {keys[1]!r}")
            return Item(first, second)
    raise DataError(
        f"{where}: no input text: name it {' and '.join(repr(f) for f in fields)} "
        "(the task's columns) or 'text'"
    )


def parse_items(text: str, fmt: str, fields: tuple[str, ...], source: str) -> list[Item]:
    """Every input of ``text``; ``fields`` are the task's text fields (prompt tasks: ``()``)."""
    fmt = _format(source, fmt)
    keys = fields or _PROMPT_KEYS
    items: list[Item] = []
    if fmt == "jsonl":
        for no, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                raise DataError(
                    f"{source}:{no}: not a JSON object: write one object a line"
                ) from None
            if not isinstance(row, dict):
                raise DataError(f"{source}:{no}: not a JSON object: write one object a line")
            if not fields:
                found = next((k for k in keys if isinstance(row.get(k), str)), None)
                if found is None:
                    raise DataError(f"{source}:{no}: no prompt: name it one of {list(keys)}")
                items.append(Item(str(row[found])))
            else:
                items.append(_from_fields(row, fields, f"{source}:{no}"))
    elif fmt == "tsv":
        reader = csv.DictReader(io.StringIO(text), delimiter="\t", quoting=csv.QUOTE_NONE)
        if not reader.fieldnames:
            raise DataError(f"--input {source!r}: an empty TSV: its first line must be a header")
        for no, row in enumerate(reader, 2):
            where = f"{source}:{no}"
            if fields:
                items.append(_from_fields(dict(row), fields, where))
                continue
            found = next((k for k in keys if row.get(k)), None)
            if found is None:
                raise DataError(f"{where}: no prompt column: name one of {list(keys)}")
            items.append(Item(row[found]))
    elif fmt == "text":
        for line in text.splitlines():
            if not line.strip():
                continue
            a, sep, b = line.partition("\t")
            items.append(Item(a, b if sep and len(fields) > 1 else None))
            if len(fields) > 1 and not sep:
                raise DataError(
                    f"{source}:{len(items)}: this task takes a pair of texts: separate them with "
                    "a tab, or use TSV/JSONL"
                )
    else:
        raise DataError(f"--format {fmt!r} is not one of {', '.join(FORMATS)}")
    if not items:
        raise DataError(f"--input {source!r} holds no input: give one text a line")
    return items
