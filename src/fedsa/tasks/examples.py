"""Labelled examples of classification tasks, as every loader returns them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Example:
    """One labelled input: one text, or a pair of texts."""

    text_a: str
    text_b: str | None
    label: int


@dataclass(frozen=True)
class TaskData:
    """A loaded task: train and dev examples plus where they came from."""

    task: str
    train: list[Example]
    dev: list[Example]
    label_names: tuple[str, ...]
    source: str

    @property
    def num_labels(self) -> int:
        """Number of classes."""
        return len(self.label_names)
