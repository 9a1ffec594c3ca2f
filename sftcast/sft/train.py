"""Fine-tune one candidate on one task: full or LoRA, placed by `accelerate`.

The loop reuses the zoo's fast path: length-bucketed batches with no attention mask (right
padding under a causal mask never reaches a real token), the LM head and cross-entropy fused
and computed only at the answer tokens (`sftcast.zoo.train.lm_loss`), fused AdamW. On a GPU
`accelerate` runs it under bf16 autocast where the device supports it.

The result is a Hugging Face folder (safetensors, tokenizer, model card) written atomically to
`<output_dir>/<task>/<sft_key>`, where the key hashes the candidate's weights, the training
settings, the seed and the training rows: the same key on disk is reused, never retrained.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from peft import LoraConfig, get_peft_model
from pydantic import BaseModel
from transformers import AutoModelForCausalLM, AutoTokenizer, get_linear_schedule_with_warmup

from sftcast.device import compile_decoder, resolve_device
from sftcast.progress import progress_bar
from sftcast.prompts import Encoded
from sftcast.sft.config import SFTConfig
from sftcast.sft.data import bucketed_batches, collate, encode_split, sample_rows
from sftcast.tracking import config_hash
from sftcast.zoo.model import CHECKPOINT_META, WEIGHTS_FILE, file_sha256, save_checkpoint
from sftcast.zoo.objectives import IGNORE_INDEX, ObjectiveBatch
from sftcast.zoo.tokenizer import texts_digest
from sftcast.zoo.train import lm_loss

LogFn = Callable[[int, dict[str, float]], None]
BETAS = (0.9, 0.999)


class SFTDivergedError(RuntimeError):
    """The training loss became NaN or infinite: nothing was saved or registered."""


class Fidelity(BaseModel):
    """The validation loss a fine-tune had reached at a fraction of its steps."""

    fraction: float
    step: int
    loss: float
    seconds: float  # training seconds up to that step


class SFTResult(BaseModel):
    task: str
    candidate: str  # the URI it was fetched by
    model_dir: Path
    sft_key: str  # candidate weights + settings + seed + rows: the folder's name
    config_hash: str  # the training settings alone (SFTConfig.training_hash)
    seed: int
    method: str
    steps: int
    n_examples: int
    trainable_params: int
    tokens_seen: int  # non-padding input tokens processed
    tokens_per_s: float
    loss_history: list[float]
    wall_time_s: float
    device: str
    reused: bool = False
    fidelities: list[Fidelity] = []  # at `SFTConfig.fidelities`, when asked for

    @property
    def final_loss(self) -> float:
        tail = self.loss_history[-10:]
        return sum(tail) / len(tail)


def candidate_digest(candidate_dir: Path) -> str:
    """The weights' sha256: recorded by the zoo, computed otherwise."""
    meta = candidate_dir / CHECKPOINT_META
    if meta.is_file():
        digest = json.loads(meta.read_text()).get("weights_sha256", {}).get(WEIGHTS_FILE)
        if digest:
            return digest
    return "".join(file_sha256(p) for p in sorted(candidate_dir.glob("*.safetensors")))


def sft_key(
    candidate_dir: Path,
    task: str,
    rows: Sequence[Mapping[str, Any]],
    config: SFTConfig,
    seed: int,
    validation: Sequence[Mapping[str, Any]] = (),
) -> str:
    """The fine-tune's identity; the rows its fidelities read are part of it when it has any."""
    parts = [candidate_digest(candidate_dir), task, config.training_hash(seed), _digest(rows)]
    return config_hash(*parts, *([_digest(validation)] if validation else []))


def _digest(rows: Sequence[Mapping[str, Any]]) -> str:
    return texts_digest(json.dumps(dict(r), sort_keys=True, default=str) for r in rows)


