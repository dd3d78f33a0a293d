"""Flower Deployment Engine on loopback: equality with the in-process engine, durability, TLS +
SuperNode authentication, and no process left behind.

Every daemon runs in its own session and is stopped by process group; ports are picked at run
time. Under ``CI=true`` a missing ``flwr`` fails these tests instead of skipping them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from fedsa.config.load import load_config
from fedsa.config.schema import RunConfig
from tests.conftest import require_flwr

pytestmark = pytest.mark.flower

require_flwr()

from flwr.app import Error, Message, MetricRecord, RecordDict  # noqa: E402

from fedsa.core.io import load_tensors  # noqa: E402
from fedsa.engine.prepare import prepare  # noqa: E402
from fedsa.engine.simulation import run_rounds  # noqa: E402
from fedsa.flower.codec import experiment_key  # noqa: E402
from fedsa.flower.launch import Federation, FlowerRunError, Node, _alive  # noqa: E402
from fedsa.flower.state import state_path  # noqa: E402

TINY = Path(__file__).resolve().parents[1] / "configs" / "tiny.toml"
CLIENTS = ("0", "1", "2")
STARTED: list[int] = []  # process ids of every daemon and descendant these tests started
WORKERS: list[int] = []  # process ids of the resident workers (also in STARTED)
HOMES: list[Path] = []  # FLWR_HOME folders of the federations started here
TIMEOUT = 300.0
DONE: dict[str, Path] = {}  # finished deployment runs by folder name (reused by later tests)


def run_config(cfg: RunConfig, out: Path, **extra: object) -> dict[str, object]:
    base: dict[str, object] = {"config-json": json.dumps(cfg.to_dict()), "out-dir": str(out)}
    base.update({"round-timeout": 120.0, "node-timeout": 90.0, **extra})
    return base


def in_process(
    cfg: RunConfig,
) -> tuple[dict[str, torch.Tensor], dict[str, dict[str, torch.Tensor]], dict[str, torch.Tensor]]:
    """Shared tensors, each client's private ones and the base weights the server changed."""
    state, store, _ = run_rounds(prepare(cfg))
    shared = state.shared
    return shared, {c: store.get(c) for c in CLIENTS}, state.base


def assert_close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], what: str) -> None:
    assert a.keys() == b.keys(), what
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6, msg=f"{what}: {name}")


def track(fed: Federation) -> None:
    from fedsa.flower.launch import descendants

    for pid in fed.pids():
        STARTED.extend([pid, *descendants(pid)])


@pytest.fixture(scope="module")
def insecure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    """A SuperLink and 3 SuperNodes on loopback, no TLS (shared by the engine tests)."""
    work = tmp_path_factory.mktemp("flower")
    fed = Federation(work)
    HOMES.append(fed.home)
    try:
        fed.start_superlink()
        for c in CLIENTS:
            fed.start_node(Node(c, work / f"state-{c}"))
        WORKERS.extend(fed.wait_workers(timeout=240).values())
        track(fed)
        assert set(WORKERS) <= set(STARTED)  # the workers run inside the nodes' process trees
        yield fed
    finally:
        track(fed)
        fed.stop()


def deploy(fed: Federation, cfg: RunConfig, out: Path, **extra: object) -> Path:
    fed.run(run_config(cfg, out, **extra), timeout=TIMEOUT)
    track(fed)
    DONE[out.name] = out
    return out


@pytest.mark.parametrize("algorithm", ["fedsa-lora", "fedit", "fedex-lora"])
def test_deployment_equals_in_process(insecure: Federation, algorithm: str) -> None:
    """Same tensors as in-process; FedEx-LoRA also its base weights merged on the clients."""
    cfg = load_config(TINY, [f"algorithm={algorithm}", "federation.rounds=2"])
    out = deploy(insecure, cfg, insecure.workdir / f"run-{algorithm}")

    shared, private, base = in_process(cfg)
    if base:
        server = load_tensors(out / "server.safetensors")
        assert_close(
            {k[len("base/") :]: v for k, v in server.items() if k.startswith("base/")}, base, "base"
        )
    assert_close(load_tensors(out / "global.safetensors"), shared, "global shared")
    key = experiment_key(cfg)
    for c in CLIENTS:
        saved = load_tensors(state_path(insecure.workdir / f"state-{c}", key, c))
        assert_close(saved, private[c], f"client {c} private")
    # fedsa-lora keeps B on the client; fedit sends it: the names that crossed the network differ
    assert any("lora_B" in k for k in shared) == (algorithm != "fedsa-lora")
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in records] == [1, 2]
    assert all(r["rejected"] == {} and r["bytes_up"] > r["payload_bytes_up"] > 0 for r in records)
    # every message was served by the nodes' resident workers, none in-process
    timing = [t for r in records for t in r["client_timing"].values()]
    timing += [t for r in records for t in r.get("client_timing_eval", {}).values()]
    assert len(timing) == 9 and all(t["resident"] == 1.0 for t in timing), timing
    # and each message's ClientApp process forked from the node's warm SuperExec
    assert all(t["warm"] == 1.0 for t in timing), timing
    summary = json.loads((out / "summary.json").read_text())
    assert summary["engine"] == "flower" and summary["rounds"] == 2
    assert 0.0 <= summary["final"]["accuracy_mean"] <= 1.0


