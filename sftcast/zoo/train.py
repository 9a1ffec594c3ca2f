"""Pre-training one zoo variant on the CPU: a lean loop, checkpoints, reuse and resumption.

Why the loop is fast: documents are packed into full blocks (no padding compute), attention
runs through SDPA's causal kernel without a mask, the LM head and cross-entropy are fused and
computed only where there are labels (`sftcast.zoo.loss`), AdamW is the fused CPU kernel, and
each step is a handful of Python calls around large matmuls.

Layout: `<zoo_root>/<variant>-<hash8>/checkpoint-<step>/` holds a Hugging Face folder per
checkpoint step; `sftcast_run.json` next to them records the run. While a run is unfinished,
`resume.pt` holds the optimizer, scheduler and RNG state of its last checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel
from transformers import (
    LlamaForCausalLM,
    PreTrainedTokenizerBase,
    get_cosine_with_min_lr_schedule_with_warmup,
)

from sftcast.device import autocast, compile_decoder, resolve_device
from sftcast.progress import progress_bar
from sftcast.zoo.config import Variant, ZooConfig
from sftcast.zoo.data import Blocks, encode_documents, length_filter, pack_blocks, train_texts
from sftcast.zoo.loss import linear_cross_entropy
from sftcast.zoo.model import (
    CHECKPOINT_META,
    TMP_PREFIX,
    WEIGHTS_FILE,
    build_model,
    count_parameters,
    model_card,
    save_checkpoint,
)
from sftcast.zoo.objectives import IGNORE_INDEX, ObjectiveBatch, get_objective
from sftcast.zoo.tokenizer import (
    load_tokenizer,
    special_ids,
    texts_digest,
    tokenizer_fingerprint,
    train_tokenizer,
)

LogFn = Callable[[int, dict[str, float]], None]

RUN_MANIFEST = "sftcast_run.json"
RESUME_FILE = "resume.pt"


class PretrainResult(BaseModel):
    variant: str
    config_hash: str
    run_dir: Path
    checkpoints: dict[int, Path]  # step -> Hugging Face folder
    n_params: int
    tokens_seen: int  # input tokens the model processed (padding excluded)
    loss_history: list[float]  # training loss of every step
    tokens_per_s: float  # over the training steps, checkpoint saving excluded
    wall_time_s: float  # data preparation, training and saving, summed over resumptions
    reused: bool = False  # found complete on disk, nothing trained
    resumed_from: int | None = None  # the checkpoint step an interrupted run continued from


def checkpoint_dir(zoo_root: str | Path, variant: Variant, step: int) -> Path:
    return Path(zoo_root) / variant.run_name / f"checkpoint-{step}"


def data_fingerprint(tokenizer_dir: str | Path, texts: Mapping[str, list[str]]) -> str:
    """What a run's weights depend on besides its configuration: the tokenizer and the text."""
    h = hashlib.sha256(tokenizer_fingerprint(tokenizer_dir).encode())
    for domain, docs in texts.items():
        h.update(f"{domain}:{texts_digest(docs)}".encode())
    return h.hexdigest()


def pretrain_variant(
    variant: Variant,
    corpus: Mapping[str, Any],
    tokenizer_dir: str | Path,
    zoo_root: str | Path,
    on_log: LogFn | None = None,
    *,
    progress: bool = True,
    log_every: int = 10,
) -> PretrainResult:
    """Pre-train `variant` on the corpus train split, saving each of its checkpoint steps.

    A run already complete on disk (same config hash, same tokenizer and text) is returned
    without training; an interrupted one continues from its last checkpoint. `on_log(step,
    metrics)` is called every `log_every` steps, after any checkpoint of that step is saved.
    """
    device = resolve_device()  # first: a GPU step on a machine without one fails before work
    wall_start = time.perf_counter()
    run_dir = Path(zoo_root) / variant.run_name
    texts = train_texts(corpus)
    fingerprint = data_fingerprint(tokenizer_dir, texts)
    done = _completed_run(run_dir, variant, fingerprint)
    if done is not None:
        return done

    tokenizer = load_tokenizer(tokenizer_dir)
    docs = length_filter(
        encode_documents(texts, tokenizer, variant.domain_tag), variant.length_band
    )
    blocks = pack_blocks(
        docs, variant.mixture, variant.steps * variant.batch_size, variant.seq_len, variant.seed
    )
    state = _load_resume_state(run_dir, variant, fingerprint)
    if state is None:
        shutil.rmtree(run_dir, ignore_errors=True)  # stale pieces of another configuration
        run_dir.mkdir(parents=True)
        model = build_model(variant.size, tokenizer, seed=variant.seed)
    else:
        for stale in run_dir.glob(f"{TMP_PREFIX}*"):  # half-written by the interrupted run
            shutil.rmtree(stale, ignore_errors=True)
        model = LlamaForCausalLM.from_pretrained(
            checkpoint_dir(zoo_root, variant, state["step"]), attn_implementation="sdpa"
        )
    model.to(device)
    compile_decoder(model, device)
    optimizer, scheduler = _optimizer(model, variant)
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])

    loop = _Loop(variant, model, tokenizer, blocks, optimizer, scheduler, state, device)
    loop.run(run_dir, fingerprint, on_log, progress, log_every, wall_start)
    return _result(run_dir, loop, reused=False)


