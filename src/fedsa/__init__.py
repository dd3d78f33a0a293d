"""fedsa: federated LoRA fine-tuning with selective aggregation.

``fedsa.run(...)`` and ``fedsa.load_run(...)`` are the Python API (:mod:`fedsa.api`); they are
imported on first use, so ``import fedsa`` stays cheap for the command line.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["load_run", "run"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from fedsa import api

        return getattr(api, name)
    raise AttributeError(f"module 'fedsa' has no attribute {name!r}")
