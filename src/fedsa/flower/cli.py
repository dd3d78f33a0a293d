"""``fedsa flower ...``: the Flower backend from the command line.

- ``local``: a SuperLink and N SuperNodes on this host (loopback), one run, results, all stopped.
- ``superlink`` / ``supernode``: start one daemon in the foreground for a real site, with the
  settings that keep Flower from reaching outside; ``supernode`` also runs the site's resident
  worker beside the SuperNode (:mod:`fedsa.flower.node`).
- ``register``: register a SuperNode's public key (SuperNode authentication).
- ``run``: submit a config to a running SuperLink and wait for it (bounded by ``--timeout``).
- ``bundle``: write the thin Flower app bundle (a ``pyproject.toml``).

Imported by :mod:`fedsa.cli` only when ``fedsa flower`` is used; ``flwr`` itself is only ever
imported by the Flower processes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fedsa.core.errors import ConfigError
from fedsa.flower import flower_env
from fedsa.flower.bundle import write_app_bundle
from fedsa.flower.launch import Federation
from fedsa.flower.procs import bin_path
from fedsa.flower.topology import Node, Tls


def _config(args: argparse.Namespace) -> Any:
    from fedsa.config.load import load_config
    from fedsa.flower.records import flower_refusal

    cfg = load_config(args.config, args.overrides)
    if (why := flower_refusal(cfg)) is not None:
        raise ConfigError(why)
    return cfg


def _run_config(args: argparse.Namespace, cfg: Any, out: Path) -> dict[str, Any]:
    return {
        "config-json": json.dumps(cfg.to_dict()),
        "out-dir": str(out.resolve()),
        "round-timeout": float(args.round_timeout),
        "node-timeout": float(args.node_timeout),
        "fold-eval": not args.no_fold_eval,
        "resume": bool(getattr(args, "resume", False)),
        "overwrite": bool(args.overwrite),
    }


def _report(out: Path) -> None:
    from fedsa.engine.results import read_summary

    s = read_summary(out)
    fin = s["final"]
    print(
        f"{s['algorithm']} ({s['variant']}) on {s['task']} over Flower: mean client accuracy "
        f"{fin['accuracy_mean']:.4f} (worst {fin['accuracy_min']:.4f}), {s['mb_up']:.3f} MB up, "
        f"{s['wall_s']:.0f}s; results in {out}"
    )


def cmd_local(args: argparse.Namespace) -> int:
    """SuperLink + N SuperNodes on loopback, one run; private states copied into RUN_DIR.

    So are the sites' generation records, which a real deployment keeps on each node.
    """
    from fedsa.core.io import load_tensors, save_tensors

    cfg = _config(args)
    nodes = args.nodes or cfg.data.num_clients
    if nodes != cfg.data.num_clients:
        raise ConfigError(
            f"--nodes {nodes} but the config has data.num_clients={cfg.data.num_clients}: "
            "one SuperNode serves one client; pass data.num_clients=<n> or drop --nodes"
        )
    out = Path(args.out)
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="fedsa-flower-"))
    with Federation(work) as fed:
        fed.start_superlink()
        for k in range(nodes):
            node = Node(str(k), work / f"state-{k}", data_dir=args.data_dir)
            node.worker = not args.no_worker
            node.warm_exec = not args.cold_exec
            node.threads = max(1, (os.cpu_count() or 1) // nodes)  # the nodes share this host
            fed.start_node(node)
        if not args.no_worker:
            fed.wait_workers(timeout=args.node_timeout)
        print(f"SuperLink at {fed.address}, {nodes} SuperNodes; logs in {work}", file=sys.stderr)
        fed.run(_run_config(args, cfg, out), timeout=args.timeout)
    from fedsa.flower.codec import experiment_key
    from fedsa.flower.state import state_path

    for k in range(nodes):
        path = state_path(work / f"state-{k}", experiment_key(cfg), str(k))
        save_tensors(out / "clients" / f"{k}.safetensors", load_tensors(path))
        for src in sorted(path.parent.glob(f"generations/round_*/{k}.jsonl")):
            dest = out / "generations" / src.parent.name / src.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest)
    _report(out)
    return 0


def _tls(args: argparse.Namespace) -> Tls | None:
    if args.insecure:
        return None
    if not args.root_certificates:
        raise ConfigError("give --root-certificates CA.pem (TLS) or --insecure (loopback trials)")
    return Tls(Path(args.root_certificates))


def cmd_run(args: argparse.Namespace) -> int:
    """Submit a config to a running SuperLink and wait until it completes or fails."""
    cfg = _config(args)
    work = Path(tempfile.mkdtemp(prefix="fedsa-flower-run-"))
    fed = Federation(work, tls=_tls(args), remote=args.superlink)
    fed.run(_run_config(args, cfg, Path(args.out)), timeout=args.timeout)
    if Path(args.out, "summary.json").exists():  # the SuperLink runs on this host
        _report(Path(args.out))
    else:
        print(f"run completed; results are in {args.out} on the SuperLink's host")
    return 0


def cmd_register(args: argparse.Namespace) -> int:
    """``flwr supernode register KEY.pub`` against a running SuperLink."""
    fed = Federation(
        Path(tempfile.mkdtemp(prefix="fedsa-flower-")), tls=_tls(args), remote=args.superlink
    )
    fed.register_node(Path(args.public_key))
    print(f"registered {args.public_key}")
    return 0


def _exec(name: str, argv: list[str]) -> int:
    env = flower_env()
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    os.execvpe(bin_path(name), [name, *argv], env)
    return 0  # not reached


def cmd_superlink(args: argparse.Namespace) -> int:
    """Run a SuperLink in the foreground (TLS unless --insecure)."""
    argv = [
        "--disable-runtime-dependency-installation",
        "--host",
        args.host,
        "--port",
        str(args.port),
    ]
    if args.database:
        argv += ["--database", args.database]
    if args.insecure:
        argv.append("--insecure")
    else:
        if not (args.ssl_ca_certfile and args.ssl_certfile and args.ssl_keyfile):
            raise ConfigError(
                "a SuperLink needs --ssl-ca-certfile, --ssl-certfile and --ssl-keyfile "
                "(or --insecure for loopback trials)"
            )
        argv += ["--ssl-ca-certfile", args.ssl_ca_certfile, "--ssl-certfile", args.ssl_certfile]
        argv += ["--ssl-keyfile", args.ssl_keyfile]
    if args.supernode_auth:
        argv.append("--enable-supernode-auth")
    return _exec("flower-superlink", argv)


def cmd_supernode(args: argparse.Namespace) -> int:
    """Run one site's SuperNode in the foreground, serving one client id."""
    conf = f'client-id={args.client_id} state-dir="{Path(args.state_dir).resolve()}"'
    if args.data_dir:
        conf += f' data-dir="{Path(args.data_dir).resolve()}"'
    argv = ["--superlink", args.superlink, "--node-config", conf, "--port", str(args.port)]
    if args.insecure:
        argv.append("--insecure")
    elif args.root_certificates:
        argv += ["--root-certificates", args.root_certificates]
    else:
        raise ConfigError("give --root-certificates CA.pem (TLS) or --insecure (loopback trials)")
    if args.auth_key:
        argv += ["--auth-supernode-private-key", args.auth_key]
    # the node supervisor runs the SuperNode and, beside it, the warm SuperExec and the worker
    node = ["-m", "fedsa.flower.node", "--state-dir", str(Path(args.state_dir).resolve())]
    if args.no_worker:
        node.append("--no-worker")
    if args.cold_exec:
        node.append("--cold-exec")
    env = flower_env()
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    os.execve(sys.executable, [sys.executable, *node, "--", *argv], env)
    return 0  # not reached