@pytest.mark.parametrize("algorithm", ["fedsa-lora", "hetlora"])
def test_deployment_with_heterogeneous_ranks_equals_in_process(
    insecure: Federation, algorithm: str
) -> None:
    """Ranks [2, 4, 8]: the same tensors as in-process, and each client's bytes follow its rank."""
    on = [f"algorithm={algorithm}", "federation.rounds=2", "adapter.client_ranks=[2, 4, 8]"]
    if algorithm == "hetlora":  # with self-pruning that halves every rank after round 1
        on += ["hetlora.prune_gamma=0.5", "hetlora.prune_threshold=0.999"]
    cfg = load_config(TINY, [*on, "adapter.alpha=12.0"])
    out = deploy(insecure, cfg, insecure.workdir / f"run-ranks-{algorithm}")
    shared, private, _ = in_process(cfg)
    assert_close(load_tensors(out / "global.safetensors"), shared, "global shared")
    key = experiment_key(cfg)
    for c in CLIENTS:
        saved = load_tensors(state_path(insecure.workdir / f"state-{c}", key, c))
        assert_close(saved, private[c], f"client {c} private")
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in records] == [1, 2]
    for r in records:  # the shared factors cut to each client's rank (2, 4, 8, or halved) went down
        assert r["rejected"] == {}
        down = r["payload_bytes_down_per_client"]
        assert down["1"] == 2 * down["0"] and down["2"] == 4 * down["0"], down
    first, second = (r["payload_bytes_down_per_client"]["2"] for r in records)
    assert second == (first // 2 if algorithm == "hetlora" else first)  # pruned from 8 to 4


def test_secure_aggregation_deployment(insecure: Federation) -> None:
    """SecAgg+ over a real SuperLink and SuperNodes: four exchanges a round, masked uploads.

    The result is the in-process run's to SecAgg+'s quantisation error (bounded round by round
    in ``tests/test_secagg.py``, which also checks what the server code is handed). After round
    1, AdamW's normalised steps can turn that error into steps of the learning rate's size, so
    the end is compared with how far training moved the shared tensors.
    """
    on = ["algorithm=fedsa-lora", "federation.rounds=2", "privacy.secure_aggregation=true"]
    cfg = load_config(TINY, on)
    out = deploy(insecure, cfg, insecure.workdir / "run-secagg")
    fed = prepare(load_config(TINY, on[:2]))
    start = {k: v.clone() for k, v in fed.init_shared.items()}
    shared = run_rounds(fed)[0].shared
    got = load_tensors(out / "global.safetensors")
    assert got.keys() == shared.keys() == start.keys()
    moved = max(float((shared[k] - start[k]).abs().max()) for k in got)
    assert max(float((got[k] - shared[k]).abs().max()) for k in got) < 0.1 * moved
    assert any(not torch.equal(got[k], shared[k]) for k in got)  # quantised, not in the clear
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["secagg"]["summed"] for r in records] == [list(CLIENTS)] * 2
    assert all(r["rejected"] == {} and r["secagg"]["bytes_up_protocol"] > 0 for r in records)
    timing = [t for r in records for t in r["client_timing"].values()]
    assert len(timing) == 6 and all(t["resident"] == 1.0 for t in timing), timing


