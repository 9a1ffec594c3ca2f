"""Model calls of evaluation: TokenProb classification and bounded greedy decoding.

TokenProb (Amuro & Char): the predicted label is the one whose first token has the highest
logit right after the prompt, with and without a leading space. One forward pass per example
scores every label at once; the LM head is applied only at the last prompt position.

Few-shot prompts all begin with the same demonstrations: `shared_prefix` runs those tokens
once, and every batch reuses their keys and values instead of recomputing them per row (on the
study's base evaluation the demonstrations are most of each prompt's tokens).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from transformers import DynamicCache, PreTrainedModel, PreTrainedTokenizerBase

from sftcast.prompts import Encoded, pad_right

GenerationMethod = Literal["loop", "generate"]
# a common prefix shorter than this is not worth a forward pass of its own (a zero-shot
# prompt shares little more than bos and a cue)
MIN_SHARED_TOKENS = 8


@dataclass(frozen=True)
class SharedPrefix:
    """The first `length` tokens of every prompt, run once: each layer's keys and values."""

    length: int
    keys_values: list[tuple[torch.Tensor, torch.Tensor]]

    def cache(self, batch: int) -> DynamicCache:
        """A cache holding the prefix for `batch` rows, for one batch to extend."""
        return DynamicCache(
            ddp_cache_data=[(k.expand(batch, -1, -1, -1), v.expand(batch, -1, -1, -1))
                            for k, v in self.keys_values]
        )  # fmt: skip

    def mask(self, suffix_mask: torch.Tensor) -> torch.Tensor:
        """The attention mask of prefix and suffix: the prefix is real in every row."""
        return torch.cat([suffix_mask.new_ones((len(suffix_mask), self.length)), suffix_mask], 1)


@torch.inference_mode()
def shared_prefix(model: PreTrainedModel, prompts: Sequence[Sequence[int]]) -> SharedPrefix | None:
    """The prompts' common first tokens, run through `model` once; None when they share fewer
    than `MIN_SHARED_TOKENS`. Every prompt keeps at least one token after it (the position
    whose prediction is scored)."""
    if not prompts:
        return None
    first, length = prompts[0], min(map(len, prompts)) - 1
    for prompt in prompts[1:]:
        length = next((i for i in range(length) if prompt[i] != first[i]), length)
    if length < MIN_SHARED_TOKENS:
        return None
    device = next(model.parameters()).device
    ids = torch.tensor([list(first[:length])], device=device)
    cache = model.get_decoder()(input_ids=ids, use_cache=True).past_key_values
    return SharedPrefix(length, [(layer.keys, layer.values) for layer in cache.layers])


def _cached(prefix: SharedPrefix | None, batch: int, width: int, device: Any) -> dict[str, Any]:
    """The keyword arguments that run a batch of suffixes after `prefix` (none without one)."""
    if prefix is None:
        return {}
    positions = torch.arange(prefix.length, prefix.length + width, device=device)
    return {"past_key_values": prefix.cache(batch), "position_ids": positions.expand(batch, -1)}


def label_token_ids(tokenizer: PreTrainedTokenizerBase, labels: Sequence[str]) -> list[list[int]]:
    """Per label, the first token of the label with and of it without a leading space.

    Two labels that begin with the same token could not be told apart: that is an error.
    """
    variants: list[list[int]] = []
    owner: dict[int, str] = {}
    for label in labels:
        ids = []
        for text in (" " + label, label):
            first = tokenizer(text, add_special_tokens=False)["input_ids"][0]
            if owner.setdefault(first, label) != label:
                raise ValueError(
                    f"labels {owner[first]!r} and {label!r} share their first token "
                    f"{tokenizer.convert_ids_to_tokens(first)!r}: TokenProb cannot separate them"
                )
            if first not in ids:
                ids.append(first)
        variants.append(ids)
    return variants


@torch.inference_mode()
def tokenprob_scores(
    model: PreTrainedModel,
    prompts: Sequence[Sequence[int]],
    label_ids: Sequence[Sequence[int]],
    *,
    pad_id: int,
    batch_size: int = 32,
    prefix: SharedPrefix | None = None,
) -> torch.Tensor:
    """[examples, labels]: each label's best first-token logit after each prompt (after
    `prefix`, run already, when given)."""
    device = next(model.parameters()).device
    skip = prefix.length if prefix else 0
    prompts = [p[skip:] for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))  # little padding
    flat = torch.tensor([t for ids in label_ids for t in ids], device=device)
    owner = torch.tensor([j for j, ids in enumerate(label_ids) for _ in ids], device=device)
    head = model.get_output_embeddings()
    out = torch.empty(len(prompts), len(label_ids))
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        ids = pad_right([prompts[i] for i in chunk], pad_id).to(device)
        lengths = torch.tensor([len(prompts[i]) for i in chunk], device=device)
        # Right padding under a causal mask never reaches a real token: no mask needed.
        hidden = model.get_decoder()(
            input_ids=ids, **_cached(prefix, len(chunk), ids.shape[1], device)
        ).last_hidden_state
        last = hidden[torch.arange(len(chunk), device=device), lengths - 1]
        logits = head(last)[:, flat].float()
        best = torch.full((len(chunk), len(label_ids)), -torch.inf, device=device)
        best = best.scatter_reduce(1, owner.expand(len(chunk), -1), logits, reduce="amax")
        out[torch.tensor(chunk)] = best.cpu()
    return out


