"""What ``fedsa list`` shows: every registry by name, with its one-line summary and source.

Each registry (algorithms, adapter variants, tasks, model aliases) is read as it is, so a newly
registered algorithm appears without touching the CLI.
"""

from __future__ import annotations

from fedsa.adapters.variants import VARIANTS
from fedsa.algorithms.registry import ALGORITHMS
from fedsa.models.loaders import ALIASES
from fedsa.tasks.glue import TASKS
from fedsa.tasks.instruct import GENERATION_TASKS

Section = tuple[str, list[tuple[str, str]]]


def catalogue() -> list[Section]:
    """(title, [(name, description)]) for each registry, in the order ``fedsa list`` prints."""
    return [
        ("algorithms:", [(a.name, f"{a.summary}  [{a.paper}]") for a in ALGORITHMS.values()]),
        (
            "adapter variants (adapter.variant):",
            [(v.name, f"{v.summary}  [{v.paper}]") for v in VARIANTS.values()],
        ),
        (
            "tasks (data.task):",
            [(t.name, f"{t.description}  [{t.paper}]") for t in TASKS.values()]
            + [(n, f"(causal LM, exact match) {text}") for n, text in GENERATION_TASKS.items()],
        ),
        (
            "model aliases (model.name; any Hugging Face id or local path also works):",
            [(m.name, m.summary) for m in ALIASES.values()],
        ),
    ]
