"""A site's copy of the base weights the server changed (FLoRA, FedEx-LoRA), kept across messages.

The server sends base changes in their smallest form (:meth:`fedsa.engine.server_step.
ServerState.base_payload`): nothing when the site is current, the latest change's wire form
(factors, or dense) when it holds the previous base, the changed weights dense otherwise. The
site rebuilds the absolute weights with the function the server used
(:func:`fedsa.algorithms.lowrank.expand`, float64, cast back), so both hold the same values.
It keeps its copy in memory (the resident worker) or in Flower's ``context.state`` (the
in-process fallback, a fresh process per message). A copy that cannot be brought up to date (a
restarted worker given only a change) is an error reply; the server then sends the dense
weights next time (:meth:`~fedsa.engine.server_step.ServerState.forget`).
"""

from __future__ import annotations

from typing import Any

from flwr.app import ConfigRecord

from fedsa.algorithms.lowrank import expand, lora_layers
from fedsa.core.errors import UpdateError
from fedsa.core.params import Tensors, read_from
from fedsa.engine.prepare import Federation
from fedsa.flower.codec import from_record, to_record

_TENSORS, _META = "fedsa.base", "fedsa.base-meta"
Held = tuple[int, Tensors]
"""(the server's round of the base a site holds, the absolute changed weights)."""


class BaseCopies:
    """The current base weights of each (experiment, client, run) a site serves."""

    def __init__(self) -> None:
        self._held: dict[tuple[str, str, int], Held] = {}
        self._initial: dict[int, Tensors] = {}

    def initial(self, fed: Federation) -> Tensors:
        """The adapted layers' base weights as built, read before any change is installed."""
        key = id(fed.model)
        if key not in self._initial:
            names = [layer.base for layer in lora_layers(fed.layout.slots)]
            self._initial[key] = read_from(fed.model, names)
        return self._initial[key]

    def current(
        self,
        fed: Federation,
        who: tuple[str, str, int],
        arrays: Tensors,
        settings: dict[str, Any],
        context: Any = None,
    ) -> Tensors:
        """The absolute base weights this message's client must install.

        ``arrays`` holds the message's ``base/`` (dense, absolute) or ``merge/`` (wire form)
        tensors, prefixes removed by kind; ``settings`` its ``base-round`` and ``base-from``.
        """
        base_round = int(settings.get("base-round", 0))
        if base_round == 0:
            return {}
        kind = str(settings.get("base-kind", ""))
        held = self._held.get(who) or _from_context(context, who)
        if kind == "base":
            new = dict(arrays)
        elif held is not None and held[0] == base_round:  # current, or a retried message
            new = held[1]
        elif kind == "merge" and (
            int(settings["base-from"]) == 0
            or (held is not None and held[0] == int(settings["base-from"]))
        ):
            start = {} if int(settings["base-from"]) == 0 or held is None else held[1]
            initial = self.initial(fed)
            new = dict(start)
            for name, delta in expand(arrays).items():
                cur = start.get(name, initial[name])
                new[name] = (cur.double() + delta).to(cur.dtype)
        else:
            have = "none" if held is None else f"round {held[0]}"
            raise UpdateError(
                f"base weights out of sync: this site holds {have}, the message builds on round "
                f"{settings.get('base-from')} (a restarted worker?); the server resends them dense"
            )
        self._held[who] = (base_round, new)
        _to_context(context, who, base_round, new)
        return new


def _from_context(context: Any, who: tuple[str, str, int]) -> Held | None:
    if context is None or _META not in context.state.config_records:
        return None
    meta = context.state.config_records[_META]
    if meta.get("who") != "/".join(map(str, who)):
        return None
    return int(meta["round"]), from_record(context.state.array_records[_TENSORS])


def _to_context(context: Any, who: tuple[str, str, int], base_round: int, base: Tensors) -> None:
    if context is None:
        return
    context.state[_TENSORS] = to_record(base)
    context.state[_META] = ConfigRecord({"who": "/".join(map(str, who)), "round": base_round})
