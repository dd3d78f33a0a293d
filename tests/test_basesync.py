"""A Flower site's copy of the merged base weights: rebuilt from what each message brings.

The server side (:meth:`ServerState.base_payload`) sends nothing, the latest change, or the
changed weights dense; the site (:class:`fedsa.flower.basesync.BaseCopies`) must end with the
server's exact values in each case, accept a retried message, and refuse a change it cannot
apply rather than train on a wrong base.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.conftest import require_flwr

require_flwr()

from fedsa.config.load import load_config  # noqa: E402
from fedsa.core.errors import UpdateError  # noqa: E402
from fedsa.engine.prepare import prepare  # noqa: E402
from fedsa.engine.server_step import ServerState  # noqa: E402
from fedsa.flower.basesync import BaseCopies  # noqa: E402

TINY = Path(__file__).parents[1] / "configs" / "tiny.toml"
WHO = ("exp", "0", 1)


def _settings(state: ServerState, held: int, form: str) -> dict[str, object]:
    return {"base-round": state.base_round, "base-from": held, "base-kind": form}


def test_site_rebuilds_the_servers_base_from_each_form() -> None:
    fed = prepare(load_config(TINY, ["algorithm=fedex-lora"]))
    site = BaseCopies()
    initial = site.initial(fed)
    name = next(iter(initial))
    gen = torch.Generator().manual_seed(0)
    b, a = torch.randn(32, 12, generator=gen), torch.randn(12, 32, generator=gen)
    state = ServerState(shared={})
    # two server rounds, each merging a factored change, as server_update records them
    for rnd in (1, 2):
        cur = state.base.get(name, initial[name])
        delta = b.double() @ a.double()
        state = ServerState(
            shared={},
            base={name: (cur.double() + delta).to(cur.dtype)},
            base_sent={f"{name}@B": b, f"{name}@A": a},
            base_round=rnd,
            base_prev=state.base_round,
            synced=dict(state.synced),
        )
        held = state.synced.get("0", 0)
        form, payload = state.base_payload("0")
        assert form == "merge" and set(payload) == {f"{name}@B", f"{name}@A"}
        got = site.current(fed, WHO, payload, _settings(state, held, form))
        assert torch.equal(got[name], state.base[name])
    # current: nothing is sent, the site uses its copy; a retried message gives the same
    form, payload = state.base_payload("0")
    assert (form, payload) == ("", {})
    assert torch.equal(site.current(fed, WHO, {}, _settings(state, 2, ""))[name], state.base[name])
    # a restarted site given only a change refuses; the server then sends the weights dense
    fresh = BaseCopies()
    with pytest.raises(UpdateError, match="out of sync"):
        fresh.current(fed, WHO, state.base_sent, _settings(state, 1, "merge"))
    state.forget("0")
    form, payload = state.base_payload("0")
    assert form == "base"
    assert torch.equal(
        fresh.current(fed, WHO, payload, _settings(state, 0, form))[name], state.base[name]
    )
