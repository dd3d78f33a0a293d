"""Client-level differential privacy (DP-FedAvg) on the shared tensors, and its accounting.

The mechanism is checked against hand-computed values (clipping over all shared tensors
together, noise statistics at the fixed denominator), the accountant against a direct
dp-accounting computation and the reference value of ``../shared/reference/METHODS.md``
(q = 0.01, z = 1, T = 1000, delta = 1e-5: RDP epsilon 2.10, PLD 1.83), and whole runs against the
non-private engine (no noise and a clip that never binds give the uniform-weight run to 1e-6).
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import dp_accounting  # in the dev extra: a missing package fails the tests, never skips them
import pytest
import torch

from fedsa.algorithms.hooks import Upload
from fedsa.cli import main
from fedsa.config.load import load_config
from fedsa.core.errors import ConfigError
from fedsa.core.io import load_tensors
from fedsa.engine.prepare import sample_clients
from fedsa.privacy.accounting import calibrated, epsilon_of
from fedsa.privacy.mechanism import clip_update, noise_generator, noised_mean_update

TINY = Path(__file__).parents[1] / "configs" / "tiny.toml"
DP = ["privacy.mode=client", "federation.weighting=uniform", "privacy.noise_seed=11"]


def _metrics(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_clipping_scales_the_update_over_all_tensors_together() -> None:
    # per tensor the norms are 3 and 4 (each below 4.5); together 5 > 4.5: clipped to 4.5
    update = {"a": torch.tensor([3.0, 0.0]), "b": torch.tensor([[0.0], [4.0]])}
    clipped, norm = clip_update(update, 4.5)
    assert norm == 5.0
    assert torch.allclose(clipped["a"], torch.tensor([2.7, 0.0], dtype=torch.float64))
    assert torch.allclose(clipped["b"], torch.tensor([[0.0], [3.6]], dtype=torch.float64))
    assert math.isclose(math.sqrt(sum(float(t.pow(2).sum()) for t in clipped.values())), 4.5)
    kept, _ = clip_update(update, 5.5)  # below the bound: unchanged
    assert all(torch.equal(kept[k], update[k].double()) for k in update)


def test_noise_has_mean_zero_and_std_z_s_over_the_denominator() -> None:
    shape = (400, 500)  # 200,000 draws
    received = {"w": torch.full(shape, 0.5)}
    uploads = [Upload(str(k), {"w": torch.full(shape, 0.5)}, 1.0, received) for k in range(3)]
    z, s, denominator = 1.3, 0.7, 2.5
    mean, norms = noised_mean_update(uploads, s, z * s, denominator, noise_generator(5, 1))
    values = mean["w"].flatten()
    want = z * s / denominator
    assert norms == [0.0, 0.0, 0.0]
    assert abs(float(values.mean())) < 5 * want / math.sqrt(values.numel())
    assert abs(float(values.std()) / want - 1) < 0.01  # std of 2e5 draws: about 0.16% off
    again, _ = noised_mean_update(uploads, s, z * s, denominator, noise_generator(5, 1))
    assert torch.equal(again["w"], mean["w"])  # a noise seed reproduces the draw
    other, _ = noised_mean_update(uploads, s, z * s, denominator, noise_generator(0, 1))
    assert not torch.equal(other["w"], mean["w"])  # seed 0: the OS's randomness


def test_clipped_updates_are_summed_and_divided_by_the_fixed_denominator() -> None:
    received = {"w": torch.zeros(2)}
    uploads = [
        Upload("0", {"w": torch.tensor([6.0, 8.0])}, 1.0, received),  # norm 10 -> clipped to 1
        Upload("1", {"w": torch.tensor([0.3, 0.4])}, 1.0, received),  # norm 0.5 -> unchanged
    ]
    mean, norms = noised_mean_update(uploads, 1.0, 0.0, 4.0, noise_generator(1, 1))
    assert norms == pytest.approx([10.0, 0.5])
    assert torch.allclose(mean["w"], torch.tensor([0.9, 1.2], dtype=torch.float64) / 4.0)


def test_epsilon_equals_dp_accounting_and_the_reference_values() -> None:
    q, z, rounds, delta = 0.01, 1.0, 1000, 1e-5
    ev = dp_accounting.dp_event
    event = ev.SelfComposedDpEvent(ev.PoissonSampledDpEvent(q, ev.GaussianDpEvent(z)), rounds)
    direct = dp_accounting.rdp.RdpAccountant()
    direct.compose(event)
    assert epsilon_of(q, z, rounds, delta, "rdp") == direct.get_epsilon(delta)
    assert epsilon_of(q, z, rounds, delta, "rdp") == pytest.approx(2.10, abs=0.005)
    assert epsilon_of(q, z, rounds, delta, "pld") == pytest.approx(1.83, abs=0.005)
    assert epsilon_of(q, 0.0, rounds, delta) == math.inf
    assert epsilon_of(q, z, 0, delta) == 0.0


def test_calibration_hits_the_target_epsilon() -> None:
    q, rounds, delta = 0.1, 50, 1e-5
    for target in (1.0, 4.0):
        z = calibrated(q, rounds, target, delta, "rdp")
        eps = epsilon_of(q, z, rounds, delta, "rdp")
        assert target * 0.99 <= eps <= target
    cfg = load_config(TINY, [*DP, "privacy.target_epsilon=3", "federation.rounds=4"])
    assert cfg.privacy.target_epsilon == 3.0


def test_poisson_sampling_draws_each_client_with_probability_q() -> None:
    ids = [str(k) for k in range(100)]
    counts = [len(sample_clients(ids, 10, 3, t, poisson=True)) for t in range(1, 401)]
    assert len(set(counts)) > 5  # the number of participants varies
    assert sum(counts) / len(counts) == pytest.approx(10, rel=0.05)
    assert sample_clients(ids, 10, 3, 7, poisson=True) == sample_clients(ids, 10, 3, 7, True)
    assert sample_clients(ids, 0, 3, 7, poisson=True) == ids  # q = 1: everyone


def test_no_noise_and_a_clip_that_never_binds_equal_the_uniform_run(tmp_path: Path) -> None:
    plain = ["federation.weighting=uniform", "adapter.alpha=12", "federation.rounds=2"]
    assert main(["run", str(TINY), *plain, "--out", str(tmp_path / "plain")]) == 0
    private = [*plain, *DP, "privacy.noise_multiplier=0", "privacy.clip_norm=1e9"]
    assert main(["run", str(TINY), *private, "--out", str(tmp_path / "dp")]) == 0
    for name in ("global.safetensors", "clients/0.safetensors", "clients/2.safetensors"):
        a, b = load_tensors(tmp_path / "plain" / name), load_tensors(tmp_path / "dp" / name)
        assert a.keys() == b.keys()
        assert all(torch.allclose(a[k], b[k], rtol=0, atol=1e-6) for k in a), name
    records = _metrics(tmp_path / "dp")
    assert [r["privacy"]["epsilon"] for r in records] == [None, None]  # no noise: no guarantee


def test_very_large_noise_does_not_learn(tmp_path: Path) -> None:
    shared_all = ["algorithm=fedit", "federation.share_head=true", "federation.rounds=3"]
    base = [*shared_all, "federation.weighting=uniform"]
    assert main(["run", str(TINY), *base, "--out", str(tmp_path / "plain")]) == 0
    noisy = [*base, *DP, "privacy.noise_multiplier=1e4", "privacy.clip_norm=1"]
    assert main(["run", str(TINY), *noisy, "--out", str(tmp_path / "dp")]) == 0
    plain, dp = _metrics(tmp_path / "plain")[-1], _metrics(tmp_path / "dp")[-1]
    assert dp["eval"]["accuracy_mean"] < plain["eval"]["accuracy_mean"]
    assert dp["eval"]["loss_mean"] > 10 * plain["eval"]["loss_mean"]
    summary = json.loads((tmp_path / "dp" / "summary.json").read_text())
    assert summary["privacy"]["epsilon"] < 1e-2


def test_every_round_records_what_has_been_spent(tmp_path: Path) -> None:
    args = [*DP, "federation.rounds=3", "data.num_clients=4", "federation.clients_per_round=2"]
    assert main(["run", str(TINY), *args, "--out", str(tmp_path / "dp")]) == 0
    for r in _metrics(tmp_path / "dp"):
        want = epsilon_of(0.5, 1.0, r["round"], 1e-5, "rdp")
        assert r["privacy"] == {
            "epsilon": want,
            "delta": 1e-5,
            "noise_multiplier": 1.0,
            "sampling_rate": 0.5,
        }


def test_resume_continues_the_noise_and_the_accountant_bitwise(tmp_path: Path) -> None:
    args = [*DP, "federation.rounds=3"]
    assert main(["run", str(TINY), *args, "--out", str(tmp_path / "ref")]) == 0
    shutil.copytree(tmp_path / "ref", tmp_path / "run")
    shutil.rmtree(tmp_path / "run" / "checkpoints" / "round_000003")
    assert main(["run", "--resume", str(tmp_path / "run")]) == 0
    a, b = (load_tensors(tmp_path / d / "global.safetensors") for d in ("ref", "run"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    ref, run = _metrics(tmp_path / "ref"), _metrics(tmp_path / "run")
    assert [r["privacy"] for r in ref] == [r["privacy"] for r in run]
    assert [r["eval"]["clients"] for r in ref] == [r["eval"]["clients"] for r in run]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("algorithm=flora", "its server stacks every client's A and B"),
        ("algorithm=fedex-lora", "needs every client's product"),
        ("algorithm=flexlora", "before its SVD"),
        ("algorithm=local-only", "it shares nothing"),
        ("algorithm=centralized", "pools every client's data"),
        ("federation.weighting=examples", "needs federation.weighting = 'uniform'"),
        ("privacy.clip_norm=0", "privacy.clip_norm = 0.0 is invalid"),
        ("privacy.target_delta=1", "privacy.target_delta = 1.0 must be in (0, 1)"),
        ("privacy.accountant=moments", "privacy.accountant = 'moments' is unknown"),
        ("privacy.noise_multiplier=-1", "privacy.noise_multiplier = -1.0 is invalid"),
    ],
)
def test_what_dp_cannot_protect_is_refused_in_one_line(
    override: str, message: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match=".") as caught:
        load_config(TINY, [*DP, override])
    assert message in str(caught.value) and "\n" not in str(caught.value)
    capsys.readouterr()
    assert main(["run", str(TINY), *DP, override, "--out", str(tmp_path / "x")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_the_privacy_group_leaves_earlier_digests_alone() -> None:
    plain = load_config(TINY, [])
    assert plain.sha256() == load_config(TINY, ["privacy.clip_norm=1.0"]).sha256()
    assert plain.sha256() != load_config(TINY, DP).sha256()
