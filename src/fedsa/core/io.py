"""Atomic persistence in safetensors and JSON: nothing on disk can run code when it is loaded.

Every file the library writes (run directories, checkpoints, token caches, a site's private state)
goes through these functions, so a crash leaves either the old file or the new one.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from fedsa.core.params import Tensors


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync it, then rename over ``path``.

    A crash leaves either the old file or the new one, never a truncated mix.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def save_tensors(
    path: Path, tensors: Mapping[str, torch.Tensor], meta: dict[str, str] | None = None
) -> None:
    """Atomically write named tensors as safetensors (an empty dict gives a valid empty file)."""
    from safetensors.torch import save

    data = save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, metadata=meta)
    atomic_write_bytes(path, data)


def load_tensors(path: Path) -> Tensors:
    """Read named tensors written by :func:`save_tensors`."""
    return dict(load_file(str(path)))
