"""The ServerApp's run config as a TOML file for ``flwr run --run-config FILE``.

The resolved fedsa config travels inside it as one JSON string (a TOML literal string cannot
contain ``'''``, which JSON never produces), so ``flwr run`` needs no quoting on the command line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    text = str(value)
    if "'''" in text:
        raise ValueError("run config strings cannot contain three single quotes")
    return "'''" + text + "'''"


def write_run_config(path: Path, values: dict[str, Any]) -> Path:
    """Write ``values`` (str, bool, int, float) as a flat TOML table; returns ``path``."""
    lines = [f"{key} = {_toml_value(value)}" for key, value in values.items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
