"""One-off: rewrite ``from fedsa.X import ...`` after the issue-11 package layout (kept for forks)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

MODULES = {
    "fedsa.errors": "fedsa.core.errors",
    "fedsa.params": "fedsa.core.params",
    "fedsa.device": "fedsa.core.device",
    "fedsa.validation": "fedsa.config.validation",
    "fedsa.aggregate": "fedsa.algorithms.aggregate",
    "fedsa.feddpa": "fedsa.algorithms.feddpa",
    "fedsa.data": "fedsa.tasks.glue",
    "fedsa.partition": "fedsa.tasks.partition",
    "fedsa.batching": "fedsa.tasks.batching",
    "fedsa.cache": "fedsa.tasks.cache",
    "fedsa.instruct": "fedsa.tasks.instruct",
    "fedsa.prompting": "fedsa.tasks.prompting",
    "fedsa.generate": "fedsa.tasks.generate",
    "fedsa.models": "fedsa.models.loaders",
    "fedsa.causal_lm": "fedsa.models.causal_lm",
    "fedsa.prepare": "fedsa.engine.prepare",
    "fedsa.simulation": "fedsa.engine.simulation",
    "fedsa.client": "fedsa.engine.client",
    "fedsa.train": "fedsa.engine.train",
    "fedsa.checkpoint": "fedsa.engine.checkpoint",
    "fedsa.faults": "fedsa.engine.faults",
    "fedsa.centralized": "fedsa.engine.centralized",
    "fedsa.runner": "fedsa.engine.runner",
    "fedsa.summary": "fedsa.engine.summary",
    "fedsa.results": "fedsa.engine.results",
    "fedsa.report": "fedsa.reports.report",
    "fedsa.analysis": "fedsa.reports.analysis",
}
# modules whose names went to several new modules: name -> module (others: the default)
SPLIT = {
    "fedsa.config": (
        "fedsa.config.schema",
        {
            n: "fedsa.config.load"
            for n in ("load_config", "config_from_dict", "parse_override", "config_diff")
        },
    ),
    "fedsa.algorithms": (
        "fedsa.algorithms.spec",
        {
            "ALGORITHMS": "fedsa.algorithms.registry",
            **{
                n: "fedsa.core.slots"
                for n in ("A", "B", "HEAD", "A_LOCAL", "B_LOCAL", "SLOTS", "Slot")
            },
        },
    ),
    "fedsa.adapters": (
        "fedsa.adapters.variants",
        {n: "fedsa.adapters.layout" for n in ("Layout", "make_layout", "apply_trainable")},
    ),
    "fedsa.store": (
        "fedsa.core.io",
        {"ClientStore": "fedsa.engine.store"},
    ),
    "fedsa.evaluate": (
        "fedsa.tasks.classification",
        {"summarize": "fedsa.engine.metrics"},
    ),
}
FROM = re.compile(
    r"^(?P<ind>[ \t]*)from (?P<mod>fedsa(?:\.\w+)*) import (?P<names>\([^)]*\)|[^\n]*)", re.M
)


def rewrite(text: str) -> str:
    def sub(m: re.Match[str]) -> str:
        mod, ind = m["mod"], m["ind"]
        raw = m["names"].strip("()")
        if mod in MODULES:
            return f"{ind}from {MODULES[mod]} import {m['names']}"
        if mod not in SPLIT:
            return m.group(0)
        default, table = SPLIT[mod]
        groups: dict[str, list[str]] = {}
        for part in raw.replace("\n", " ").split(","):
            part = part.strip()
            if not part or part.startswith("#"):
                continue
            name = part.split(" as ")[0].strip()
            groups.setdefault(table.get(name, default), []).append(part)
        return "\n".join(f"{ind}from {k} import {', '.join(v)}" for k, v in sorted(groups.items()))

    text = FROM.sub(sub, text)
    for old, new in sorted(MODULES.items(), key=lambda kv: -len(kv[0])):
        text = re.sub(rf"(?<![\w.]){re.escape(old)}(?![\w])", new, text)
    return text


for path in sys.argv[1:]:
    p = Path(path)
    old = p.read_text()
    new = rewrite(old)
    if new != old:
        p.write_text(new)
        print("rewrote", p)
