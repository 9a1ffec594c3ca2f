"""Model calls of evaluation: TokenProb classification and bounded greedy decoding.

TokenProb (Amuro & Char): the predicted label is the one whose first token has the highest
logit right after the prompt, with and without a leading space. One forward pass per example
scores every label at once; the LM head is applied only at the last prompt position.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Literal

import torch
from transformers import DynamicCache, PreTrainedModel, PreTrainedTokenizerBase

from sftcast.prompts import Encoded, pad_right

GenerationMethod = Literal["loop", "generate"]


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
) -> torch.Tensor:
    """[examples, labels]: each label's best first-token logit after each prompt."""
    device = next(model.parameters()).device
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
        hidden = model.get_decoder()(input_ids=ids).last_hidden_state
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
) -> list[str]:
    """Greedy continuations of token-id prompts, cut at `stop` (and eos).

    `loop` (the default) decodes batches with a KV cache and stops a batch once every row has
    emitted eos or a token containing `stop`; `generate` is `model.generate` run to eos or
    `max_new_tokens`, the path before it, kept for the benchmark. Both give the same text.
    """
    device = next(model.parameters()).device
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    texts: list[str] = [""] * len(prompts)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        ids, mask = _left_padded([prompts[i] for i in chunk], tokenizer.pad_token_id, device)
        new = _decode(model, tokenizer, ids, mask, max_new_tokens, stop, method)
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
    positions = (mask.cumsum(-1) - 1).clamp(min=0)  # as `generate` numbers left-padded rows
    cache = DynamicCache()
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
    model: PreTrainedModel, examples: Sequence[Encoded], pad_id: int, batch_size: int = 32
) -> torch.Tensor:
    """Each example's log-probability of its target ids given its prompt ids (one float per
    example): the model's probability of producing exactly that answer."""
    device = next(model.parameters()).device
    out = torch.empty(len(examples))
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].input_ids))
    for start in range(0, len(order), batch_size):
        chunk = [examples[i] for i in order[start : start + batch_size]]
        ids = pad_right([e.input_ids for e in chunk], pad_id).to(device)
        lengths = torch.tensor([len(e.input_ids) for e in chunk], device=device)
        mask = (torch.arange(ids.shape[1], device=device) < lengths[:, None]).long()
        logits = model(input_ids=ids, attention_mask=mask).logits.float()
        logprobs = torch.log_softmax(logits[:, :-1], dim=-1)
        picked = logprobs.gather(-1, ids[:, 1:, None]).squeeze(-1)
        for row, e in enumerate(chunk):
            first = len(e.prompt_ids) - 1  # the position that predicts the first target token
            out[order[start + row]] = picked[row, first : first + len(e.target_ids)].sum().cpu()
    return out
