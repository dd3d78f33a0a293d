"""The client half of SecAgg+: Flower's ``secaggplus_mod``, on the messages that ask for it.

One ClientApp serves runs with and without secure aggregation, so the mod runs only on train
messages that carry SecAgg+'s record; every other message reaches the handlers unchanged. In
the masked-vector exchange the mod calls our train handler, which replies with the client's
update in the legacy ``FitRes`` form the mod reads (arrays in sorted name order, the aggregation
weight as ``num_examples``); the mod masks it, clears every ArrayRecord of the reply and sends
the masked vector instead. The reply's metrics (loss, example count, personalised evaluation,
timing) still go in the clear: they are not the update.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from flwr.app import Context, Message, RecordDict
from flwr.app.message_type import MessageType
from flwr.client.mod import secaggplus_mod
from flwr.clientapp.typing import ClientAppCallable
from flwr.common import Code, FitRes, Status, ndarrays_to_parameters
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS
from flwr.compat.common.recorddict_compat import fitres_to_recorddict


def secaggplus_when_asked(msg: Message, ctxt: Context, call_next: ClientAppCallable) -> Message:
    """``secaggplus_mod`` for train messages of the SecAgg+ protocol; others pass through."""
    asked = RECORD_KEY_CONFIGS in msg.content.config_records
    if msg.metadata.message_type == MessageType.TRAIN and asked:
        return secaggplus_mod(msg, ctxt, call_next)
    return call_next(msg, ctxt)


def fitres_content(
    content: RecordDict, arrays: Mapping[str, np.ndarray], weight: float
) -> RecordDict:
    """``content`` plus the update as ``fitres.*`` records (sorted names), weighted ``weight``.

    SecAgg+ quantises ``weight / max_weight``; with uniform weights it is 1 (an integer, as
    ``FitRes.num_examples`` must be).
    """
    ordered = [np.asarray(arrays[k], dtype=np.float64) for k in sorted(arrays)]
    res = FitRes(Status(Code.OK, ""), ndarrays_to_parameters(ordered), round(weight), {})
    for name, record in fitres_to_recorddict(res, keep_input=False).items():
        content[name] = record
    return content
