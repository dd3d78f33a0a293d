"""``fedsa export``: PEFT loads the export, in a process that never imports fedsa, and gets the
same logits as fedsa's own evaluation of that client; the merged model too; the exported tensors
are exactly the run's shared tensors plus the client's private ones.

Runs use alpha/r = 2 (rsLoRA: 4) and unequal client shards, so a lost scale or another client's
B would change the logits far beyond the 1e-5 tolerance.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file

import fedsa
from fedsa.cli import main
from fedsa.engine.prepare import prepare
from fedsa.tasks.batching import collate
from fedsa.use.export import export
from fedsa.use.saved import SavedRun

REPO = Path(__file__).resolve().parents[1]
CONFIGS = {"cls": REPO / "configs" / "tiny.toml", "lm": REPO / "configs" / "tiny-llama.toml"}
CONFIGS["cls-ranks"] = CONFIGS["cls"]  # with adapter.client_ranks = [2, 4, 8]: client 1 has 4
COMBOS = [
    (kind, alg, var)
    for kind in ("cls", "lm")
    for alg in ("fedsa-lora", "fedit")
    for var in ("lora", "rslora", "vera")
]
EXTRA = {"flora": ("cls", "flora", "lora"), "feddpa": ("cls", "feddpa", "lora")}
EXTRA |= {
    "hetlora": ("cls-ranks", "hetlora", "lora"),
    "ranks": ("cls-ranks", "fedsa-lora", "rslora"),
}
CLIENT = "1"

FRESH = r"""
import json, sys
import torch
from safetensors.torch import load_file, save_file
from peft import PeftConfig, PeftModel
from peft.tuners.lora import LoraLayer
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

AUTO = {"cls": AutoModelForSequenceClassification, "lm": AutoModelForCausalLM}
for job in json.load(open(sys.argv[1])):
    auto = AUTO[job["kind"]]
    inputs = load_file(job["inputs"])
    cfg = PeftConfig.from_pretrained(job["adapter"])
    model = PeftModel.from_pretrained(auto.from_pretrained(cfg.base_model_name_or_path),
                                      job["adapter"])
    if job.get("local"):
        model.load_adapter(job["adapter"] + "/local", adapter_name="local")
        for module in model.modules():
            if isinstance(module, LoraLayer):
                module.set_adapter(["default", "local"])
    out = {"adapter": model.eval()(**inputs).logits.detach()}
    with model.disable_adapter():
        out["disabled"] = model(**inputs).logits.detach()
    if job.get("merged"):
        out["merged"] = auto.from_pretrained(job["merged"]).eval()(**inputs).logits.detach()
    save_file(out, job["out"])
