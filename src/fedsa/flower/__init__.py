"""Flower backend: the same client step and aggregation on Flower's Deployment Engine.

This subpackage is the only place that imports ``flwr``. Importing it (or any of its modules)
first pins the Flower settings that would otherwise make every Flower process reach outside
(telemetry, update check, runtime dependency installation), so they are never left to the user.
``FLWR_HOME`` defaults to a per-user folder under the system temp dir unless already set.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

#: Environment every Flower process we start (or run in) gets, set before ``flwr`` is imported.
SAFE_ENV: Mapping[str, str] = {
    "FLWR_TELEMETRY_ENABLED": "0",
    "FLWR_DISABLE_UPDATE_CHECK": "1",
    "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
}

#: Flower's speed settings we pick unless the user already set them: SuperExec looks for a new
#: ClientApp/ServerApp task every 0.1 s instead of 1 s (flwr allows 0.01-60 s).
POLL_ENV = "FLWR_SUPEREXEC_TASK_POLL_INTERVAL"
FAST_ENV: Mapping[str, str] = {POLL_ENV: "0.1"}

#: ...except the SuperLink's own SuperExec, which picks up one ServerApp per run: Flower's 1 s
#: costs a run half a second on average, where 0.1 s would poll the SuperLink ten times a
#: second for the whole run, CPU a loopback federation's training shares (``docs/benchmarks.md``).
SERVERAPP_POLL_S = "1.0"


def default_flwr_home() -> Path:
    """Where the Flower CLI keeps its config when ``FLWR_HOME`` is unset (not ``~/.flwr``)."""
    return Path(tempfile.gettempdir()) / f"fedsa-flwr-home-{os.getuid()}"


def flower_env(home: Path | None = None) -> dict[str, str]:
    """A copy of ``os.environ``: :data:`SAFE_ENV` forced, :data:`FAST_ENV` defaulted, a home set.

    Args:
        home: the Flower home to use; None keeps ``$FLWR_HOME`` or :func:`default_flwr_home`.
    """
    env = dict(os.environ)
    env.update(SAFE_ENV)
    for key, value in FAST_ENV.items():
        env.setdefault(key, value)
    if home is not None:
        env["FLWR_HOME"] = str(home)
    else:
        env.setdefault("FLWR_HOME", str(default_flwr_home()))
    return env


#: The speed settings the user set before this package was imported (theirs win everywhere).
USER_SET: frozenset[str] = frozenset(k for k in FAST_ENV if k in os.environ)


def apply_flower_env() -> None:
    """Put :func:`flower_env` into this process's environment (call before importing ``flwr``)."""
    os.environ.update(flower_env())


apply_flower_env()
