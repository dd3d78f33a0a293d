"""``fedsa export``: a client's personalised model in PEFT's own format, or merged.

The adapter is written by PEFT itself (``PeftModel.save_pretrained``), so ``adapter_config.json``
and the key names of ``adapter_model.safetensors`` are PEFT's, and anything PEFT loads it. What
fedsa adds is deciding *which* tensors form the model (the run's install step, see
:mod:`fedsa.use.saved`) and where the base model comes from:

* a base PEFT can load by name (a hub id, a local directory, the ``minilm``/``smollm2`` packages'
  folders) is referenced in ``base_model_name_or_path``;
* a base that exists only inside fedsa (``tiny-bert``, ``tiny-llama``, built from a seed) or whose
  weights the server changed (FLoRA, FedEx-LoRA merge ``B A`` into ``W0``) is saved beside the
  adapter in ``base_model/`` and referenced by its absolute path: an adapter without the changed
  base would be a different model.

``--merge`` writes a plain transformers model instead (``merge_and_unload``).
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from peft import PeftModel
from transformers import PreTrainedTokenizerBase

from fedsa.adapters.ranks import alpha_at_max_rank, client_rank, heterogeneous
from fedsa.core.errors import ConfigError
from fedsa.core.io import atomic_write_json
from fedsa.core.slots import HEAD
from fedsa.models.causal_lm import TINY_LLAMA, causal_lm_path, load_causal_tokenizer
from fedsa.models.loaders import TINY_BERT, load_tokenizer, resolve_model_path
from fedsa.use.card import model_card
from fedsa.use.saved import SavedRun

BUILT_IN = (TINY_BERT, TINY_LLAMA)
"""Model names fedsa builds from a seed: PEFT cannot load them by name, so they are saved."""
BASE_DIR = "base_model"


def tokenizer_of(run: SavedRun) -> PreTrainedTokenizerBase:
    """The run's tokenizer (saved with every export, so the folder is self-contained)."""
    name = run.cfg.model.name
    return load_causal_tokenizer(name) if run.is_generation else load_tokenizer(name)


def base_reference(run: SavedRun) -> str | None:
    """What ``base_model_name_or_path`` can name, or None when the base must be saved."""
    name = run.cfg.model.name
    if name in BUILT_IN or run.server.base:
        return None
    path = causal_lm_path(name) if run.is_generation else resolve_model_path(name)
    return str(Path(path).resolve()) if Path(path).is_dir() else path


def global_refusal(run: SavedRun) -> str | None:
    """Why the run has no global model (None: it has one)."""
    alg = run.algorithm
    if alg.pooled:
        return None
    kept = sorted(alg.private_slots(run.cfg.federation.share_head) - {HEAD})
    if not kept:
        return None
    if not alg.shared_slots(run.cfg.federation.share_head):
        return f"{alg.name} shares nothing: every client's model is its own"
    return (
        f"{alg.name} keeps {' and '.join(kept)} on each client, so there is no global "
        f"{' or '.join(kept)} and no global model: export a client with --client ID or "
        "--all-clients"
    )


def _check_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {str(out)!r} is a file: choose a directory path")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ConfigError(
            f"--out {str(out)!r} is not empty: choose another directory or pass --overwrite"
        )


def _publish(tmp: Path, out: Path) -> None:
    """Replace ``out`` by the finished ``tmp`` folder, so a failed export leaves no half folder."""
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)


def _save_base(model: PeftModel, tokenizer: PreTrainedTokenizerBase, path: Path) -> None:
    """The base model as the adapter expects it (base changes included, no adapter layers)."""
    base = copy.deepcopy(model).unload()
    base.save_pretrained(str(path))
    tokenizer.save_pretrained(str(path))


def _persist_projections(model: PeftModel) -> None:
    """Make VeRA's shared projections part of the state dict, so PEFT saves them.

    fedsa builds VeRA with ``save_projection=False`` (every client regenerates the projections
    from the seed, so they are never sent); an export should not rely on the PRNG reproducing
    them on another machine, so the buffers are re-registered as persistent.
    """
    for projections in (model.base_model.vera_A, model.base_model.vera_B):
        assert isinstance(projections, torch.nn.Module)  # PEFT's BufferDict
        for name, tensor in list(projections.named_buffers(recurse=False)):
            projections.register_buffer(name, tensor, persistent=True)


