"""Config loading, overrides and validation: every error is one line naming key and fix."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fedsa.config.load import config_from_dict, load_config, parse_override
from fedsa.config.schema import RunConfig
from fedsa.core.errors import ConfigError

TINY = Path(__file__).parents[1] / "configs" / "tiny.toml"


def test_tiny_config_loads_and_round_trips() -> None:
    cfg = load_config(TINY)
    assert cfg.model.name == "tiny-bert"
    assert config_from_dict(cfg.to_dict()) == cfg


def test_overrides_select_algorithm_seed_and_variant() -> None:
    cfg = load_config(
        TINY,
        [
            "algorithm=fedit",
            "seed=3",
            "adapter.variant=vera",
            "optim.lr=1",
            "adapter.target_modules=query,key",
        ],
    )
    assert (cfg.algorithm, cfg.seed, cfg.adapter.variant) == ("fedit", 3, "vera")
    assert cfg.optim.lr == 1.0 and isinstance(cfg.optim.lr, float)
    assert cfg.adapter.target_modules == ("query", "key")


def test_parse_override_reads_toml_values() -> None:
    assert parse_override("a.b=3") == (["a", "b"], 3)
    assert parse_override("x=true") == (["x"], True)
    assert parse_override("x=fedsa-lora") == (["x"], "fedsa-lora")
    assert parse_override('x=["q", "v"]') == (["x"], ["q", "v"])


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        (["federation.roundz=3"], "unknown config key 'federation.roundz': did you mean"),
        (["optimizer.lr=3"], "unknown config key 'optimizer'"),
        (["federation.rounds=ten"], "federation.rounds = 'ten' has the wrong type: expected int"),
        (["federation.rounds=2.5"], "expected int"),
        (["federation.share_head=1"], "expected bool"),
        (["federation.rounds=0"], "federation.rounds = 0 is invalid: it must be > 0"),
        (["data.dirichlet_alpha=-1"], "data.dirichlet_alpha"),
        (["adapter.r=0"], "adapter.r = 0"),
        (["algorithm=fedsa"], "algorithm = 'fedsa' is unknown: did you mean 'fedsa-lora'"),
        (["adapter.variant=dora"], "adapter.variant = 'dora' is unknown"),
        (["data.partition=pathological"], "data.partition"),
        (["federation.clients_per_round=9"], "exceeds data.num_clients"),
        (["federation.share_head=true"], "not allowed for fedsa-lora"),
        (["adapter.dropout=1.5"], "adapter.dropout"),
        (["model=3"], "model must be a table"),
        (["federation.rounds"], "not of the form dotted.key=value"),
    ],
)
def test_bad_values_are_one_line_errors(overrides: list[str], needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(TINY, overrides)
    message = str(info.value)
    assert needle in message
    assert "\n" not in message


def test_missing_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("rounds = [", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_defaults_are_valid() -> None:
    assert RunConfig().algorithm == "fedsa-lora"


@pytest.mark.parametrize("path", sorted((TINY.parent).glob("*.toml")), ids=lambda p: p.name)
def test_every_shipped_config_is_valid(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.adapter.r > 0
    if path.name.startswith("paper-gsm8k"):  # the NLG setup: LLaMA3-8B, 3 IID clients
        assert (cfg.adapter.r, cfg.adapter.alpha, cfg.data.num_clients) == (8, 16.0, 3)
        assert cfg.adapter.target_modules == ("q_proj", "v_proj")
        assert (cfg.data.partition, cfg.data.task) == ("iid", "gsm8k")
        assert (cfg.federation.rounds, cfg.federation.local_steps) == (100, 30)
        assert (cfg.federation.batch_size, cfg.generate.few_shot) == (1, 8)
    elif path.name.startswith("paper-"):
        assert (cfg.adapter.r, cfg.adapter.alpha, cfg.adapter.dropout) == (8, 16.0, 0.05)
        assert cfg.adapter.target_modules == ("query", "value")
        assert (cfg.data.num_clients, cfg.data.dirichlet_alpha) == (3, 0.5)


def _numeric_fields(cls: type, prefix: str = "") -> list[tuple[str, object]]:
    """(dotted key, annotated type) of every int, float or tuple-of-int field of the config."""
    import dataclasses
    import typing

    out: list[tuple[str, object]] = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            out += _numeric_fields(tp, f"{prefix}{f.name}.")  # type: ignore[arg-type]
        elif tp in (int, float) or typing.get_args(tp)[:1] == (int,):
            out.append((f"{prefix}{f.name}", tp))
    return out


NUMERIC = _numeric_fields(RunConfig)


def test_the_numeric_field_walk_finds_the_known_fields() -> None:
    keys = {k for k, _ in NUMERIC}
    assert {"seed", "optim.lr", "data.dirichlet_alpha", "analysis.snapshot_rounds"} <= keys
    assert len(keys) > 30


@pytest.mark.parametrize(("key", "tp"), NUMERIC, ids=[k for k, _ in NUMERIC])
def test_every_numeric_field_rejects_nan_infinities_and_huge_integers(key: str, tp: object) -> None:
    bad = ["nan", "inf", "-inf"] if tp is float else [str(10**20), str(-(10**20))]
    if tp not in (int, float):  # a tuple of ints
        bad = [f"[{b}]" for b in bad]
    for value in bad:
        with pytest.raises(ConfigError, match=re.escape(key)) as info:
            load_config(TINY, [f"{key}={value}"])
        assert "\n" not in str(info.value)