def test_supernode_restart_continues_private_state(insecure: Federation) -> None:
    """After 2 rounds, restart node 1 and resume for a 3rd: equals 3 rounds in one process."""
    cfg2 = load_config(TINY, ["algorithm=fedsa-lora", "federation.rounds=2"])
    cfg3 = load_config(TINY, ["algorithm=fedsa-lora", "federation.rounds=3"])
    out = DONE.get("run-fedsa-lora") or deploy(insecure, cfg2, insecure.workdir / "run-fedsa-lora")
    key = experiment_key(cfg3)
    assert key == experiment_key(cfg2)  # the run length is not part of the experiment
    after_two = load_tensors(state_path(insecure.workdir / "state-1", key, "1"))

    old_pid = insecure.nodes["1"].proc.pid
    track(insecure)
    insecure.stop_node("1")
    assert not _alive(old_pid)
    new = insecure.start_node(Node("1", insecure.workdir / "state-1"))
    WORKERS.extend(insecure.wait_workers(timeout=240).values())
    track(insecure)
    deploy(insecure, cfg3, out, resume=True)
    assert new.alive() and new.proc.pid != old_pid

    shared, private, _ = in_process(cfg3)
    assert_close(load_tensors(out / "global.safetensors"), shared, "global after resume")
    for c in CLIENTS:
        got = load_tensors(state_path(insecure.workdir / f"state-{c}", key, c))
        assert_close(got, private[c], f"client {c} after restart")
    # a node that had lost its B would have trained round 3 from the initial B instead
    fresh = prepare(cfg3).init_private
    assert any(not torch.equal(fresh[k], after_two[k]) for k in fresh)
    rounds = [
        json.loads(line)["round"] for line in (out / "metrics.jsonl").read_text().splitlines()
    ]
    assert rounds == [1, 2, 3]


def test_failing_server_app_fails_the_command(insecure: Federation) -> None:
    """A ServerApp that raises (no client can serve client-id 5) ends with its reason."""
    cfg = load_config(TINY, ["data.num_clients=6", "federation.rounds=1"])
    with pytest.raises(FlowerRunError, match=r"finished:failed:\nreason: .*did not connect"):
        insecure.run(run_config(cfg, insecure.workdir / "run-bad", **{"node-timeout": 5.0}), 120)
    track(insecure)


