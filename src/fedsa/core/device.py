"""Numeric precision on the training device: bf16 autocast where it pays, fp32 everywhere else.

Only the *compute* of the forward pass is lowered to bf16 (``torch.autocast``); parameters stay
in their stored dtype (fp32), so adapters, optimizer moments, uploads, private state and the
server's average are fp32 exactly as without autocast, and ``write_into`` never has to cast.
Gradients flow back in the dtype each op ran in and land on fp32 parameters in fp32.
bf16 has fp32's exponent range, so no loss scaling is needed (unlike fp16, which is not offered).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from fedsa.core.errors import ConfigError

PRECISIONS = ("fp32", "bf16", "auto")


def bf16_supported(device: torch.device) -> bool:
    """Whether bf16 autocast is available on ``device`` (CUDA: Ampere or newer; CPU: always)."""
    if device.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    return device.type == "cpu"


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for a configured ``precision`` on ``device``; None means plain fp32.

    ``auto`` picks bf16 only on a CUDA device that supports it: on CPU bf16 autocast works but is
    usually not faster without AMX/AVX512-BF16, so ``auto`` keeps CPU runs in fp32 (and so keeps
    their results identical to earlier versions). ``bf16`` asks for it explicitly (CPU included,
    which the tests use to exercise the GPU code path).

    Raises:
        ConfigError: ``bf16`` on a device without bf16 support, or an unknown precision.
    """
    if precision == "fp32":
        return None
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" and bf16_supported(device) else None
    if precision == "bf16":
        if not bf16_supported(device):
            raise ConfigError(
                f"precision = 'bf16' is not supported on {device}: use precision = 'auto'"
            )
        return torch.bfloat16
    raise ConfigError(f"precision = {precision!r} is unknown: allowed: {', '.join(PRECISIONS)}")


@contextlib.contextmanager
def autocast(device: torch.device, dtype: torch.dtype | None) -> Iterator[None]:
    """``torch.autocast`` to ``dtype`` on ``device``'s type, or nothing when ``dtype`` is None."""
    if dtype is None:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield
