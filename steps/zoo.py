"""Zoo steps: the shared tokenizer, one pre-training per variant, one fetch per candidate."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import mlflow
from zenml import step

from materializers import FolderMaterializer
from sftcast.data import load_corpus
from sftcast.tracking import safe_tags
from sftcast.zoo import ZooConfig, pretrain_variant, resolve_candidate
from sftcast.zoo.fetch import install_run, parse_zoo_uri
from sftcast.zoo.train import train_zoo_tokenizer
from steps.lineage import MLFLOW_STEP, track


@step(**MLFLOW_STEP, output_materializers=FolderMaterializer)
def zoo_tokenizer(corpus: Path, zoo: ZooConfig) -> Annotated[Path, "tokenizer"]:
    """Byte-level BPE on the corpus train split, shared by every variant."""
    track(zoo.tokenizer_vocab_size, zoo.model, params={"vocab_size": zoo.tokenizer_vocab_size})
    return train_zoo_tokenizer(zoo, load_corpus(corpus))


@step(extra={"gpu": True}, **MLFLOW_STEP, output_materializers=FolderMaterializer)
def pretrain(
    corpus: Path, tokenizer: Path, zoo: ZooConfig, variant: str
) -> Annotated[Path, "zoo_run"]:
    """Pre-train one variant (or reuse it: same config hash), saving its checkpoints."""
    spec = zoo.variant(variant)
    track(spec, params=spec.model_dump(mode="json", exclude={"model"}))
    result = pretrain_variant(
        spec,
        load_corpus(corpus),
        tokenizer,
        zoo.root.resolve(),
        on_log=lambda step, metrics: mlflow.log_metrics(metrics, step=step),
    )
    mlflow.log_metrics(
        {
            "n_params": result.n_params,
            "tokens_seen": result.tokens_seen,
            "tokens_per_s": result.tokens_per_s,
            "wall_time_s": result.wall_time_s,
            "final_loss": result.loss_history[-1],
        }
    )
    mlflow.set_tags(
        safe_tags({"sftcast.reused": result.reused, "sftcast.resumed_from": result.resumed_from})
    )
    mlflow.log_artifact(str(result.checkpoints[max(result.checkpoints)] / "README.md"))
    return result.run_dir


@step(**MLFLOW_STEP, output_materializers=FolderMaterializer)
def fetch_candidate(
    uri: str, zoo: ZooConfig, zoo_run: Path | None = None, content_hash: str = ""
) -> Annotated[Path, "candidate"]:
    """A candidate URI as a verified local Hugging Face folder (safetensors only; pickle-only
    weights converted to safetensors when `zoo.allow_pickle`). `content_hash`, when the caller
    knows it (`watch`), is part of the cache key: a folder rewritten in place is fetched anew."""
    flags = {"trust_remote_code": zoo.trust_remote_code, "allow_pickle": zoo.allow_pickle}
    track(uri, params={"candidate": uri, **flags})
    root = zoo.root.resolve()
    if zoo_run is not None:  # the run arrived as an artifact: on k8s this pod's disk is empty
        install_run(zoo_run, root, zoo.variant(parse_zoo_uri(uri)[0]).run_name)
    path = resolve_candidate(uri, zoo_root=root, **flags)
    mlflow.set_tags(safe_tags({"sftcast.candidate": uri}))
    return path
