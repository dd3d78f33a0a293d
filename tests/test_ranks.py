"""Heterogeneous ranks (``adapter.client_ranks``): each client is a real PEFT LoRA of its rank.

One model of rank ``r_max`` serves every client; a rank-``r_k`` client must behave exactly like a
standalone PEFT model built with ``r = r_k`` (and ``use_rslora``) holding the same factors:
same output, same gradients (the padded entries get none). ``alpha = 12`` makes every scale
differ from 1 (6, 3, 1.5 for ranks 2, 4, 8 under LoRA).
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, TaskType, get_peft_model

from fedsa.adapters.ranks import at_rank, max_rank, padded, scale_for
from fedsa.algorithms.hooks import ClientStart
from fedsa.algorithms.lowrank import lora_layers
from fedsa.algorithms.registry import ALGORITHMS
from fedsa.config.load import load_config
from fedsa.core.errors import ConfigError
from fedsa.core.params import read_from
from fedsa.core.slots import A, B
from fedsa.engine.client import install_start
from fedsa.engine.prepare import build_model
from fedsa.tasks.registry import task_for

TINY = Path(__file__).parents[1] / "configs" / "tiny.toml"
RANKS = [2, 4, 8]
TOL = 1e-6


def het_config(variant: str, *extra: str):  # type: ignore[no-untyped-def]
    return load_config(
        TINY,
        [
            "algorithm=hetlora",
            f"adapter.variant={variant}",
            "adapter.alpha=12.0",
            f"adapter.client_ranks={RANKS}",
            'adapter.target_modules=["query", "dense"]',  # square and d_in != d_out layers
            *extra,
        ],
    )


@pytest.mark.parametrize("variant", ["lora", "rslora"])
@pytest.mark.parametrize("rank", RANKS)
def test_client_equals_standalone_peft_model_of_its_rank(variant: str, rank: int) -> None:
    cfg = het_config(variant)
    base = task_for(cfg.data.task).load_base(cfg, 2)
    ref_base = copy.deepcopy(base)
    model, layout = build_model(cfg, 2, torch.device("cpu"), base=base)
    assert max_rank(cfg) == 8
    targets = sorted(
        {n.split(".lora_A.")[0].rsplit(".", 1)[1] for n in layout.slots if ".lora_A." in n}
    )
    ref = get_peft_model(
        ref_base,
        LoraConfig(
            task_type=TaskType.SEQ_CLS,
            r=rank,
            lora_alpha=12.0,  # type: ignore[arg-type]
            lora_dropout=0.0,
            target_modules=targets,
            use_rslora=variant == "rslora",
        ),
    )
    gen = torch.Generator().manual_seed(rank)
    factors = {}
    for layer in lora_layers(layout.slots):
        n = model.get_parameter(layer.a).shape[1]
        m = model.get_parameter(layer.b).shape[0]
        factors[layer.a] = torch.randn(rank, n, generator=gen)
        factors[layer.b] = torch.randn(m, rank, generator=gen)
    head = read_from(model, layout.private)
    start = ClientStart(
        frozen={}, shared=factors, private=head, initial_private=head, base={}, rank=rank
    )
    install_start(model, ALGORITHMS["hetlora"], start, layout, cfg)
    ref_params = dict(ref.named_parameters())
    with torch.no_grad():
        for name, value in {**factors, **head}.items():
            assert ref_params[name].shape == value.shape, name
            ref_params[name].copy_(value)
    scaled = [m for m in ref.modules() if hasattr(m, "lora_A")]  # PEFT's own s_k
    assert scaled and all(
        m.scaling["default"] == pytest.approx(scale_for(cfg, rank)) for m in scaled
    )
    vocab = base.config.vocab_size
    ids = torch.randint(0, vocab, (4, 12), generator=gen)
    mask = torch.ones_like(ids)
    labels = torch.tensor([0, 1, 1, 0])
    model.eval()
    ref.eval()
    ours_out = model(input_ids=ids, attention_mask=mask, labels=labels)
    ref_out = ref(input_ids=ids, attention_mask=mask, labels=labels)
    assert torch.allclose(ours_out.logits, ref_out.logits, atol=TOL, rtol=0)
    ours_out.loss.backward()
    ref_out.loss.backward()
    params = dict(model.named_parameters())
    checked = 0
    for layer in lora_layers(layout.slots):
        ga, gb = params[layer.a].grad, params[layer.b].grad
        assert ga is not None and gb is not None
        ra, rb = ref_params[layer.a].grad, ref_params[layer.b].grad
        assert ra is not None and rb is not None
        assert float(ra.abs().max()) > 0  # a real gradient, not two zeros
        assert torch.allclose(ga[:rank], ra, atol=TOL, rtol=0)
        assert torch.allclose(gb[:, :rank], rb, atol=TOL, rtol=0)
        assert float(ga[rank:].abs().sum()) == 0.0  # padded rows get no gradient
        assert float(gb[:, rank:].abs().sum()) == 0.0
        checked += 1
    assert checked == len(lora_layers(layout.slots)) >= 4


def test_rank_views_slice_and_pad() -> None:
    slots = {"x.lora_A.default.weight": A, "x.lora_B.default.weight": B}
    a, b = torch.arange(24.0).reshape(8, 3), torch.arange(40.0).reshape(5, 8)
    cut = at_rank({"x.lora_A.default.weight": a, "x.lora_B.default.weight": b}, slots, 2)
    assert cut["x.lora_A.default.weight"].shape == (2, 3)
    assert cut["x.lora_B.default.weight"].shape == (5, 2)
    back = padded(cut, slots, 8)
    assert torch.equal(back["x.lora_A.default.weight"][:2], a[:2])
    assert float(back["x.lora_A.default.weight"][2:].abs().sum()) == 0.0
    assert torch.equal(back["x.lora_B.default.weight"][:, :2], b[:, :2])
    assert float(back["x.lora_B.default.weight"][:, 2:].abs().sum()) == 0.0


@pytest.mark.parametrize("algorithm", ["fedit", "ffa-lora", "fedex-lora", "rolora", "fedsvd"])
def test_methods_without_heterogeneous_ranks_refuse_them(algorithm: str) -> None:
    with pytest.raises(ConfigError, match="cannot take adapter.client_ranks"):
        load_config(TINY, [f"algorithm={algorithm}", "adapter.client_ranks=[2, 4]"])


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("adapter.client_ranks=[2, 0]", r"client_ranks\[1\] = 0"),
        ("adapter.variant=vera", "lora or rslora"),
        ("privacy.mode=client", "privacy.mode"),
    ],
)
def test_bad_rank_configs_are_refused(override: str, match: str) -> None:
    ranks = [] if "client_ranks" in override else ["adapter.client_ranks=[2, 4]"]
    with pytest.raises(ConfigError, match=match):
        load_config(TINY, ["algorithm=fedsa-lora", *ranks, override])


def test_config_digests_from_before_heterogeneous_ranks_still_hold() -> None:
    """The new keys (``adapter.client_ranks``, ``florist``) stay out of digests at their defaults,
    so finished runs and checkpoints made before them are still reused and resumed."""
    cfg = load_config(TINY, [])
    assert cfg.sha256() == "8f65bcdbd2d27214ecdd07d99d961608957f629d105fd31867539aa150d2bfbe"
    het = dataclasses.replace(cfg, adapter=dataclasses.replace(cfg.adapter, client_ranks=(2, 4)))
    assert het.sha256() != cfg.sha256()
