"""The warm SuperExec: the flwr 1.42 seams it relies on, and how the node supervisor wires it.

The deployment tests (``tests/test_flower.py``, ``tests/test_flower_worker.py``) show it at work:
every reply says its ClientApp process forked warm, and a SIGKILLed SuperExec is restarted.
"""

from __future__ import annotations

import inspect
import stat
from pathlib import Path

import pytest

from tests.conftest import require_flwr

pytestmark = pytest.mark.flower

require_flwr()

from fedsa.flower.node import Supervisor, runtime_address, warm_exec_refusal  # noqa: E402
from fedsa.flower.superexec import PULL_BACKOFF, ForkExecutor, _run_clientapp  # noqa: E402


def test_flwr_seams_the_warm_superexec_relies_on() -> None:
    """If flwr moves any of these, the warm SuperExec would silently run Flower's own way."""
    import flwr.supercore.superexec.run_superexec as loop
    from flwr.supercore.inflatable.inflatable_utils import pull_and_inflate_object_from_tree
    from flwr.supercore.superexec.executor.subprocess_executor import SubprocessExecutor
    from flwr.supernode.runtime.run_clientapp import run_clientapp

    assert callable(getattr(loop, "get_executor", None))
    assert "executor = get_executor(" in inspect.getsource(loop.run_superexec)
    defaults = pull_and_inflate_object_from_tree.__kwdefaults__ or {}
    assert set(PULL_BACKOFF) <= set(defaults)
    assert defaults["initial_backoff"] > PULL_BACKOFF["initial_backoff"]  # flwr's: 1 s
    # what the forked process passes is what flwr-clientapp passes
    passed = {"runtime_api_address", "token", "insecure", "certificates", "parent_pid"}
    passed.add("runtime_dependency_install")
    assert passed == set(inspect.signature(run_clientapp).parameters)
    assert len(inspect.signature(_run_clientapp).parameters) == 6
    # the executor protocol, method for method
    for name in ("get_eligible_capacity", "wait_for_capacity", "launch", "reconcile", "close"):
        assert callable(getattr(SubprocessExecutor, name)) and callable(getattr(ForkExecutor, name))


def test_supervisor_puts_the_supernode_in_process_isolation_with_a_private_secret(
    tmp_path: Path,
) -> None:
    argv = ["flower-supernode", "--superlink", "127.0.0.1:9", "--port", "40123", "--insecure"]
    sup = Supervisor(tmp_path, argv, worker=True)
    node = sup.supernode_argv
    assert node[: len(argv)] == argv
    assert node[node.index("--isolation") + 1] == "process"
    secret = Path(node[node.index("--superexec-auth-secret-file") + 1])
    assert secret.parent == tmp_path
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert len(bytes.fromhex(secret.read_text())) == 32
    names = [c.name for c in sup.children]
    assert names == ["resident worker", "warm SuperExec"]
    exec_argv = sup.children[1].argv
    assert exec_argv[1:3] == ["-m", "fedsa.flower.superexec"]
    assert exec_argv[exec_argv.index("--runtime-api-address") + 1] == "127.0.0.1:40123"
    assert Path(exec_argv[exec_argv.index("--superexec-auth-secret-file") + 1]) == secret
    first = secret.read_text()
    Supervisor(tmp_path, argv, worker=False)  # a node restart draws a new secret
    assert secret.read_text() != first


@pytest.mark.parametrize(
    "extra", [["--isolation", "subprocess"], ["--ssl-certfile", "c.pem"], ["--cold"]]
)
def test_supervisor_leaves_flowers_superexec_where_the_warm_one_cannot_serve(
    tmp_path: Path, extra: list[str]
) -> None:
    cold = extra == ["--cold"]
    argv = ["flower-supernode", "--port", "9", *([] if cold else extra)]
    sup = Supervisor(tmp_path, argv, worker=False, warm_exec=not cold)
    assert sup.children == [] and sup.supernode_argv == argv
    assert not (tmp_path / "superexec.secret").exists()
    assert (warm_exec_refusal(argv) is None) == cold


def test_runtime_address_reads_the_supernodes_flags() -> None:
    assert runtime_address([]) == "127.0.0.1:9094"  # flwr's defaults
    assert runtime_address(["--port", "5", "--host=::1"]) == "[::1]:5"
