"""Every algorithm by its kebab-case id: the one place a new algorithm is added.

The order is the order of ``fedsa list``. To add an algorithm, write its :class:`Algorithm` (data,
plus the hooks that differ) in a module of this package and add it to the tuple below; see
``docs/architecture.md`` for a worked example.
"""

from __future__ import annotations

from fedsa.algorithms.align import FEDROT_LORA
from fedsa.algorithms.alternating import ROLORA
from fedsa.algorithms.basic import (
    CENTRALIZED,
    FED_ALORA,
    FEDIT,
    FEDSA_LORA,
    FFA_LORA,
    LOCAL_ONLY,
)
from fedsa.algorithms.feddpa import FEDDPA
from fedsa.algorithms.heterogeneous import FLORIST, HETLORA
from fedsa.algorithms.merging import FEDEX_LORA, FLORA
from fedsa.algorithms.refactoring import FEDSVD, FLEXLORA
from fedsa.algorithms.spec import Algorithm

ALGORITHMS: dict[str, Algorithm] = {
    a.name: a
    for a in (
        FEDSA_LORA,
        FEDIT,
        FFA_LORA,
        FEDDPA,
        ROLORA,
        FLORA,
        FEDEX_LORA,
        FLEXLORA,
        FEDSVD,
        FED_ALORA,
        FEDROT_LORA,
        HETLORA,
        FLORIST,
        LOCAL_ONLY,
        CENTRALIZED,
    )
}
