"""How a task example becomes text: a prompt and the target the model must produce.

Three formats, as in Amuro & Char's prompt-format study:
- `train`: the format SFT trains on (`Question: ...\\nAnswer: Paris`);
- `plain`: bare input, newline, output;
- `instruction`: an instruction, the input and a response header.

SFT and evaluation share this module so that "zero-shot in the training format" means exactly
the text the model was fine-tuned on, down to the token boundary between prompt and target:
prompt and target are always tokenized separately and concatenated.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from transformers import PreTrainedTokenizerBase

from sftcast.data.schema import NEWS_TOPICS

PromptFormat = Literal["train", "plain", "instruction"]
FORMATS: tuple[str, ...] = ("train", "plain", "instruction")
PromptFormat = Literal["train", "plain", "instruction"]
DEMO_SEPARATOR = "\n\n"

_INSTRUCTIONS = {
    "cbqa": "Answer the question in a few words.",
    "rag": "Answer the question in a few words, using the passage.",
    "cls": f"Classify the news article into one of: {', '.join(NEWS_TOPICS)}.",
}


@dataclass(frozen=True)
class Rendered:
    """prompt = context + query + cue. Only `context` (an article, a passage) may be shortened
    to fit; the query and the cue are never cut, so the model is always asked the question."""

    context: str
    query: str
    cue: str
    target: str

    @property
    def prompt(self) -> str:
        return self.context + self.query + self.cue


def _fields(task: str, row: Mapping[str, Any], fmt: str) -> tuple[str, str]:
    """(context, query) of the input."""
    labelled = fmt == "train"
    if task == "cls":
        return (f"Article: {row['text']}" if labelled else row["text"]), ""
    if task == "rag":
        if labelled:
            return f"Passage: {row['passage']}", f"\nQuestion: {row['question']}"
        return row["passage"], f"\n{row['question']}"
    if task == "cbqa":
        return "", (f"Question: {row['question']}" if labelled else row["question"])
    raise ValueError(f"unknown task {task!r}")


def target_text(task: str, row: Mapping[str, Any]) -> str:
    """The gold output: the label, or the first (canonical) answer."""
    return row["label"] if task == "cls" else row["answers"][0]


def render(task: str, row: Mapping[str, Any], fmt: str = "train") -> Rendered:
    if fmt not in FORMATS:
        raise ValueError(f"unknown prompt format {fmt!r}; expected one of {', '.join(FORMATS)}")
    context, query = _fields(task, row, fmt)
    target = target_text(task, row)
    if fmt == "train":
        cue = "\nTopic:" if task == "cls" else "\nAnswer:"
        return Rendered(context, query, cue, " " + target)  # BPE words carry a leading space
    if fmt == "plain":
        return Rendered(context, query, "\n", target)
    header = f"### Instruction:\n{_INSTRUCTIONS[task]}\n\n### Input:\n"
    return Rendered(header + context, query, "\n\n### Response:\n", target)


@dataclass(frozen=True)
class Encoded:
    """Token ids of prompt and target; `input_ids = prompt_ids + target_ids`."""

    prompt_ids: list[int]
    target_ids: list[int]

    @property
    def input_ids(self) -> list[int]:
        return self.prompt_ids + self.target_ids


def pad_right(rows: Sequence[Sequence[int]], pad_id: int) -> torch.Tensor:
    """[len(rows), longest] int64 ids, each row followed by `pad_id`."""
    ids = torch.full((len(rows), max(map(len, rows))), pad_id, dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    return ids


def _ids(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]


def encode_example(
    tokenizer: PreTrainedTokenizerBase,
    task: str,
    row: Mapping[str, Any],
    fmt: str = "train",
    *,
    max_length: int,
    demos: Sequence[Mapping[str, Any]] = (),
    demo_context_tokens: int = 48,
    training: bool = True,
) -> Encoded:
    """bos, optional few-shot demonstrations, the prompt; then the target and eos.

    For evaluation (`training=False`) the target still comes back but takes no room: the
    prompt alone must fit in `max_length`.

    Too-long inputs lose the end of their context, never the query, cue or target.
    Demonstrations keep at most `demo_context_tokens` of their context each.
    """
    prefix = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    for demo in demos:
        shown = render(task, demo, fmt)
        prefix += _ids(tokenizer, shown.context)[:demo_context_tokens]
        prefix += _ids(tokenizer, shown.query + shown.cue + shown.target + DEMO_SEPARATOR)
    r = render(task, row, fmt)
    tail, target = _ids(tokenizer, r.query + r.cue), _ids(tokenizer, r.target)
    if training:
        target = [*target, tokenizer.eos_token_id]
    context = _ids(tokenizer, r.context)
    budget = max_length - len(prefix) - len(tail) - (len(target) if training else 0)
    if budget < min(1, len(context)):
        raise ValueError(
            f"max_length {max_length} leaves no room for the {task} input after "
            f"{len(demos)} demonstration(s) and a {len(target)}-token target; raise max_length "
            "or lower the number of shots"
        )
    return Encoded(prefix + context[:budget] + tail, target)
