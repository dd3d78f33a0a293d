"""Adapter slots: the names algorithms use for parts of the adapter, independent of the variant.

``A`` is the down-projection side of the low-rank update, ``B`` the up-projection side, ``head``
the task head; ``A_local``/``B_local`` are FedDPA's second adapter. The adapter variant maps each
slot to parameter names (:mod:`fedsa.adapters.variants`).
"""

from __future__ import annotations

Slot = str
A: Slot = "A"
B: Slot = "B"
HEAD: Slot = "head"
A_LOCAL: Slot = "A_local"
B_LOCAL: Slot = "B_local"
"""Slots of FedDPA's second (local) adapter."""
SLOTS: tuple[Slot, ...] = (A, B, HEAD, A_LOCAL, B_LOCAL)
