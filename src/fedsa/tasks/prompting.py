"""Prompts and tokens for causal-LM tasks: chat templates, answer-only labels, few-shot, setup.

Split from :mod:`fedsa.tasks.instruct` (which reads the data): this module turns examples into the
model's text and token ids, with label ``-100`` on every prompt and padding position so the loss
covers only the response, and builds what generation-based evaluation needs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from fedsa.config.schema import RunConfig
from fedsa.models.causal_lm import load_causal_lm, load_causal_tokenizer
from fedsa.tasks.batching import Encoded
from fedsa.tasks.generate import Generation
from fedsa.tasks.instruct import InstructData, InstructExample


def prompt_text(
    tokenizer: PreTrainedTokenizerBase, prompt: str, shots: Sequence[InstructExample] = ()
) -> str:
    """The text the model continues: chat template (with earlier turns as shots) or plain Q/A."""
    if tokenizer.chat_template:
        messages = []
        for ex in shots:
            messages += [
                {"role": "user", "content": ex.prompt},
                {"role": "assistant", "content": ex.response},
            ]
        messages.append({"role": "user", "content": prompt})
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return str(text)
    blocks = [f"Question: {ex.prompt}\nAnswer: {ex.response}\n\n" for ex in shots]
    return "".join(blocks) + f"Question: {prompt}\nAnswer: "


def response_text(tokenizer: PreTrainedTokenizerBase, prompt: str, response: str) -> str:
    r"""The assistant turn after :func:`prompt_text`, including its end-of-turn marker.

    With a chat template this is what the template renders after the generation prompt (e.g.
    ``... #### 18<|im_end|>\n``), so the model learns to close its turn the way it was trained.
    """
    if tokenizer.chat_template:
        head = prompt_text(tokenizer, prompt)
        full = str(
            tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}],
                tokenize=False,
            )
        )
        if full.startswith(head):
            return full[len(head) :]
    return response + (tokenizer.eos_token or "")


def prompt_ids(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    """Token ids of a prompt; BOS is added only when no chat template already wrote it."""
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    bos = tokenizer.bos_token_id
    if not tokenizer.chat_template and bos is not None and (not ids or ids[0] != bos):
        ids = [bos, *ids]
    return ids


def encode_instruct(
    examples: Sequence[InstructExample], tokenizer: PreTrainedTokenizerBase, max_length: int
) -> Encoded:
    """Prompt + response ids with per-token labels: ``-100`` on the prompt, ids on the response.

    Over-long pairs keep at least half of ``max_length`` for the response and drop the start of
    the prompt (then its end of the response), so every example has supervised tokens.
    """
    ids_all: list[list[int]] = []
    labels_all: list[list[int]] = []
    for ex in examples:
        p = prompt_ids(tokenizer, prompt_text(tokenizer, ex.prompt))
        r = list(
            tokenizer(response_text(tokenizer, ex.prompt, ex.response), add_special_tokens=False)[
                "input_ids"
            ]
        )
        if len(p) + len(r) > max_length:
            r = r[: max(max_length - len(p), max_length // 2)]
            p = p[max(0, len(p) - (max_length - len(r))) :]
        ids_all.append(p + r)
        labels_all.append([-100] * len(p) + r)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return Encoded(
        input_ids=ids_all,
        token_type_ids=None,
        labels=np.asarray([ex.label for ex in examples], dtype=np.int64),
        pad_id=int(pad),
        token_labels=labels_all,
    )


def shot_examples(train: Sequence[InstructExample], k: int, seed: int) -> list[InstructExample]:
    """``k`` fixed training examples (seeded) used as few-shot demonstrations by every client."""
    if k <= 0:
        return []
    idx = np.random.default_rng([seed, 8]).choice(
        len(train), size=min(k, len(train)), replace=False
    )
    return [train[int(i)] for i in idx]


def stop_ids(tokenizer: PreTrainedTokenizerBase) -> tuple[int, ...]:
    """EOS and the special tokens a chat template closes an assistant turn with."""
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    closing = tokenizer(response_text(tokenizer, "q", ""), add_special_tokens=False)["input_ids"]
    ids |= set(closing) & set(tokenizer.all_special_ids)
    return tuple(sorted(int(i) for i in ids))


def build_generation(
    task: InstructData,
    tokenizer: PreTrainedTokenizerBase,
    *,
    few_shot: int,
    max_new_tokens: int,
    batch_size: int,
    seed: int,
) -> Generation:
    """Evaluation prompts (``few_shot`` fixed demonstrations each) and test-set references."""
    shots = shot_examples(task.train, few_shot, seed)
    return Generation(
        tokenizer=tokenizer,
        prompts=[
            prompt_ids(tokenizer, prompt_text(tokenizer, ex.prompt, shots)) for ex in task.dev
        ],
        references=[ex.answer for ex in task.dev],
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        stop_ids=stop_ids(tokenizer),
        questions=tuple(ex.prompt for ex in task.dev),
    )


def prepare_generation(
    cfg: RunConfig, task: InstructData
) -> tuple[Encoded, Encoded, Generation, PreTrainedModel]:
    """Tokenised train and test splits, evaluation prompts and the causal LM for ``cfg``."""
    tokenizer = load_causal_tokenizer(cfg.model.name)
    train = encode_instruct(task.train, tokenizer, cfg.model.max_length)
    dev = encode_instruct(task.dev, tokenizer, cfg.model.max_length)
    generation = build_generation(
        task,
        tokenizer,
        few_shot=cfg.generate.few_shot,
        max_new_tokens=cfg.generate.max_new_tokens,
        batch_size=cfg.generate.batch_size,
        seed=cfg.seed,
    )
    base = load_causal_lm(
        cfg.model.name, cfg.seed, cfg.model.dtype, cfg.model.gradient_checkpointing
    )
    return train, dev, generation, base