def _point_to(out: Path, reference: str) -> None:
    """Rewrite ``base_model_name_or_path`` of every adapter in ``out`` (root and subfolders)."""
    for path in out.rglob("adapter_config.json"):
        data = json.loads(path.read_text(encoding="utf-8"))
        data["base_model_name_or_path"] = reference
        atomic_write_json(path, data)


def _label_config(run: SavedRun, model: torch.nn.Module) -> None:
    """Class names in the config, so a ``pipeline`` prints ``positive``, not ``LABEL_1``."""
    config = getattr(model, "config", None)
    if config is not None and run.label_names:
        config.id2label = dict(enumerate(run.label_names))
        config.label2id = {name: i for i, name in enumerate(run.label_names)}


def write_adapter(
    run: SavedRun,
    model: PeftModel,
    out: Path,
    final: Path,
    who: str,
    tokenizer: PreTrainedTokenizerBase,
) -> None:
    """``model``'s adapters in PEFT's format in ``out``, with model card and tokenizer.

    ``final`` is where ``out`` will be moved: a saved base is referenced by that path.
    """
    reference = base_reference(run)
    saved_base = reference is None
    if saved_base:
        _save_base(model, tokenizer, out / BASE_DIR)
        reference = str((out / BASE_DIR).resolve())  # PEFT reads its config while saving
    _label_config(run, model.get_base_model())
    for config in model.peft_config.values():
        config.base_model_name_or_path = reference
        config.inference_mode = True
        if hasattr(config, "save_projection"):  # VeRA: ship the frozen projections
            config.save_projection = True
            _persist_projections(model)
    model.save_pretrained(str(out))
    if reference is None or saved_base:
        reference = str((final / BASE_DIR).resolve())
        _point_to(out, reference)
    tokenizer.save_pretrained(str(out))
    (out / "README.md").write_text(
        model_card(run, who, reference, merged=False, adapters=list(model.peft_config)),
        encoding="utf-8",
    )


def write_merged(
    run: SavedRun,
    model: PeftModel,
    out: Path,
    final: Path,
    who: str,
    tokenizer: PreTrainedTokenizerBase,
) -> None:
    """A plain transformers model with the adapter merged into its weights."""
    if len(model.peft_config) > 1:
        raise ConfigError(
            f"--merge: {run.algorithm.name} mixes two adapters per input at inference, which one "
            "merged set of weights cannot reproduce: export the adapters (drop --merge)"
        )
    merged = copy.deepcopy(model).merge_and_unload()
    _label_config(run, merged)
    merged.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    card = model_card(run, who, str(final.resolve()), merged=True, adapters=[])
    (out / "README.md").write_text(card, encoding="utf-8")


def export(
    run: SavedRun,
    out: Path,
    *,
    client: str | None = None,
    all_clients: bool = False,
    global_model: bool = False,
    merge: bool = False,
    overwrite: bool = False,
) -> list[Path]:
    """Export one client, every client (``out/client_<id>``), or the global model.

    Every folder is written beside ``out`` first and moved into place when complete.
    """
    if sum([client is not None, all_clients, global_model]) != 1:
        raise ConfigError("fedsa export needs exactly one of --client ID, --all-clients, --global")
    if global_model and (why := global_refusal(run)) is not None:
        raise ConfigError(f"--global: {why}")
    _check_out(out, overwrite)
    targets: list[tuple[str | None, Path]]
    if client is not None:
        targets = [(run.check_client(client), out)]
    elif all_clients:
        targets = [(cid, out / f"client_{cid}") for cid in run.client_ids]
    else:
        targets = [(None, out)]
    tokenizer = tokenizer_of(run)
    model, layout, frozen, initial = run.build()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        written = []
        for cid, dest in targets:
            run.install(model, layout, frozen, initial, cid)
            assert isinstance(model, PeftModel)
            target = tmp / dest.relative_to(out)
            target.mkdir(parents=True, exist_ok=True)
            who = "global model" if cid is None else f"client {cid}"
            write = write_merged if merge else write_adapter
            copied = copy.deepcopy(model)
            if heterogeneous(run.cfg) and cid is not None:  # its own scale s_k on load
                alpha = alpha_at_max_rank(run.cfg, client_rank(run.cfg, cid))
                copied.peft_config["default"].lora_alpha = alpha  # type: ignore[attr-defined]
            write(run, copied, target, dest, who, tokenizer)
            written.append(dest)
        _publish(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return written
