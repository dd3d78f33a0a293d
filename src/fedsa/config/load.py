"""Loading a run configuration: TOML files, dotted ``key=value`` overrides, saved ``config.json``.

Every config a run uses is built here and validated (:func:`fedsa.config.validation.validate`)
before anything else happens, so a bad value fails before any data or model is loaded, with a
one-line :class:`~fedsa.core.errors.ConfigError` naming the key, the value and the fix.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import tomllib
import types
import typing
from pathlib import Path
from typing import Any

from fedsa.config.schema import LATER, RunConfig, jsonable
from fedsa.config.validation import validate
from fedsa.core.errors import ConfigError


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(key: str, value: Any, tp: Any) -> Any:
    """Check ``value`` against the annotated type ``tp``; ints are accepted for floats."""
    origin = typing.get_origin(tp)
    if origin is tuple:
        (item_tp, _) = typing.get_args(tp)
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
            if item_tp is int:
                value = [int(v) if v.lstrip("-").isdigit() else v for v in value]
        if not isinstance(value, list):
            raise ConfigError(f"{key} = {value!r} has the wrong type: expected a list of strings")
        return tuple(_coerce(f"{key}[{i}]", v, item_tp) for i, v in enumerate(value))
    if origin in (typing.Union, types.UnionType):
        raise AssertionError(f"unsupported union type for {key}")
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    wrong_bool = isinstance(value, bool) and tp is not bool
    if wrong_bool or not isinstance(value, tp):
        raise ConfigError(
            f"{key} = {value!r} has the wrong type: expected {_type_name(tp)}, "
            f"got {type(value).__name__}"
        )
    return _in_range(key, value)


INT_LIMIT = 2**63
"""Integers must fit in a signed 64-bit integer (what torch and numpy seed generators take)."""


def _in_range(key: str, value: Any) -> Any:
    """Reject NaN, infinities and integers beyond 64 bits, whatever the field (one rule for all)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{key} = {value!r} is invalid: it must be a finite number")
    if (
        isinstance(value, int)
        and not isinstance(value, bool)
        and not -INT_LIMIT < value < INT_LIMIT
    ):
        raise ConfigError(
            f"{key} = {value} is out of range: integers must lie strictly between -2**63 and 2**63"
        )
    return value


def _build(cls: type[Any], data: dict[str, Any], prefix: str) -> Any:
    """Construct dataclass ``cls`` from a nested dict, rejecting unknown keys by name."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        full = f"{prefix}{key}"
        if key not in fields:
            hint = difflib.get_close_matches(key, list(fields), n=1)
            fix = f"did you mean {prefix + hint[0]!r}?" if hint else "remove it"
            raise ConfigError(f"unknown config key {full!r}: {fix} (known: {', '.join(fields)})")
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, dict):
                raise ConfigError(f"{full} must be a table of keys, got {value!r}")
            kwargs[key] = _build(tp, value, f"{full}.")  # type: ignore[arg-type]
        else:
            kwargs[key] = _coerce(full, value, tp)
    return cls(**kwargs)


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse ``dotted.key=value``; the value is read as TOML (``3``, ``true``, ``"x"``, ``[..]``).

    A value that is not valid TOML is taken as a bare string, so ``algorithm=fedit`` works.
    """
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not of the form dotted.key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r} has an empty key: write e.g. federation.rounds=5")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return key.split("."), value


def _set_path(tree: dict[str, Any], path: list[str], value: Any) -> None:
    node = tree
    for part in path[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"cannot set {'.'.join(path)}: {part} is not a table")
        node = child
    node[path[-1]] = value


def load_config(path: str | Path | None, overrides: typing.Sequence[str] = ()) -> RunConfig:
    """Read a TOML file (or start from defaults when ``path`` is None) and apply overrides."""
    tree: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {str(p)!r} not found: pass an existing TOML file")
        try:
            tree = tomllib.loads(p.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file {str(p)!r} is not valid TOML: {exc}") from None
    apply_overrides(tree, overrides)
    return config_from_dict(tree)


def apply_overrides(tree: dict[str, Any], overrides: typing.Sequence[str]) -> None:
    """Set every ``dotted.key=value`` of ``overrides`` in the nested dict ``tree``, in order."""
    for item in overrides:
        keys, value = parse_override(item)
        _set_path(tree, keys, value)


def config_from_dict(tree: dict[str, Any]) -> RunConfig:
    """Build and validate a :class:`RunConfig` from a nested dict (e.g. a saved config.json)."""
    cfg = _build(RunConfig, tree, "")
    assert isinstance(cfg, RunConfig)
    validate(cfg)
    return cfg


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def config_diff(
    old: dict[str, Any], new: dict[str, Any], ignore: typing.Sequence[str] = ()
) -> list[str]:
    """Dotted keys whose values differ between two config dicts (``to_dict`` form), sorted.

    Keys in the groups named by ``ignore`` (e.g. ``tracking``) are left out, absent or not, so
    that a resume may change what changes nothing computed, and configs saved before such a
    group existed still compare equal.
    """
    old, new = dict(old), dict(new)
    for tree in (old, new):  # a config saved before a later group existed holds its defaults
        for key, group in LATER.items():
            tree.setdefault(key, jsonable(dataclasses.asdict(group())))
    a, b = _flatten(jsonable(old)), _flatten(jsonable(new))
    keys = {k for k in a.keys() | b.keys() if k.split(".")[0] not in ignore}
    return sorted(k for k in keys if a.get(k, "<absent>") != b.get(k, "<absent>"))
