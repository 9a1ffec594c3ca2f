"""Model calls of evaluation: TokenProb classification and bounded greedy decoding.

TokenProb (Amuro & Char): the predicted label is the one whose first token has the highest
logit right after the prompt, with and without a leading space. One forward pass per example
scores every label at once; the LM head is applied only at the last prompt position.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from sftcast.prompts import pad_right


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


@torch.inference_mode()
def greedy_generate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[Sequence[int]],
    *,
    max_new_tokens: int,
    batch_size: int = 32,
    stop: str = "\n",
) -> list[str]:
    """Greedy continuations of token-id prompts, cut at `stop` (and eos)."""
    device = next(model.parameters()).device
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    texts: list[str] = [""] * len(prompts)
    pad = tokenizer.pad_token_id
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        width = max(len(prompts[i]) for i in chunk)
        # Left padding so every row's continuation starts at the same position.
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, i in enumerate(chunk):
            n = len(prompts[i])
            ids[row, width - n :] = torch.tensor(prompts[i])
            mask[row, width - n :] = 1
        out = model.generate(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            use_cache=True,
            pad_token_id=pad,
            eos_token_id=tokenizer.eos_token_id,
        )
        decoded = tokenizer.batch_decode(out[:, width:], skip_special_tokens=True)
        for i, text in zip(chunk, decoded, strict=True):
            texts[i] = text.split(stop, 1)[0].strip() if stop else text.strip()
    return texts
