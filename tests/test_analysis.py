"""Tests of the A/B similarity analysis (FedSA-LoRA's Figure 2 on our own snapshots)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from fedsa.core.errors import ConfigError, DataError
from fedsa.core.io import save_tensors
from fedsa.reports.analysis import analyze_round, analyze_run, pairwise_cosine
from fedsa.reports.heatmaps import write_analysis

REPO = Path(__file__).resolve().parents[1]
L0 = "base_model.model.bert.encoder.layer.0.attention.self.query"
L1 = "base_model.model.bert.encoder.layer.1.attention.self.value"
HEAD = "base_model.model.classifier.modules_to_save.default.weight"


def a_name(stem: str) -> str:
    return f"{stem}.lora_A.default.weight"


def b_name(stem: str) -> str:
    return f"{stem}.lora_B.default.weight"


def unit(i: int, shape: tuple[int, ...] = (2, 4)) -> torch.Tensor:
    """A tensor of ``shape`` with a single 1 at flat index i (orthonormal family)."""
    t = torch.zeros(shape).reshape(-1)
    t[i] = 1.0
    return t.reshape(shape)


def snap(
    before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    out = {f"before.{k}": v for k, v in before.items()}
    out.update({f"after.{k}": v for k, v in after.items()})
    return out


# ---------------------------------------------------------------- pairwise_cosine


def test_pairwise_cosine_known_values() -> None:
    a = torch.tensor([[1.0, 2.0], [3.0, -1.0]])
    b = torch.tensor([[2.0, -1.0], [1.0, 3.0]])  # orthogonal to a (2-2+3-3 = 0)
    sim = pairwise_cosine([a, 2 * a, -a, b])
    expected = np.array(
        [
            [1.0, 1.0, -1.0, 0.0],
            [1.0, 1.0, -1.0, 0.0],
            [-1.0, -1.0, 1.0, 0.0],
            [0.0, 0.0, 0.0, 1.0],
        ]
    )
    assert sim.dtype == np.float64
    assert sim.shape == (4, 4)
    np.testing.assert_allclose(sim, expected, atol=1e-12)


def test_pairwise_cosine_45_degrees_and_flattening() -> None:
    # Same numbers, different shapes: cosine is over flattened tensors.
    sim = pairwise_cosine([torch.tensor([1.0, 0.0]), torch.tensor([[1.0], [1.0]])])
    assert sim[0, 1] == pytest.approx(1 / math.sqrt(2), abs=1e-12)
    assert sim[1, 0] == pytest.approx(1 / math.sqrt(2), abs=1e-12)


def test_pairwise_cosine_zero_tensor_is_never_nan() -> None:
    z = torch.zeros(3, 2)
    sim = pairwise_cosine([z, torch.ones(3, 2), z.clone()])
    assert not np.isnan(sim).any()
    np.testing.assert_array_equal(sim, np.eye(3))


def test_pairwise_cosine_rejects_mismatched_sizes() -> None:
    with pytest.raises(ValueError, match="size"):
        pairwise_cosine([torch.zeros(2, 2), torch.zeros(3)])


def test_pairwise_cosine_handles_bf16_and_empty() -> None:
    a = torch.tensor([1.0, 2.0], dtype=torch.bfloat16)
    assert pairwise_cosine([a, 3 * a])[0, 1] == pytest.approx(1.0)
    assert pairwise_cosine([]).shape == (0, 0)


# ---------------------------------------------------------------- analyze_round


def known_round() -> dict[str, dict[str, torch.Tensor]]:
    """Three clients, two layers with hand-picked A and B (and a head that must be ignored).

    Layer 0: A_1 = 2 A_0, A_2 = -A_0 -> A similarity [[1,1,-1],[1,1,-1],[-1,-1,1]];
             B_k = e_k (orthogonal) -> identity.
    Layer 1: all A equal -> all ones; B_0 = B_1, B_2 = -B_0.
    All "before" tensors are zero, so the changes equal the trained tensors.
    """
    a0 = torch.tensor([[1.0, 2.0, 0.0, -1.0], [0.5, 0.0, 3.0, 1.0]])
    a_l1 = torch.tensor([[0.0, 1.0, 1.0, 0.0], [2.0, 0.0, 0.0, 1.0]])
    b_l1 = torch.arange(8.0).reshape(4, 2) - 3.0
    layer0_a = [a0, 2 * a0, -a0]
    layer1_b = [b_l1, b_l1.clone(), -b_l1]
    out = {}
    for k in range(3):
        after = {
            a_name(L0): layer0_a[k],
            b_name(L0): unit(k, (4, 2)),
            a_name(L1): a_l1.clone(),
            b_name(L1): layer1_b[k],
            HEAD: torch.full((2, 4), float(k + 1)) * (-1) ** k,
        }
        before = {n: torch.zeros_like(t) for n, t in after.items()}
        out[str(k)] = snap(before, after)
    return out


def test_analyze_round_exact_values() -> None:
    res = analyze_round(known_round(), "lora")
    json.dumps(res)  # JSON-serialisable
    assert res["clients"] == ["0", "1", "2"]
    assert res["num_clients"] == 3
    assert sorted(res["layers"]) == [L0, L1]
    lay0, lay1 = res["layers"][L0], res["layers"][L1]
    assert sorted(lay0) == ["A", "B", "dA", "dB"]
    s = [[1, 1, -1], [1, 1, -1], [-1, -1, 1]]
    np.testing.assert_allclose(lay0["A"]["matrix"], s, atol=1e-12)
    assert lay0["A"]["mean_offdiag"] == pytest.approx(-1 / 3)
    np.testing.assert_allclose(lay0["B"]["matrix"], np.eye(3), atol=1e-12)
    assert lay0["B"]["mean_offdiag"] == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(lay1["A"]["matrix"], np.ones((3, 3)), atol=1e-12)
    assert lay1["A"]["mean_offdiag"] == pytest.approx(1.0)
    assert lay1["B"]["mean_offdiag"] == pytest.approx(-1 / 3)
    # before = 0, so the change similarities equal the trained ones
    np.testing.assert_allclose(lay0["dA"]["matrix"], lay0["A"]["matrix"], atol=1e-12)
    np.testing.assert_allclose(lay1["dB"]["matrix"], lay1["B"]["matrix"], atol=1e-12)

    mean = res["mean"]
    assert sorted(mean) == ["A", "B", "dA", "dB"]
    np.testing.assert_allclose(mean["A"]["matrix"], [[1, 1, 0], [1, 1, 0], [0, 0, 1]], atol=1e-12)
    assert mean["A"]["mean_offdiag"] == pytest.approx(1 / 3)  # (-1/3 + 1) / 2
    # B: (identity + [[1,1,-1],[1,1,-1],[-1,-1,1]]) / 2, off-diagonal mean (0 - 1/3) / 2
    assert mean["B"]["mean_offdiag"] == pytest.approx(-1 / 6)
    assert mean["A"]["num_layers"] == 2


def test_change_similarity_separates_shared_start_from_direction() -> None:
    # Every client starts from the same A0 (and B0) and moves a small step in its own
    # orthogonal direction: the trained A look alike, the changes are orthogonal.
    eps = 0.1
    a0, b0 = unit(0), unit(0, (4, 2))
    snaps = {}
    for k in range(3):
        before = {a_name(L0): a0, b_name(L0): b0}
        after = {a_name(L0): a0 + eps * unit(k + 1), b_name(L0): b0 + eps * unit(k + 1, (4, 2))}
        snaps[f"c{k}"] = snap(before, after)
    mean = analyze_round(snaps, "rslora")["mean"]
    expected = 1 / (1 + eps**2)  # <a0+e_i, a0+e_j> / |a0+e_i|^2
    assert mean["A"]["mean_offdiag"] == pytest.approx(expected)
    assert mean["B"]["mean_offdiag"] == pytest.approx(expected)
    assert mean["dA"]["mean_offdiag"] == pytest.approx(0.0, abs=1e-12)
    assert mean["dB"]["mean_offdiag"] == pytest.approx(0.0, abs=1e-12)


def test_analyze_round_vera_and_frozen_a() -> None:
    d = f"{L0}.vera_lambda_d.default"
    b = f"{L0}.vera_lambda_b.default"
    v = torch.tensor([1.0, 2.0, 3.0])
    snaps = {
        "1": snap({d: v, b: torch.ones(4)}, {d: v, b: unit(0, (4,))}),
        "0": snap({d: v, b: torch.ones(4)}, {d: 2 * v, b: unit(1, (4,))}),
    }
    res = analyze_round(snaps, "vera")
    assert res["clients"] == ["0", "1"]
    assert list(res["layers"]) == [L0]
    assert res["mean"]["A"]["mean_offdiag"] == pytest.approx(1.0)
    assert res["mean"]["B"]["mean_offdiag"] == pytest.approx(0.0, abs=1e-12)
    # one client's A did not change at all: zero change -> similarity 0, not NaN
    assert res["mean"]["dA"]["mean_offdiag"] == pytest.approx(0.0, abs=1e-12)
    # FFA-LoRA style: A frozen and therefore absent from the snapshot
    only_b = {
        c: {k: t for k, t in s.items() if "lora_A" not in k} for c, s in known_round().items()
    }
    res = analyze_round(only_b, "lora")
    assert sorted(res["mean"]) == ["B", "dB"]


def test_analyze_round_rejects_bad_input() -> None:
    with pytest.raises(DataError, match="variant"):
        analyze_round(known_round(), "nope")
    with pytest.raises(DataError, match="snapshot_rounds"):
        analyze_round({}, "lora")
    with pytest.raises(DataError, match="no lora A/B"):
        analyze_round({"0": {"after.x.weight": torch.ones(2)}}, "lora")


# ---------------------------------------------------------------- run directories


def fake_run(path: Path, rounds: tuple[int, ...]) -> Path:
    config = {
        "algorithm": "fedsa-lora",
        "adapter": {"variant": "lora"},
        "data": {"partition": "dirichlet", "dirichlet_alpha": 0.5},
    }
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps(config), encoding="utf-8")
    for t in rounds:
        for client, tensors in known_round().items():
            save_tensors(path / "snapshots" / f"round_{t}" / f"{client}.safetensors", tensors)
    return path


def test_missing_snapshots_raise_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="config.json"):
        analyze_run(tmp_path)
    run = fake_run(tmp_path / "run", ())
    with pytest.raises(DataError, match=r"rerun with analysis\.snapshot_rounds="):
        analyze_run(run)
    run = fake_run(tmp_path / "run2", (1, 3))
    with pytest.raises(DataError, match=r"round\(s\) \[2\].*it has \[1, 3\]"):
        analyze_run(run, [1, 2])


def test_write_analysis_and_cli_on_fake_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = fake_run(tmp_path / "run", (1, 3))
    res = write_analysis(run, [3], tmp_path / "out")
    assert [r["round"] for r in res["rounds"]] == [3]
    assert res["summary_line"] == (
        "round 3: mean pairwise cosine A 0.33 (change 0.33), B -0.17 (change -0.17) over 3 clients"
    )
    assert json.loads((tmp_path / "out" / "analysis.json").read_text()) == res
    assert res["figures"] == ["round_3_cosine.png"]
    assert (tmp_path / "out" / "round_3_cosine.png").read_bytes().startswith(b"\x89PNG")

    from fedsa.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["analyze", str(run)])
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert "round 1: mean pairwise cosine A 0.33" in printed
    assert "round 3:" in printed
    assert (run / "analysis" / "round_1_cosine.png").is_file()
    assert (run / "analysis" / "analysis.json").is_file()
    with pytest.raises(ConfigError, match="--rounds"):
        args = parser.parse_args(["analyze", str(run), "--rounds", "1,x"])
        args.func(args)


def test_end_to_end_tiny_fedit(tmp_path: Path) -> None:
    from fedsa.cli import main

    run = tmp_path / "r"
    argv = ["run", str(REPO / "configs" / "tiny.toml"), "algorithm=fedit"]
    assert main([*argv, "analysis.snapshot_rounds=[1,2]", "--out", str(run)]) == 0
    res = write_analysis(run, None)
    out = run / "analysis"
    assert json.loads((out / "analysis.json").read_text()) == res
    for t in (1, 2):
        assert (out / f"round_{t}_cosine.png").read_bytes().startswith(b"\x89PNG")
    assert res["algorithm"] == "fedit"
    assert res["summary_line"].startswith("round 2: mean pairwise cosine A ")
    assert [r["round"] for r in res["rounds"]] == [1, 2]
    for rnd in res["rounds"]:
        assert rnd["num_clients"] == 3
        assert len(rnd["layers"]) == 4  # query and value in 2 layers
        for kind in ("A", "B", "dA", "dB"):
            mat = np.array(rnd["mean"][kind]["matrix"])
            assert mat.shape == (3, 3)
            assert np.all(np.abs(mat) <= 1.0)
            np.testing.assert_allclose(np.diag(mat), 1.0)
            assert -1.0 <= rnd["mean"][kind]["mean_offdiag"] <= 1.0