def make_tls(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a SuperLink certificate for 127.0.0.1/localhost, made with `cryptography`."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fedsa test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    san = x509.SubjectAlternativeName(
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(san, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    paths = directory / "ca.crt", directory / "server.crt", directory / "server.key"
    paths[0].write_bytes(ca.public_bytes(pem))
    paths[1].write_bytes(cert.public_bytes(pem))
    paths[2].write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


def make_node_key(directory: Path, name: str) -> tuple[Path, Path]:
    """An ECDSA P-384 key pair in OpenSSH format (as `ssh-keygen -t ecdsa -b 384` makes)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP384R1())
    private, public = directory / name, directory / f"{name}.pub"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
    )
    private.chmod(0o600)
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
    )
    return private, public


def test_tls_and_supernode_auth(tmp_path: Path) -> None:
    from fedsa.flower.launch import Tls

    keys = tmp_path / "keys"
    keys.mkdir()
    tls = Tls(*make_tls(keys))
    fed = Federation(tmp_path / "work", tls=tls, supernode_auth=True)
    HOMES.append(fed.home)
    try:
        fed.start_superlink()
        track(fed)
        for c in CLIENTS:
            private, public = make_node_key(keys, f"node-{c}")
            fed.register_node(public)
            fed.start_node(Node(c, tmp_path / f"state-{c}", auth_key=private))
        stranger_key, _ = make_node_key(keys, "stranger")  # never registered
        stranger = fed.start_node(
            Node("9", tmp_path / "state-9", auth_key=stranger_key, max_retries=2)
        )
        track(fed)
        cfg = load_config(TINY, ["federation.rounds=1"])
        out = tmp_path / "run"
        fed.run(run_config(cfg, out), timeout=TIMEOUT)
        track(fed)
        assert json.loads((out / "summary.json").read_text())["rounds"] == 1
        assert stranger.proc.wait(timeout=120) != 0  # refused: gave up after its retries
        log = stranger.log.read_text()
        assert "Failed to activate SuperNode" in log, log[-2000:]
        assert "SuperNode ID:" not in log  # never admitted, unlike the registered nodes:
        assert all("SuperNode ID:" in fed.nodes[c].log.read_text() for c in CLIENTS)
    finally:
        track(fed)
        fed.stop()


class _Reply:
    """What screen_reply reads of a reply (a real Message needs a running Flower app)."""

    def __init__(self, content: dict[str, object], error: str = "") -> None:
        self.content = RecordDict(content)  # type: ignore[arg-type]
        self.error = Error(code=2, reason=error)

    def has_error(self) -> bool:
        return bool(self.error.reason)


def _reply(content: dict[str, object], error: str = "") -> Message:
    return _Reply(content, error)  # type: ignore[return-value]


def _good_upload() -> dict[str, torch.Tensor]:
    return {"a.lora_A": torch.ones(2, 3), "b.lora_A": torch.zeros(2, 3)}


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"upload": {"a.lora_A": torch.ones(2, 3)}}, "wrong keys"),
        ({"upload": {**_good_upload(), "a.lora_A": torch.ones(3, 2)}}, "expected (2, 3)"),
        (
            {"upload": {**_good_upload(), "a.lora_A": torch.ones(2, 3, dtype=torch.float64)}},
            "float64",
        ),
        ({"upload": {**_good_upload(), "b.lora_A": torch.full((2, 3), float("nan"))}}, "NaN"),
        ({"n": 0}, "num-examples"),
        ({"n": 2.5}, "num-examples"),
        ({"loss": float("inf")}, "train-loss"),
        ({"drop": "train"}, "lacks"),
        ({"none": True}, "no reply"),
        ({"error": "ValueError: boom"}, "client error 2: ValueError: boom"),
    ],
)
def test_screen_reply_rejects_bad_replies(change: dict[str, object], reason: str) -> None:
    from fedsa.flower.codec import to_record
    from fedsa.flower.screen import Accepted, screen_reply

    reference = _good_upload()
    upload = change.get("upload", reference)
    train = MetricRecord(
        {"num-examples": change.get("n", 7), "train-loss": change.get("loss", 0.5)}
    )
    content: dict[str, object] = {"upload": to_record(upload), "train": train}  # type: ignore[arg-type]
    content.pop(str(change.get("drop", "")), None)
    reply = None if change.get("none") else _reply(content, str(change.get("error", "")))
    verdict = screen_reply(reply, reference, "3")
    assert isinstance(verdict, str) and reason in verdict, verdict
    good = screen_reply(
        _reply(
            {
                "upload": to_record(reference),
                "train": MetricRecord({"num-examples": 7, "train-loss": 0.5}),
            }
        ),
        reference,
        "3",
    )
    assert isinstance(good, Accepted) and good.num_examples == 7
    assert good.record_bytes > good.payload_bytes == 2 * 6 * 4


def test_only_the_flower_package_imports_flwr() -> None:
    src = Path(__file__).resolve().parents[1] / "src" / "fedsa"
    offenders = [
        str(p.relative_to(src))
        for p in src.rglob("*.py")
        if "flower" not in p.relative_to(src).parts
        and any(
            line.lstrip().startswith(("import flwr", "from flwr"))
            for line in p.read_text().splitlines()
        )
    ]
    assert offenders == []


def test_cli_bundle_and_node_count_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from fedsa.cli import main

    assert main(["flower", "bundle", str(tmp_path / "app")]) == 0
    text = (tmp_path / "app" / "pyproject.toml").read_text()
    assert 'clientapp = "fedsa.flower.client_app:app"' in text
    assert 'serverapp = "fedsa.flower.server_app:app"' in text
    code = main(["flower", "local", str(TINY), "--nodes", "2", "--out", str(tmp_path / "r")])
    assert code == 2
    assert "--nodes 2 but the config has data.num_clients=3" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def flwr_processes() -> list[int]:
    """Live processes whose FLWR_HOME is one these tests created (daemons and their children)."""
    homes = {str(h) for h in HOMES}
    found = []
    for env in Path("/proc").glob("[0-9]*/environ"):
        try:
            values = env.read_bytes().split(b"\0")
        except OSError:
            continue
        for item in values:
            home = item[10:].decode(errors="replace") if item.startswith(b"FLWR_HOME=") else ""
            if home in homes and _alive(int(env.parent.name)):
                found.append(int(env.parent.name))
    return found


def test_no_process_left_behind(insecure: Federation) -> None:
    """Runs last in this module (pytest keeps file order): stop everything, then look."""
    insecure.stop()
    assert STARTED, "the deployment tests above started no process"
    assert HOMES
    left = [p for p in set(STARTED) if _alive(p)]
    assert left == [], f"processes still running: {left}"
    assert WORKERS and not any(_alive(p) for p in WORKERS)
    assert flwr_processes() == []


def test_screen_reply_applies_the_engines_norm_bound() -> None:
    from fedsa.flower.codec import to_record
    from fedsa.flower.screen import Accepted, screen_reply

    reference = _good_upload()
    big = {k: v * 1e6 for k, v in reference.items()}
    reply = _reply(
        {"upload": to_record(big), "train": MetricRecord({"num-examples": 7, "train-loss": 0.5})}
    )
    assert isinstance(screen_reply(reply, reference, "3"), Accepted)  # no bound: accepted
    verdict = screen_reply(reply, reference, "3", max_norm=1000.0)
    assert isinstance(verdict, str) and "norm" in verdict and "> bound 1000" in verdict