@dataclass
class Fitted:
    """A model trained in memory by `fit`, not saved: a fine-tune before `finetune` saves it,
    or a probe that is thrown away."""

    model: Any  # the trained model (LoRA merged), on the training device
    tokenizer: Any
    losses: list[float]
    tokens: int  # non-padding input tokens processed
    train_time_s: float
    trainable_params: int
    n_examples: int
    device: str
    fidelities: list[Fidelity] = field(default_factory=list)


def fit(
    candidate_dir: Path,
    task: str,
    rows: Sequence[Mapping[str, Any]],
    config: SFTConfig,
    seed: int,
    *,
    candidate_uri: str | None = None,
    trust_remote_code: bool = False,
    on_log: LogFn | None = None,
    progress: bool = True,
    log_every: int = 10,
    loaded: tuple[Any, Any] | None = None,
    validation: Sequence[Mapping[str, Any]] = (),
) -> Fitted:
    """Train the candidate in `candidate_dir` on exactly `rows` of `task` with `config`'s
    recipe, in memory; `loaded` is its (model, tokenizer) when the caller has them already
    (a probe), and that model is trained in place. With `config.fidelities`, the loss on the
    `validation` rows is read at those fractions of the steps."""
    device = resolve_device()  # first: a GPU step without a GPU fails before any work
    model, tokenizer = loaded or (
        None,
        AutoTokenizer.from_pretrained(candidate_dir, trust_remote_code=trust_remote_code),
    )
    examples = encode_split(tokenizer, task, rows, config.prompt_format, config.max_length)
    if not examples:
        raise ValueError(f"{task}: no training rows to fine-tune on")
    with torch.random.fork_rng(devices=[]):  # LoRA's init and nothing else sees this seed
        torch.manual_seed(seed)
        model = _load_model(candidate_dir, config, trust_remote_code, model)
    run = _prepare(model, config, device, len(examples))
    what = f"{task}: SFT of {candidate_uri or candidate_dir}"
    held_out = encode_split(tokenizer, task, validation, config.prompt_format, config.max_length)
    if config.fidelities and not held_out:
        raise ValueError(f"{task}: fidelities {config.fidelities} need validation rows to read")
    rungs = {max(1, round(f * run.total)): f for f in config.fidelities}
    fidelities: list[Fidelity] = []
    with progress_bar(run.total, f"sft {task}", "step", enabled=progress) as bar:
        for epoch in range(config.epochs):
            for batch in bucketed_batches(
                examples, config.batch_size, seed * 1000 + epoch, tokenizer.pad_token_id
            ):
                _step(run, batch, config.grad_clip, what)
                if len(run.losses) in rungs:
                    loss = examples_loss(run.body, held_out, tokenizer.pad_token_id)
                    run.model.train()
                    fidelities.append(
                        Fidelity(
                            fraction=rungs[len(run.losses)], step=len(run.losses), loss=loss,
                            seconds=run.train_time,
                        )
                    )  # fmt: skip
                bar.update(1)
                if len(run.losses) % log_every == 0 or len(run.losses) == run.total:
                    _log(run, epoch, log_every, bar, on_log)
    merged = run.accelerator.unwrap_model(run.model)
    if config.method == "lora":  # one plain folder: loads without peft, like any candidate
        merged = merged.merge_and_unload()
    return Fitted(
        model=merged,
        tokenizer=tokenizer,
        losses=run.losses,
        tokens=run.tokens,
        train_time_s=run.train_time,
        trainable_params=sum(p.numel() for p in run.trainable),
        n_examples=len(examples),
        device=str(run.accelerator.device),
        fidelities=fidelities,
    )


@dataclass
class _Run:
    """A model prepared by `accelerate` with its optimizer and schedule, and what it has
    trained so far."""

    model: Any
    body: Any  # what `lm_loss` calls: the model itself, or the one under LoRA's wrapper
    trainable: list[torch.nn.Parameter]
    optimizer: Any
    scheduler: Any
    accelerator: Accelerator
    total: int  # optimizer steps over all epochs
    losses: list[float] = field(default_factory=list)
    tokens: int = 0  # non-padding input tokens processed
    train_time: float = 0.0


def answer_loss(
    model: Any,
    tokenizer: Any,
    task: str,
    rows: Sequence[Mapping[str, Any]],
    sft: SFTConfig,
    batch_size: int = 32,
) -> float:
    """Mean loss per answer token of `rows` in the SFT prompt format (the SFT objective)."""
    examples = encode_split(tokenizer, task, rows, sft.prompt_format, sft.max_length)
    return examples_loss(model, examples, tokenizer.pad_token_id, batch_size)


@torch.no_grad()
def examples_loss(
    model: Any, examples: Sequence[Encoded], pad_id: int, batch_size: int = 32
) -> float:
    """Mean loss per answer token of encoded examples; leaves the model in eval mode."""
    model.eval()
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for start in range(0, len(examples), batch_size):
        batch = collate(examples[start : start + batch_size], pad_id).to(device)
        n = int((batch.labels[:, 1:] != IGNORE_INDEX).sum())
        total += float(lm_loss(model, batch)) * n
        count += n
    return total / count


def _prepare(model: Any, config: SFTConfig, device: torch.device, n_examples: int) -> _Run:
    """Fused AdamW under a linear warmup schedule, placed by `accelerate` (bf16 autocast on a
    GPU that supports it)."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    total = math.ceil(n_examples / config.batch_size) * config.epochs
    optimizer = torch.optim.AdamW(
        trainable,
        lr=config.learning_rate,
        betas=BETAS,
        weight_decay=config.weight_decay,
        fused=True,  # one kernel over all parameters instead of a loop of small ops
    )
    scheduler = get_linear_schedule_with_warmup(
        optimizer, round(config.warmup_ratio * total), total
    )
    bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    accelerator = Accelerator(cpu=device.type == "cpu", mixed_precision="bf16" if bf16 else "no")
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    model.train()
    body = model.get_base_model() if hasattr(model, "get_base_model") else model
    compile_decoder(body, device)
    return _Run(model, body, trainable, optimizer, scheduler, accelerator, total)


def _step(run: _Run, batch: ObjectiveBatch, grad_clip: float, what: str) -> None:
    """One optimizer step on `batch`; a non-finite loss stops before it touches the weights."""
    t0 = time.perf_counter()
    batch = batch.to(run.accelerator.device)
    with run.accelerator.autocast():
        loss = lm_loss(run.body, batch)
    value = loss.item()
    if not math.isfinite(value):
        raise SFTDivergedError(
            f"{what} diverged: loss {value} at step {len(run.losses) + 1}/{run.total} "
            f"(learning rate {run.scheduler.get_last_lr()[0]:.2e}); nothing was saved or "
            "registered. Lower sft.learning_rate or raise sft.warmup_ratio."
        )
    run.accelerator.backward(loss)
    run.accelerator.clip_grad_norm_(run.trainable, grad_clip)
    run.optimizer.step()
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    run.losses.append(value)
    run.tokens += int(batch.attention_mask.sum())
    run.train_time += time.perf_counter() - t0


def _log(run: _Run, epoch: int, log_every: int, bar: Any, on_log: LogFn | None) -> None:
    """The last `log_every` steps' mean loss, the throughput so far and the learning rate, on
    the progress bar and to `on_log`."""
    window = run.losses[-log_every:]
    metrics = {
        "loss": sum(window) / len(window),
        "tokens_per_s": run.tokens / run.train_time,
        "lr": run.scheduler.get_last_lr()[0],
        "epoch": epoch,
    }
    bar.set_postfix(loss=f"{metrics['loss']:.3f}", tok_s=f"{metrics['tokens_per_s']:,.0f}")
    if on_log is not None:
        on_log(len(run.losses), metrics)


def finetune(
    candidate_dir: Path,
    task: str,
    train_rows: Sequence[Mapping[str, Any]],
    config: SFTConfig,
    *,
    candidate_uri: str | None = None,
    seed: int | None = None,
    trust_remote_code: bool = False,
    on_log: LogFn | None = None,
    progress: bool = True,
    log_every: int = 10,
    validation_rows: Sequence[Mapping[str, Any]] = (),
) -> SFTResult:
    """Fine-tune the candidate in `candidate_dir` on a seeded sample of `train_rows` of
    `task` and save it under its SFT key (reused, not retrained, when already there); with
    `config.fidelities`, read on a seeded sample of `validation_rows`."""
    resolve_device()  # a GPU step without a GPU fails even when the result is on disk
    start = time.perf_counter()
    seed = config.seed if seed is None else seed
    rows = sample_rows(train_rows, config.train_examples, config.seed)
    validation = (
        sample_rows(validation_rows, config.fidelity_rows, config.seed) if config.fidelities else []
    )
    key = sft_key(candidate_dir, task, rows, config, seed, validation)
    out_dir = Path(config.output_dir).resolve() / task / key
    done = _completed(out_dir, key)
    if done is not None:
        return done
    fitted = fit(
        candidate_dir, task, rows, config, seed, candidate_uri=candidate_uri,
        trust_remote_code=trust_remote_code, on_log=on_log, progress=progress,
        log_every=log_every, validation=validation,
    )  # fmt: skip
    result = SFTResult(
        task=task,
        candidate=candidate_uri or str(candidate_dir),
        model_dir=out_dir,
        sft_key=key,
        config_hash=config.training_hash(seed),
        seed=seed,
        method=config.method,
        steps=len(fitted.losses),
        n_examples=fitted.n_examples,
        trainable_params=fitted.trainable_params,
        tokens_seen=fitted.tokens,
        tokens_per_s=fitted.tokens / fitted.train_time_s,
        loss_history=fitted.losses,
        wall_time_s=time.perf_counter() - start,
        device=fitted.device,
        fidelities=fitted.fidelities,
    )
    meta = {"kind": "sft", "sft_result": result.model_dump(mode="json")}
    save_checkpoint(fitted.model.cpu(), fitted.tokenizer, out_dir, _card(result, config), meta)
    return result


def _load_model(
    candidate_dir: Path, config: SFTConfig, trust_remote_code: bool, model: Any = None
) -> Any:
    model = model or AutoModelForCausalLM.from_pretrained(
        candidate_dir,
        use_safetensors=True,
        attn_implementation="sdpa",
        trust_remote_code=trust_remote_code,
    )
    if config.method == "full":
        return model
    lora = config.lora
    return get_peft_model(
        model,
        LoraConfig(
            task_type="CAUSAL_LM",
            r=lora.r,
            lora_alpha=lora.alpha,
            lora_dropout=lora.dropout,
            target_modules=list(lora.target_modules),
        ),
    )


def _completed(out_dir: Path, key: str) -> SFTResult | None:
    try:
        meta = json.loads((out_dir / CHECKPOINT_META).read_text())
    except (OSError, ValueError):
        return None
    if meta.get("kind") != "sft" or not (out_dir / WEIGHTS_FILE).is_file():
        return None
    result = SFTResult.model_validate(meta["sft_result"])
    if result.sft_key != key:
        return None
    return result.model_copy(update={"reused": True, "model_dir": out_dir})


def _card(result: SFTResult, config: SFTConfig) -> str:
    settings = json.dumps(config.model_dump(mode="json", exclude={"output_dir"}), indent=1)
    return f"""---
library_name: transformers
pipeline_tag: text-generation
tags: [sftcast, sftcast-sft, {result.task}]
---
# {result.candidate} fine-tuned on {result.task}

Supervised fine-tuning by `sftcast.sft` ({result.method}, seed {result.seed}): {result.steps}
steps over {result.n_examples} examples, {result.tokens_seen:,} tokens, final loss
{result.final_loss:.4f}. SFT key `{result.sft_key}`.

```json
{settings}
```
"""
