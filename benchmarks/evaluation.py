"""Classification scoring speed on this machine's CPU: TokenProb (`sftcast.evaluation.scoring.
tokenprob_scores`, one forward pass per example scores every label) against scoring each label
with its own forward pass (prompt + label tokens, the label's summed log-probability).

Both score the same prompts, sorted by length and right-padded 32 sequences per forward pass
with no attention mask (right padding under a causal mask never reaches a real token), and
apply the LM head only where they read it, so the ratio is about the number of forward passes
alone. The model is the tiny candidate of `benchmarks.sft`, fine-tuned on cls first so
that the two methods' predictions mean something (its weights do not change the timings).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable, Sequence

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from benchmarks.sft import BATCH, MAX_LENGTH, candidate, on_cpu
from sftcast.data.schema import NEWS_TOPICS
from sftcast.evaluation.scoring import label_token_ids, tokenprob_scores
from sftcast.prompts import encode_example, pad_right
from sftcast.sft import SFTConfig, finetune

ROUNDS = 3
ROWS = 256  # cls test rows scored per round
# The fine-tuning before scoring: few steps leave a model that predicts one label whatever
# the article, and the two methods' constant answers then disagree for no interesting reason.
SFT_ROWS, SFT_EPOCHS, SFT_LEARNING_RATE = 1000, 1, 2e-3
EVAL_BATCH = 32


@torch.inference_mode()
def per_label_scores(
    model: PreTrainedModel,
    prompts: Sequence[Sequence[int]],
    labels: Sequence[Sequence[int]],
    *,
    pad_id: int,
    batch_size: int = EVAL_BATCH,
) -> torch.Tensor:
    """[examples, labels]: summed log-probability of each label's tokens after each prompt,
    one sequence (prompt + label) per example and label."""
    seqs = [(i, j) for i in range(len(prompts)) for j in range(len(labels))]
    seqs.sort(key=lambda s: len(prompts[s[0]]) + len(labels[s[1]]))
    head = model.get_output_embeddings()
    out = torch.empty(len(prompts), len(labels))
    for start in range(0, len(seqs), batch_size):
        chunk = seqs[start : start + batch_size]
        rows = [list(prompts[i]) + list(labels[j]) for i, j in chunk]
        ids = pad_right(rows, pad_id)
        hidden = model.get_decoder()(input_ids=ids).last_hidden_state
        # Row r reads its label's k-th token at position len(prompt) - 1 + k.
        at = [
            (r, len(prompts[i]) - 1 + k, t)
            for r, (i, j) in enumerate(chunk)
            for k, t in enumerate(labels[j])
        ]
        row, pos, target = (torch.tensor(x) for x in zip(*at, strict=True))
        logp = head(hidden[row, pos]).float().log_softmax(-1)
        summed = torch.zeros(len(chunk)).index_add_(0, row, logp[torch.arange(len(at)), target])
        out[[i for i, _ in chunk], [j for _, j in chunk]] = summed
    return out


def timed(fn: Callable[[], torch.Tensor]) -> tuple[float, torch.Tensor]:
    start = time.perf_counter()
    scores = fn()
    return time.perf_counter() - start, scores


def run() -> str:
    cand = candidate()
    tokenizer = AutoTokenizer.from_pretrained(cand.folder)
    labels = [tokenizer(" " + t, add_special_tokens=False)["input_ids"] for t in NEWS_TOPICS]
    first = label_token_ids(tokenizer, NEWS_TOPICS)
    budget = MAX_LENGTH - max(map(len, labels))  # prompt + label fits the model's positions
    rows = cand.task_data["cls"]["test"].to_list()[:ROWS]
    prompts = [
        encode_example(tokenizer, "cls", r, "train", max_length=budget, training=False).prompt_ids
        for r in rows
    ]
    gold = torch.tensor([NEWS_TOPICS.index(r["label"]) for r in rows])
    pad = tokenizer.pad_token_id
    with tempfile.TemporaryDirectory() as out, on_cpu():
        config = SFTConfig(
            output_dir=out,
            epochs=SFT_EPOCHS,
            batch_size=BATCH,
            max_length=MAX_LENGTH,
            learning_rate=SFT_LEARNING_RATE,
        )
        train = cand.task_data["cls"]["train"].to_list()[:SFT_ROWS]
        tuned = finetune(cand.folder, "cls", train, config, progress=False)
        model = AutoModelForCausalLM.from_pretrained(tuned.model_dir).eval()
    methods = {
        "tokenprob": lambda: tokenprob_scores(
            model, prompts, first, pad_id=pad, batch_size=EVAL_BATCH
        ),
        "per_label": lambda: per_label_scores(
            model, prompts, labels, pad_id=pad, batch_size=EVAL_BATCH
        ),
    }
    tokenprob_scores(model, prompts[:32], first, pad_id=pad)  # warm-up, untimed
    per_label_scores(model, prompts[:8], labels, pad_id=pad)
    times: dict[str, list[float]] = {m: [] for m in methods}
    preds: dict[str, torch.Tensor] = {}
    for r in range(ROUNDS):
        for name in list(methods)[r % 2 :] + list(methods)[: r % 2]:
            seconds, scores = timed(methods[name])
            times[name].append(seconds)
            preds[name] = scores.argmax(1)
    return report(times, preds, gold, labels, prompts, tuned.final_loss)


def report(
    times: dict[str, list[float]],
    preds: dict[str, torch.Tensor],
    gold: torch.Tensor,
    labels: Sequence[Sequence[int]],
    prompts: Sequence[Sequence[int]],
    sft_loss: float,
) -> str:
    n = len(prompts)
    rate = {m: n / statistics.median(t) for m, t in times.items()}
    per_round = [p / t for t, p in zip(times["tokenprob"], times["per_label"], strict=True)]
    ratio = statistics.median(per_round)
    agree = float((preds["tokenprob"] == preds["per_label"]).float().mean())
    acc = {m: float((p == gold).float().mean()) for m, p in preds.items()}
    passes = {"tokenprob": -(-n // EVAL_BATCH), "per_label": -(-n * len(labels) // EVAL_BATCH)}
    lines = [
        "## Evaluation scoring (`benchmarks/evaluation.py`)",
        "",
        f"{n} cls test rows (train prompt format, {sum(map(len, prompts)) / n:.0f} prompt "
        f"tokens on average), {len(labels)} labels of "
        + "/".join(str(len(ids)) for ids in labels)
        + " tokens (with their leading space). Model: the SFT benchmark's candidate fine-tuned "
        f"with `finetune` on {SFT_ROWS} cls train rows ({SFT_EPOCHS} "
        f"epoch{'s' * (SFT_EPOCHS > 1)}, lr {SFT_LEARNING_RATE:g}, final loss "
        f"{sft_loss:.2f}), fp32. "
        "TokenProb: `tokenprob_scores`, one forward pass per example, each label's best "
        "first-token logit (with and without a leading space). Per-label: a forward pass per "
        "example and label over prompt + label tokens, the label's summed log-probability. "
        f"Both: {EVAL_BATCH} sequences per pass, sorted by length, LM head only where read. "
        f"Median of {ROUNDS} rounds alternating which runs first.",
        "",
        "| method | forward passes | examples/s | accuracy |",
        "|---|---|---|---|",
    ]
    for m in times:
        lines.append(f"| {m} | {passes[m]} | {rate[m]:,.1f} | {acc[m]:.1%} |")
    lines += [
        "",
        f"TokenProb / per-label: median of rounds **{ratio:.2f}x** ("
        + ", ".join(f"{x:.2f}x" for x in per_round)
        + f"; target >= 3x on a {len(labels)}-label task: "
        f"{'met' if ratio >= 3 else 'NOT met'}). The two methods' predictions agree on "
        f"{agree:.1%} of the rows.",
    ]
    return "\n".join(lines) + "\n"
