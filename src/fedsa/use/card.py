"""The model card (``README.md``) of an export: what the model is, how to load it, its numbers.

A person who finds the folder months later should learn from it alone which run, client and
algorithm it came from, what client k's effective weight update is, how to load it with PEFT or
transformers, and how well it did on its client's data.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

from fedsa.adapters.ranks import client_rank, max_rank
from fedsa.config.schema import AdapterConfig
from fedsa.use.saved import SavedRun

_AUTO = {True: "AutoModelForCausalLM", False: "AutoModelForSequenceClassification"}


def effective_update(run: SavedRun, who: str = "") -> str:
    """The update one adapted layer applies, in the run's variant and numbers (``who``'s rank)."""
    a = run.cfg.adapter
    if a.client_ranks and who.startswith("client "):
        r, r_max = client_rank(run.cfg, who.split(" ", 1)[1]), max_rank(run.cfg)
        a = dataclasses.replace(a, r=r)
        if r != r_max:
            rank = f"{r} (the first {r} components of rank-{r_max} factors, zeros after)"
            return effective_update_at(a, rank)
    return effective_update_at(a, str(a.r))


def effective_update_at(a: AdapterConfig, rank: str) -> str:
    """``W = W0 + s B A`` with the scale of ``a`` written out; ``rank`` as it should read."""
    if a.variant == "vera":
        return (
            "W = W0 + diag(lambda_b) B diag(lambda_d) A, with A and B VeRA's frozen random "
            f"projections (rank {rank}, regenerated from `projection_prng_key` and also saved)"
        )
    if a.variant == "rslora":
        scale, form = a.alpha / math.sqrt(a.r), f"alpha/sqrt(r) = {a.alpha:g}/sqrt({a.r})"
    else:
        scale, form = a.alpha / a.r, f"alpha/r = {a.alpha:g}/{a.r}"
    return f"W = W0 + s B A, rank {rank}, s = {form} = {scale:.6g}"


def _loading(run: SavedRun, reference: str, merged: bool, adapters: list[str]) -> str:
    auto = _AUTO[run.is_generation]
    extra = "" if run.is_generation else f", num_labels={len(run.label_names)}"
    if merged:
        return (
            f"```python\nfrom transformers import {auto}, AutoTokenizer\n\n"
            f'model = {auto}.from_pretrained("PATH_OF_THIS_FOLDER")\n'
            'tokenizer = AutoTokenizer.from_pretrained("PATH_OF_THIS_FOLDER")\n```\n'
        )
    lines = [
        "```python",
        "from peft import PeftModel",
        f"from transformers import {auto}, AutoTokenizer",
        "",
        f'base = {auto}.from_pretrained("{reference}"{extra})',
        'model = PeftModel.from_pretrained(base, "PATH_OF_THIS_FOLDER")',
        'tokenizer = AutoTokenizer.from_pretrained("PATH_OF_THIS_FOLDER")',
        "```",
    ]
    if len(adapters) > 1:
        lines += [
            "",
            "FedDPA: this folder holds two adapters, `default` (global, averaged by the server) "
            "and `local` (the client's own, in `local/`). Load the second with "
            '`model.load_adapter("PATH_OF_THIS_FOLDER/local", adapter_name="local")`. '
            + _feddpa_mix(run),
        ]
    return "\n".join(lines) + "\n"


def _feddpa_mix(run: SavedRun) -> str:
    cfg = run.cfg.feddpa
    if cfg.combination == "sum":
        return (
            'This run used `feddpa.combination = "sum"` (W0 + dW_global + dW_local), which PEFT '
            'reproduces exactly with `model.base_model.set_adapter(["default", "local"])`.'
        )
    return (
        "This run used the instance-wise mix `(1 - a(x)) dW_global + a(x) dW_local`, where a(x) "
        "compares each input's representation with the client's training examples: PEFT cannot "
        "reproduce that per-input weight. What PEFT can run is a fixed mix (`set_adapter` on both, "
        f"then `LoraLayer.set_scale`, e.g. the training mix a = {cfg.train_weight:g}), or the "
        "global adapter alone; neither equals the evaluated model."
    )


def _numbers(run: SavedRun, who: str) -> str:
    summary: dict[str, Any] = run.summary
    fin = summary.get("final", {})
    lines = [
        f"- run: `{run.path.resolve()}` (config sha256 `{summary.get('config_sha256', '?')}`)",
        f"- algorithm `{run.cfg.algorithm}`, variant `{run.cfg.adapter.variant}`, task "
        f"`{run.cfg.data.task}`, {run.cfg.data.num_clients} clients, "
        f"{run.cfg.federation.rounds} rounds",
        f"- all clients, final round: mean accuracy {fin.get('accuracy_mean', float('nan')):.4f}, "
        f"worst {fin.get('accuracy_min', float('nan')):.4f}",
    ]
    client = who.removeprefix("client ")
    if client != who and client in summary.get("final_clients", {}):
        mine = summary["final_clients"][client]
        shown = ", ".join(f"{k} {v:.4f}" for k, v in mine.items() if k != "n")
        lines.append(
            f"- {who} on its own evaluation shard ({int(mine.get('n', 0))} examples): {shown}"
        )
    return "\n".join(lines)


def model_card(
    run: SavedRun, who: str, reference: str, *, merged: bool, adapters: list[str]
) -> str:
    """The README.md of one exported folder."""
    kind = "merged transformers model" if merged else "PEFT adapter"
    head = "" if run.is_generation else " The task head is saved in `modules_to_save`."
    if who == "global model":
        what = (
            "The global model: the server's shared tensors with the common initial private "
            "tensors, i.e. what a client new to the federation starts from."
        )
    else:
        what = (
            f"The personalised model of {who}: the server's shared tensors as that client "
            "received them, plus the client's own private tensors."
        )
    config = json.dumps(run.cfg.to_dict(), indent=2)
    return f"""# fedsa export: {who} of a `{run.cfg.algorithm}` run ({kind})

{what}{head}

Effective update of each adapted layer: {effective_update(run, who)}.

## Load it

{_loading(run, reference, merged, adapters)}
Base model: `{reference}`.

## Numbers

{_numbers(run, who)}

## Resolved config of the run

```json
{config}
```
"""