assert not any(m == "fedsa" or m.startswith("fedsa.") for m in sys.modules), "fedsa imported"
print("fresh process done without fedsa")
"""


def _inputs(run: SavedRun) -> tuple[dict[str, torch.Tensor], list[int]]:
    """Client 1's evaluation examples, batched as evaluation batches them."""
    fed = prepare(run.cfg)
    indices = list(fed.client_eval[int(CLIENT)])
    batch = collate(fed.dev, indices)
    batch.pop("labels")
    return batch, indices


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str, str], Any]:
    """Every combination run, exported (adapter and merged), and loaded in one fresh process."""
    root = tmp_path_factory.mktemp("export")
    jobs, done = [], {}
    for combo in [*COMBOS, *EXTRA.values()]:
        kind, alg, var = combo
        name = "-".join(combo)
        over = [f"algorithm={alg}", f"adapter.variant={var}", "federation.rounds=2"]
        over.append("optim.lr=0.05")  # large steps: the adapter must move the logits visibly
        if alg == "feddpa":
            over.append('feddpa.combination="sum"')
        if kind == "cls-ranks":
            over += ["adapter.client_ranks=[2, 4, 8]", "adapter.alpha=12.0"]
        run = fedsa.run(CONFIGS[kind], over, out=root / name / "run")
        adapter, merged = root / name / "adapter", root / name / "merged"
        export(run, adapter, client=CLIENT)
        if alg != "feddpa":
            export(run, merged, client=CLIENT, merge=True)
        inputs, indices = _inputs(run)
        save_file(inputs, str(root / name / "inputs.safetensors"))
        model = run.client_model(CLIENT).model
        with torch.inference_mode():
            ours = model(**inputs).logits.float()
        job = {
            "kind": kind.split("-")[0],
            "adapter": str(adapter),
            "inputs": str(root / name / "inputs.safetensors"),
        }
        job |= {"out": str(root / name / "theirs.safetensors"), "local": alg == "feddpa"}
        job["merged"] = str(merged) if alg != "feddpa" else None
        jobs.append(job)
        done[combo] = {"run": run, "adapter": adapter, "ours": ours, "out": Path(job["out"])}
    (root / "jobs.json").write_text(json.dumps(jobs))
    script = root / "fresh.py"
    script.write_text(FRESH)
    proc = subprocess.run(
        [sys.executable, str(script), str(root / "jobs.json")],
        capture_output=True,
        text=True,
        cwd=root,
        env={"PATH": "/usr/bin:/bin", "HOME": str(root), "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "fresh process done without fedsa" in proc.stdout
    for item in done.values():
        item["theirs"] = load_file(str(item["out"]))
    return done


@pytest.mark.parametrize("combo", COMBOS, ids=["-".join(c) for c in COMBOS])
def test_peft_from_pretrained_gives_fedsas_logits(exported: dict[Any, Any], combo: Any) -> None:
    item = exported[combo]
    assert torch.allclose(item["theirs"]["adapter"].float(), item["ours"], atol=1e-5, rtol=0)
    assert torch.allclose(item["theirs"]["merged"].float(), item["ours"], atol=1e-5, rtol=0)
    # the check can fail: without the adapter (and trained head) the logits move 10x the tolerance
    assert (item["theirs"]["disabled"].float() - item["ours"]).abs().max() > 1e-4


@pytest.mark.parametrize("combo", COMBOS, ids=["-".join(c) for c in COMBOS])
def test_exported_tensors_are_shared_plus_private(exported: dict[Any, Any], combo: Any) -> None:
    item = exported[combo]
    run: SavedRun = item["run"]
    saved = load_file(str(item["adapter"] / "adapter_model.safetensors"))
    expected = {**run.server.sent_to(CLIENT), **(run.private(CLIENT) or {})}
    # PEFT's saved names drop the adapter name (``.default``) and the head's wrapper
    peft_name = {
        k: re.sub(r"\.default(\.|$)", r"\1", k.replace(".modules_to_save.default.", "."))
        for k in expected
    }
    for name, value in expected.items():
        assert torch.equal(saved[peft_name[name]], value), name
    rest = set(saved) - set(peft_name.values())
    if combo[2] == "vera":  # the frozen projections, shipped with save_projection
        assert rest == {"base_model.vera_A", "base_model.vera_B"}
    else:
        assert rest == set()
    config = json.loads((item["adapter"] / "adapter_config.json").read_text())
    cfg = run.cfg.adapter
    assert config["r"] == cfg.r
    assert config["base_model_name_or_path"] == str((item["adapter"] / "base_model").resolve())
    if combo[2] == "vera":
        assert config["save_projection"] is True and config["projection_prng_key"] == run.cfg.seed
    else:
        assert config["lora_alpha"] == cfg.alpha and config["use_rslora"] is (combo[2] == "rslora")
    if combo[0] == "cls":
        assert "classifier" in config["modules_to_save"]
    card = (item["adapter"] / "README.md").read_text()
    assert f"client {CLIENT}" in card and run.cfg.algorithm in card


@pytest.mark.parametrize("name", ["hetlora", "ranks"])
def test_a_client_of_its_own_rank_loads_in_peft_with_its_scale(
    exported: dict[Any, Any], name: str
) -> None:
    """Client 1 has rank 4 of [2, 4, 8]: PEFT rebuilds its scale from the exported lora_alpha."""
    item = exported[EXTRA[name]]
    assert torch.allclose(item["theirs"]["adapter"].float(), item["ours"], atol=1e-5, rtol=0)
    assert torch.allclose(item["theirs"]["merged"].float(), item["ours"], atol=1e-5, rtol=0)
    config = json.loads((item["adapter"] / "adapter_config.json").read_text())
    s_k = 12.0 / (2.0 if name == "ranks" else 4.0)  # rsLoRA: alpha/sqrt(4); LoRA: alpha/4
    root = 8**0.5 if name == "ranks" else 8.0
    assert config["r"] == 8 and config["lora_alpha"] == pytest.approx(s_k * root)
    saved = load_file(str(item["adapter"] / "adapter_model.safetensors"))
    a_side = [v for k, v in saved.items() if ".lora_A." in k]
    assert a_side and all(float(v[4:].abs().sum()) == 0.0 for v in a_side)  # zeros past rank 4
    assert (
        "rank 4 (the first 4 components of rank-8 factors"
        in (item["adapter"] / "README.md").read_text()
    )


@pytest.mark.parametrize("name", ["flora", "feddpa"])
def test_flora_base_and_feddpa_adapters_load_in_peft(exported: dict[Any, Any], name: str) -> None:
    item = exported[EXTRA[name]]
    assert torch.allclose(item["theirs"]["adapter"].float(), item["ours"], atol=1e-5, rtol=0)
    if name == "flora":  # the merged base differs from the seeded one: it must be saved
        assert item["run"].server.base and (item["adapter"] / "base_model").is_dir()
        assert torch.allclose(item["theirs"]["merged"].float(), item["ours"], atol=1e-5, rtol=0)
    else:
        assert (item["adapter"] / "local" / "adapter_model.safetensors").is_file()
        assert "reproduces exactly" in (item["adapter"] / "README.md").read_text()


def test_client_model_scores_what_the_evaluation_scored(exported: dict[Any, Any]) -> None:
    from fedsa.engine.evaluation import evaluate_client

    for combo in [("cls", "fedsa-lora", "rslora"), ("lm", "fedit", "lora")]:
        run: SavedRun = exported[combo]["run"]
        fed = prepare(run.cfg)
        run.install(fed.model, fed.layout, fed.frozen, fed.init_private, CLIENT)
        got = evaluate_client(fed, int(CLIENT))
        want = run.summary["final_clients"][CLIENT]
        assert got["accuracy"] == want["accuracy"] and got["loss"] == pytest.approx(want["loss"])


def test_global_export_and_its_refusal(
    exported: dict[Any, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fedit = exported[("lm", "fedit", "lora")]["run"]
    assert main(["export", str(fedit.path), "--global", "--out", str(tmp_path / "g")]) == 0
    assert (tmp_path / "g" / "adapter_model.safetensors").is_file()
    fedsa_lora = exported[("cls", "fedsa-lora", "lora")]["run"]
    capsys.readouterr()
    code = main(["export", str(fedsa_lora.path), "--global", "--out", str(tmp_path / "h")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "no global B" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "h").exists()


def test_all_clients_and_bad_requests(
    exported: dict[Any, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = exported[("cls", "fedit", "vera")]["run"]
    out = tmp_path / "all"
    assert main(["export", str(run.path), "--all-clients", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["client_0", "client_1", "client_2"]
    capsys.readouterr()
    bad = [
        ["export", str(run.path), "--client", "7", "--out", str(tmp_path / "x")],
        ["export", str(tmp_path), "--client", "0", "--out", str(tmp_path / "x")],
        ["export", str(run.path), "--client", "0", "--out", str(out)],  # not empty
    ]
    for argv in bad:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("fedsa: error: ") and len(err.splitlines()) == 1
    assert sorted(p.name for p in out.iterdir()) == ["client_0", "client_1", "client_2"]
    assert not (tmp_path / "x").exists()


def test_overwrite_forgets_the_replaced_runs_server_state_and_tracker_stores(
    tmp_path: Path,
) -> None:
    """A stale ``server.safetensors`` (FLoRA's base changes) would be exported with a new run."""
    from fedsa.core.io import save_tensors
    from fedsa.engine.results import RunDir

    out = tmp_path / "run"
    RunDir(out).write_config({})
    save_tensors(out / "server.safetensors", {"base/w": torch.ones(2)})
    for name in ("tensorboard", "mlflow", "wandb", "plots"):
        (out / name).mkdir()
    (out / "tracking.json").write_text("{}")
    RunDir(out, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == []
