"""The zoo pipeline: validated data, the shared tokenizer, every variant pre-trained (one step
each, so Kubernetes fans them out), every checkpoint fetched and verified as a candidate, and
the external candidates of `zoo.candidates` fetched and verified alongside."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from typing import Any

from zenml import pipeline

from pipelines.data import data_stage
from sftcast.data import DataConfig
from sftcast.zoo import ZooConfig
from steps.zoo import fetch_candidate, pretrain, zoo_tokenizer


def step_slug(uri: str) -> str:
    """A candidate URI as a readable step-id fragment: `zoo:clm-lr4e-3@150` -> `clm-lr4e-3_150`.
    An external candidate's is `ext_`, the end of its URI and 8 hex digits of the URI's sha256:
    short, and distinct for distinct URIs (`/a/b` and `/a_b` alike)."""
    if uri.startswith("zoo:"):
        return _readable(uri.removeprefix("zoo:"))
    digest = hashlib.sha256(uri.encode()).hexdigest()[:8]
    tail = _readable(uri.removeprefix("hf:"))[-40:].strip("_.-")
    return f"ext_{tail}_{digest}" if tail else f"ext_{digest}"


def _readable(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text.replace("@", "_")).strip("_.-")


def zoo_stage(
    corpus: Any, zoo: ZooConfig, after: list[str], only: Callable[[str], bool] | None = None
) -> dict[str, Any]:
    """Wire tokenizer, pre-training and fetches (of the variants `only` keeps, by name);
    returns candidate URI -> its artifact."""
    tokenizer = zoo_tokenizer(corpus=corpus, zoo=zoo, after=after)
    candidates = {}
    for variant in zoo.variants:
        if only is not None and not only(variant.name):
            continue
        run = pretrain(
            corpus=corpus,
            tokenizer=tokenizer,
            zoo=zoo,
            variant=variant.name,
            id=f"pretrain_{variant.name}",
        )
        for step in variant.checkpoint_steps:
            uri = f"zoo:{variant.name}@{step}"
            candidates[uri] = fetch_candidate(
                uri=uri, zoo=zoo, zoo_run=run, id=f"fetch_{variant.name}_{step}"
            )
    for uri in zoo.candidates:  # the user's own checkpoints: verified, never trained here
        candidates[uri] = fetch_candidate(uri=uri, zoo=zoo, id=f"fetch_{step_slug(uri)}")
    return candidates


@pipeline(name="sftcast_zoo")
def zoo_pipeline(data: DataConfig, zoo: ZooConfig) -> None:
    stage = data_stage(data)
    zoo_stage(stage.corpus, zoo, stage.validations)