@functools.lru_cache(maxsize=8)
def stop_token_ids(tokenizer: PreTrainedTokenizerBase, stop: str) -> frozenset[int]:
    """Every token whose text contains `stop`, and eos: a row that emits one is finished."""
    texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
    ids = {i for i, text in enumerate(texts) if stop and stop in text}
    return frozenset(ids | ({tokenizer.eos_token_id} - {None}))


def _left_padded(
    prompts: Sequence[Sequence[int]], pad: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Ids and attention mask, left-padded so every row's continuation starts together."""
    width = max(map(len, prompts))
    ids = torch.full((len(prompts), width), pad, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt) :] = torch.tensor(prompt)
        mask[row, width - len(prompt) :] = 1
    return ids.to(device), mask.to(device)


@torch.inference_mode()
def greedy_generate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[Sequence[int]],
    *,
    max_new_tokens: int,
    batch_size: int = 32,
    stop: str = "\n",
    method: GenerationMethod = "loop",
    prefix: SharedPrefix | None = None,
) -> list[str]:
    """Greedy continuations of token-id prompts, cut at `stop` (and eos).

    `loop` (the default) decodes batches with a KV cache and stops a batch once every row has
    emitted eos or a token containing `stop`; `generate` is `model.generate` run to eos or
    `max_new_tokens`, the path before it, kept for the benchmark. Both give the same text.
    The loop continues from `prefix` (run already) when given; `generate` runs whole prompts.
    """
    device = next(model.parameters()).device
    if method == "generate":
        prefix = None
    skip = prefix.length if prefix else 0
    prompts = [p[skip:] for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    texts: list[str] = [""] * len(prompts)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        ids, mask = _left_padded([prompts[i] for i in chunk], tokenizer.pad_token_id, device)
        new = _decode(model, tokenizer, ids, mask, max_new_tokens, stop, method, prefix)
        decoded = tokenizer.batch_decode(new, skip_special_tokens=True)
        for i, text in zip(chunk, decoded, strict=True):
            texts[i] = text.split(stop, 1)[0].strip() if stop else text.strip()
    return texts


def _decode(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    ids: torch.Tensor,
    mask: torch.Tensor,
    max_new_tokens: int,
    stop: str,
    method: GenerationMethod,
    prefix: SharedPrefix | None = None,
) -> torch.Tensor:
    """The new tokens of a left-padded batch. The loop is written by hand instead of calling
    `generate` so that a batch stops once every row has emitted eos or a token containing
    `stop`, checked on token ids found once per tokenizer (`generate`'s `stop_strings` matches
    decoded text instead); it runs at `generate`'s speed (benchmarks/results-candidate.md)."""
    if method == "generate":
        out = model.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            use_cache=True,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        return out[:, ids.shape[1] :]
    stops = torch.tensor(sorted(stop_token_ids(tokenizer, stop)), device=ids.device)
    # the prefix, then each row's left padding: numbered as `generate` numbers the whole
    # prompt, padding in front of the prefix
    cache = DynamicCache() if prefix is None else prefix.cache(len(ids))
    mask = mask if prefix is None else prefix.mask(mask)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, -ids.shape[1] :]
    tokens: list[torch.Tensor] = []
    done = torch.zeros(len(ids), dtype=torch.bool, device=ids.device)
    step_ids = ids
    for _ in range(max_new_tokens):
        logits = model(
            input_ids=step_ids,
            attention_mask=mask,
            position_ids=positions,
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        ).logits[:, -1]
        token = logits.argmax(-1).masked_fill(done, tokenizer.pad_token_id)
        tokens.append(token)
        done |= torch.isin(token, stops)
        if bool(done.all()):
            break
        step_ids = token[:, None]
        mask = torch.cat([mask, mask.new_ones((len(ids), 1))], dim=1)
        positions = positions[:, -1:] + 1
    return torch.stack(tokens, dim=1)


@torch.inference_mode()
def target_logprobs(
    model: PreTrainedModel,
    examples: Sequence[Encoded],
    pad_id: int,
    batch_size: int = 32,
    prefix: SharedPrefix | None = None,
) -> torch.Tensor:
    """Each example's log-probability of its target ids given its prompt ids (one float per
    example): the model's probability of producing exactly that answer. With `prefix` (the
    prompts' first tokens, run already), only the rest of each example is run."""
    device = next(model.parameters()).device
    skip = prefix.length if prefix else 0
    out = torch.empty(len(examples))
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].input_ids))
    for start in range(0, len(order), batch_size):
        chunk = [examples[i] for i in order[start : start + batch_size]]
        ids = pad_right([e.input_ids[skip:] for e in chunk], pad_id).to(device)
        lengths = torch.tensor([len(e.input_ids) - skip for e in chunk], device=device)
        mask = (torch.arange(ids.shape[1], device=device) < lengths[:, None]).long()
        logits = model(
            input_ids=ids,
            attention_mask=mask if prefix is None else prefix.mask(mask),
            **_cached(prefix, len(chunk), ids.shape[1], device),
        ).logits.float()
        logprobs = torch.log_softmax(logits[:, :-1], dim=-1)
        picked = logprobs.gather(-1, ids[:, 1:, None]).squeeze(-1)
        for row, e in enumerate(chunk):
            # the position that predicts the first target token
            first = len(e.prompt_ids) - 1 - skip
            out[order[start + row]] = picked[row, first : first + len(e.target_ids)].sum().cpu()
    return out