def _optimizer(
    model: torch.nn.Module, variant: Variant
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    matrices = [p for p in model.parameters() if p.ndim >= 2]
    vectors = [p for p in model.parameters() if p.ndim < 2]  # norms: no weight decay
    optimizer = torch.optim.AdamW(
        [
            {"params": matrices, "weight_decay": variant.weight_decay},
            {"params": vectors, "weight_decay": 0},
        ],
        lr=variant.learning_rate,
        betas=variant.betas,
        fused=True,  # one kernel over all parameters instead of a loop of small ops
    )
    scheduler = get_cosine_with_min_lr_schedule_with_warmup(
        optimizer,
        num_warmup_steps=max(1, round(variant.warmup_ratio * variant.steps)),
        num_training_steps=variant.steps,
        min_lr_rate=variant.min_lr_ratio,
    )
    return optimizer, scheduler


def lm_loss(model: LlamaForCausalLM, batch: ObjectiveBatch) -> torch.Tensor:
    """Mean next-token loss over the labelled positions (labels in Hugging Face convention)."""
    # Padding is only ever on the right and attention is causal, so no real token attends to a
    # pad: the mask can be left out, and SDPA takes its fast `is_causal` kernel.
    hidden = model.get_decoder()(input_ids=batch.input_ids).last_hidden_state
    targets = batch.labels[:, 1:]
    keep = targets != IGNORE_INDEX
    weight = model.get_output_embeddings().weight
    return linear_cross_entropy(hidden[:, :-1][keep], weight, targets[keep])


class _Loop:
    """The training loop's state, so checkpoints and resumption read and write one place."""

    def __init__(
        self,
        variant: Variant,
        model: LlamaForCausalLM,
        tokenizer: PreTrainedTokenizerBase,
        blocks: Blocks,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LambdaLR,
        state: dict[str, Any] | None,
        device: torch.device,
    ) -> None:
        self.variant, self.model, self.tokenizer = variant, model, tokenizer
        self.device = device
        self.blocks, self.optimizer, self.scheduler = blocks, optimizer, scheduler
        self.n_params = count_parameters(model)
        state = state or {}
        self.step: int = state.get("step", 0)
        self.resumed_from: int | None = state.get("step")
        self.losses: list[float] = list(state.get("loss_history", []))
        self.tokens_seen: int = state.get("tokens_seen", 0)
        self.train_time: float = state.get("train_time_s", 0.0)
        self.wall_before: float = state.get("wall_time_s", 0.0)
        self.checkpoints: dict[int, str] = {
            int(k): v for k, v in state.get("checkpoints", {}).items()
        }
        self.wall_time = self.wall_before

    def run(
        self,
        run_dir: Path,
        fingerprint: str,
        on_log: LogFn | None,
        progress: bool,
        log_every: int,
        wall_start: float,
    ) -> None:
        v = self.variant
        ids = special_ids(self.tokenizer)
        objective = get_objective(v.objective)
        self.model.train()
        window: list[float] = []
        bar = progress_bar(v.steps, v.name, "step", initial=self.step, enabled=progress)
        with bar:
            while self.step < v.steps:
                t0 = time.perf_counter()
                rows = self.blocks.tokens[self.step * v.batch_size : (self.step + 1) * v.batch_size]
                # Objective randomness is a function of (seed, step): resumption needs no RNG state.
                batch = objective(rows, np.random.default_rng([v.seed, self.step]), ids, v.seq_len)
                window.append(self._update(batch))
                self.step += 1
                self.tokens_seen += int(batch.attention_mask.sum())
                self.losses.append(window[-1])
                self.train_time += time.perf_counter() - t0
                if self.step in v.checkpoint_steps:
                    self._save(run_dir, fingerprint, wall_start)
                bar.update(1)
                if self.step % log_every == 0 or self.step == v.steps:
                    metrics = {
                        "loss": sum(window) / len(window),
                        "lr": self.scheduler.get_last_lr()[0],
                        "tokens_seen": float(self.tokens_seen),
                        "tokens_per_s": self.tokens_per_s,
                    }
                    window.clear()
                    bar.set_postfix(
                        loss=f"{metrics['loss']:.3f}", tok_s=f"{self.tokens_per_s:,.0f}"
                    )
                    if on_log is not None:
                        on_log(self.step, metrics)

    def _update(self, batch: ObjectiveBatch) -> float:
        if self.device.type != "cpu":
            batch = batch.to(self.device)
        with autocast(self.device):
            loss = lm_loss(self.model, batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(
            self.model.parameters(), self.variant.grad_clip, foreach=True
        )
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.item()

    @property
    def tokens_per_s(self) -> float:
        return self.tokens_seen / self.train_time if self.train_time else 0.0

    def _save(self, run_dir: Path, fingerprint: str, wall_start: float) -> None:
        v = self.variant
        card = model_card(
            v, self.step, self.tokens_seen, self.n_params, self.losses, self.blocks.domain_tokens
        )
        meta = {"variant": v.name, "config_hash": v.config_hash, "step": self.step}
        folder = save_checkpoint(
            self.model, self.tokenizer, run_dir / f"checkpoint-{self.step}", card, meta
        )
        self.checkpoints[self.step] = folder.name
        self.wall_time = self.wall_before + time.perf_counter() - wall_start
        complete = self.step == v.steps
        if not complete:
            _atomic_torch_save(self._resume_state(v, fingerprint), run_dir / RESUME_FILE)
        _atomic_write_json(run_dir / RUN_MANIFEST, self._manifest(fingerprint, complete))
        if complete:
            (run_dir / RESUME_FILE).unlink(missing_ok=True)

    def _resume_state(self, v: Variant, fingerprint: str) -> dict[str, Any]:
        return {
            "config_hash": v.config_hash,
            "data_fingerprint": fingerprint,
            "step": self.step,
            "data_position": self.step * v.batch_size,  # blocks consumed
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "loss_history": self.losses,
            "tokens_seen": self.tokens_seen,
            "train_time_s": self.train_time,
            "wall_time_s": self.wall_time,
            "checkpoints": self.checkpoints,
        }

    def _manifest(self, fingerprint: str, complete: bool) -> dict[str, Any]:
        return {
            "variant": self.variant.model_dump(mode="json"),
            "config_hash": self.variant.config_hash,
            "data_fingerprint": fingerprint,
            "complete": complete,
            "checkpoints": {str(s): name for s, name in sorted(self.checkpoints.items())},
            "n_params": self.n_params,
            "tokens_seen": self.tokens_seen,
            "tokens_per_s": self.tokens_per_s,
            "wall_time_s": self.wall_time,
            "resumed_from": self.resumed_from,
            "domain_tokens": self.blocks.domain_tokens,
            "loss_history": self.losses,
        }


def _result(run_dir: Path, loop: _Loop, reused: bool) -> PretrainResult:
    return PretrainResult(
        variant=loop.variant.name,
        config_hash=loop.variant.config_hash,
        run_dir=run_dir,
        checkpoints={s: run_dir / name for s, name in sorted(loop.checkpoints.items())},
        n_params=loop.n_params,
        tokens_seen=loop.tokens_seen,
        loss_history=loop.losses,
        tokens_per_s=loop.tokens_per_s,
        wall_time_s=loop.wall_time,
        reused=reused,
        resumed_from=loop.resumed_from,
    )


def _completed_run(run_dir: Path, variant: Variant, fingerprint: str) -> PretrainResult | None:
    """The run's result if it is complete on disk for this configuration and data."""
    try:
        manifest = json.loads((run_dir / RUN_MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if not (
        manifest.get("complete")
        and manifest.get("config_hash") == variant.config_hash
        and manifest.get("data_fingerprint") == fingerprint
    ):
        return None
    checkpoints = {int(s): run_dir / name for s, name in manifest["checkpoints"].items()}
    if sorted(checkpoints) != variant.checkpoint_steps or not all(
        (p / WEIGHTS_FILE).is_file() and (p / CHECKPOINT_META).is_file()
        for p in checkpoints.values()
    ):
        return None
    return PretrainResult(
        variant=variant.name,
        config_hash=variant.config_hash,
        run_dir=run_dir,
        checkpoints=checkpoints,
        n_params=manifest["n_params"],
        tokens_seen=manifest["tokens_seen"],
        loss_history=manifest["loss_history"],
        tokens_per_s=manifest["tokens_per_s"],
        wall_time_s=manifest["wall_time_s"],
        reused=True,
        resumed_from=manifest.get("resumed_from"),
    )


def _load_resume_state(run_dir: Path, variant: Variant, fingerprint: str) -> dict[str, Any] | None:
    path = run_dir / RESUME_FILE
    if not path.is_file():
        return None
    state = torch.load(path, weights_only=True)  # no pickled code, only tensors and containers
    step = state.get("step")
    if (
        state.get("config_hash") != variant.config_hash
        or state.get("data_fingerprint") != fingerprint
        or not (run_dir / f"checkpoint-{step}" / WEIGHTS_FILE).is_file()
    ):
        return None
    return state


def _atomic_torch_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _atomic_write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


def train_zoo_tokenizer(zoo: ZooConfig, corpus: Mapping[str, Any]) -> Path:
    """Train (or reuse) the tokenizer every variant of the zoo shares; returns its folder."""
    texts = train_texts(corpus)
    train_tokenizer(
        [t for docs in texts.values() for t in docs],
        zoo.tokenizer_vocab_size,
        zoo.tokenizer_dir.resolve(),
        model_max_length=zoo.model.max_length,
    )
    return zoo.tokenizer_dir.resolve()


def build_zoo(
    zoo: ZooConfig, corpus: Mapping[str, Any], *, progress: bool = True
) -> list[PretrainResult]:
    """Train (or reuse) the shared tokenizer, then pre-train (or reuse) every variant."""
    train_zoo_tokenizer(zoo, corpus)
    return [
        pretrain_variant(v, corpus, zoo.tokenizer_dir, zoo.root, progress=progress)
        for v in zoo.variants
    ]
