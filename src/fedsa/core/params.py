"""Pure functions over named tensors (``dict[str, Tensor]``).

The engine moves adapter state only through these: take tensors out of a model, put them back,
select a subset by name, count bytes. Named dicts (never positional lists or flat vectors) make a
key mismatch an error instead of a silent mix-up.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch

Tensors = dict[str, torch.Tensor]


def select(tensors: Mapping[str, torch.Tensor], names: Iterable[str]) -> Tensors:
    """The sub-dict for ``names``, in that order; a missing name is a KeyError."""
    return {name: tensors[name] for name in names}


def clone(tensors: Mapping[str, torch.Tensor]) -> Tensors:
    """Deep copies on CPU, detached, contiguous: safe to store or send."""
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in tensors.items()}


def nbytes(tensors: Mapping[str, torch.Tensor]) -> int:
    """Bytes of tensor data, i.e. what crossing the network costs for these tensors."""
    return sum(t.numel() * t.element_size() for t in tensors.values())


def numel(tensors: Mapping[str, torch.Tensor]) -> int:
    """Number of scalars."""
    return sum(t.numel() for t in tensors.values())


def read_from(model: torch.nn.Module, names: Iterable[str]) -> Tensors:
    """Clone the named parameters of ``model`` (detached CPU copies)."""
    params = dict(model.named_parameters())
    return clone({name: params[name] for name in names})


def write_into(model: torch.nn.Module, tensors: Mapping[str, torch.Tensor]) -> None:
    """Copy ``tensors`` into the same-named parameters of ``model``, exactly (no casting).

    Raises:
        KeyError: a name is not a parameter of the model.
        ValueError: a shape or dtype differs from the parameter's.
    """
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in tensors.items():
            if name not in params:
                raise KeyError(f"{name!r} is not a parameter of the model")
            target = params[name]
            if target.shape != value.shape or target.dtype != value.dtype:
                raise ValueError(
                    f"{name!r}: got {tuple(value.shape)} {value.dtype}, "
                    f"model has {tuple(target.shape)} {target.dtype}"
                )
            target.copy_(value)


def equal(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> bool:
    """Bitwise equality of two named-tensor dicts (same keys, same values)."""
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
