"""The thin Flower app bundle: a ``pyproject.toml`` whose components point at installed fedsa.

``flwr run`` needs an app directory; ours holds nothing but this file, so every host runs the
ServerApp and ClientApp of the fedsa version it has installed.
"""

from __future__ import annotations

from pathlib import Path

APP_PYPROJECT = """\
# Thin Flower app bundle: the components live in the installed fedsa package.
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "fedsa-flower"
version = "0.1.0"
description = "fedsa on Flower: FedSA-LoRA and baselines"
license = "Apache-2.0"
dependencies = []

[tool.hatch.build.targets.wheel]
packages = ["."]

[tool.flwr.app]
publisher = "fedsa"

[tool.flwr.app.components]
serverapp = "fedsa.flower.server_app:app"
clientapp = "fedsa.flower.client_app:app"

[tool.flwr.app.config]
config-json = ""
out-dir = ""
round-timeout = 600.0
node-timeout = 120.0
fold-eval = true
resume = false
overwrite = false
poll-interval = 0.1
"""


def write_app_bundle(directory: Path) -> Path:
    """Write the thin app bundle (a ``pyproject.toml`` only) into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "pyproject.toml").write_text(APP_PYPROJECT, encoding="utf-8")
    return directory