def cmd_bundle(args: argparse.Namespace) -> int:
    """Write the thin app bundle."""
    print(write_app_bundle(Path(args.dir)) / "pyproject.toml")
    return 0


_NO_WORKER = "no resident worker: every message loads torch and the model in its own process"
_COLD_EXEC = "Flower's own SuperExec: every message starts a fresh Python process and imports flwr"


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="TOML config file")
    p.add_argument("overrides", nargs="*", help="dotted.key=value overrides")
    p.add_argument("--out", required=True, help="RUN_DIR (written on the SuperLink's host)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds for the whole run")
    p.add_argument("--round-timeout", type=float, default=600.0, help="seconds to wait for replies")
    p.add_argument("--node-timeout", type=float, default=120.0, help="seconds to wait for nodes")
    p.add_argument(
        "--no-fold-eval",
        action="store_true",
        help="evaluate with separate messages instead of inside the next train reply",
    )


def _add_tls_client(p: argparse.ArgumentParser) -> None:
    p.add_argument("--superlink", required=True, help="SuperLink address host:port")
    p.add_argument("--root-certificates", help="CA certificate (PEM) that signed the SuperLink's")
    p.add_argument("--insecure", action="store_true", help="no TLS (loopback trials only)")


def build_parser() -> argparse.ArgumentParser:
    """The ``fedsa flower`` parser."""
    p = argparse.ArgumentParser(prog="fedsa flower", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    lo = sub.add_parser("local", help="SuperLink + N SuperNodes on this host, one run, then stop")
    _add_run_options(lo)
    lo.add_argument("--nodes", type=int, default=0, help="SuperNodes (default: data.num_clients)")
    lo.add_argument("--workdir", default="", help="folder for logs and node state (default: temp)")
    lo.add_argument("--data-dir", default="", help="data folder every node reads")
    lo.add_argument("--no-worker", action="store_true", help=_NO_WORKER)
    lo.add_argument("--cold-exec", action="store_true", help=_COLD_EXEC)
    lo.set_defaults(func=cmd_local)

    r = sub.add_parser("run", help="submit a config to a running SuperLink and wait for it")
    _add_run_options(r)
    _add_tls_client(r)
    r.add_argument("--resume", action="store_true", help="continue the run in --out")
    r.set_defaults(func=cmd_run)

    sl = sub.add_parser("superlink", help="start a SuperLink in the foreground")
    sl.add_argument("--host", default="0.0.0.0", help="interface to listen on")
    sl.add_argument("--port", type=int, default=9092, help="port of all SuperLink APIs")
    sl.add_argument("--database", default="", help="SQLite file for durable SuperLink state")
    sl.add_argument("--ssl-ca-certfile", default="")
    sl.add_argument("--ssl-certfile", default="")
    sl.add_argument("--ssl-keyfile", default="")
    sl.add_argument("--supernode-auth", action="store_true", help="only registered SuperNodes")
    sl.add_argument("--insecure", action="store_true", help="no TLS (loopback trials only)")
    sl.set_defaults(func=cmd_superlink)

    sn = sub.add_parser("supernode", help="start one site's SuperNode in the foreground")
    _add_tls_client(sn)
    sn.add_argument("--client-id", required=True, help="this site's client id (0..N-1)")
    sn.add_argument("--state-dir", required=True, help="node-local folder for private state")
    sn.add_argument("--data-dir", default="", help="this site's data folder")
    sn.add_argument("--auth-key", default="", help="private key for SuperNode authentication")
    sn.add_argument("--port", type=int, default=9094, help="local port of the node's runtime API")
    sn.add_argument("--no-worker", action="store_true", help=_NO_WORKER)
    sn.add_argument("--cold-exec", action="store_true", help=_COLD_EXEC)
    sn.set_defaults(func=cmd_supernode)

    rg = sub.add_parser("register", help="register a SuperNode public key with the SuperLink")
    rg.add_argument("public_key", help="the node's OpenSSH public key file")
    _add_tls_client(rg)
    rg.set_defaults(func=cmd_register)

    b = sub.add_parser("bundle", help="write the thin Flower app bundle (pyproject.toml)")
    b.add_argument("dir", help="folder to write it into")
    b.set_defaults(func=cmd_bundle)
    return p


def main(argv: Sequence[str]) -> int:
    """Parse ``fedsa flower`` arguments and run the subcommand."""
    args = build_parser().parse_args(list(argv))
    code: int = args.func(args)
    return code
