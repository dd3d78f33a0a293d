"""Pins the parameter-name contract with PEFT: an upgrade that renames internals fails here."""

from __future__ import annotations

import re

import pytest

from fedsa.adapters.variants import VARIANTS, build_peft_model
from fedsa.config.schema import AdapterConfig
from fedsa.core.errors import ConfigError
from fedsa.models.loaders import TINY_BERT, load_classifier, resolve_model_path

PREFIX = "base_model.model.bert.encoder.layer.{i}.attention.self.{m}."
HEAD = {
    "base_model.model.classifier.modules_to_save.default.weight",
    "base_model.model.classifier.modules_to_save.default.bias",
}
EXPECTED = {
    "lora": ["lora_A.default.weight", "lora_B.default.weight"],
    "rslora": ["lora_A.default.weight", "lora_B.default.weight"],
    "vera": ["vera_lambda_d.default", "vera_lambda_b.default"],
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_peft_parameter_names(variant: str) -> None:
    cfg = AdapterConfig(variant=variant, r=4, alpha=8.0)
    model = build_peft_model(load_classifier(TINY_BERT, 2, 0), cfg, 0)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    expected = {
        PREFIX.format(i=i, m=m) + suffix
        for i in range(2)
        for m in ("query", "value")
        for suffix in EXPECTED[variant]
    } | HEAD
    assert trainable == expected
    v = VARIANTS[variant]
    slots = {n: v.slot_of(n) for n in trainable}
    assert sum(s == "A" for s in slots.values()) == 4
    assert sum(s == "B" for s in slots.values()) == 4
    assert sum(s == "head" for s in slots.values()) == 2
    # the frozen base weights never map to a slot
    assert all(v.slot_of(n) is None for n, p in model.named_parameters() if not p.requires_grad)


def test_vera_projections_are_buffers_not_parameters() -> None:
    cfg = AdapterConfig(variant="vera", r=4)
    model = build_peft_model(load_classifier(TINY_BERT, 2, 0), cfg, 0)
    buffers = [n for n, _ in model.named_buffers() if re.search(r"vera_[AB]\.", n)]
    assert buffers
    assert not any(re.search(r"vera_[AB]\.", n) for n, _ in model.named_parameters())


def test_unknown_model_is_a_config_error(tmp_path: object) -> None:
    with pytest.raises(ConfigError, match="model.name"):
        load_classifier("/nonexistent/model-dir", 2, 0)
    assert resolve_model_path("some/hub-id") == "some/hub-id"
