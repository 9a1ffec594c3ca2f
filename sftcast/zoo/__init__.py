"""The zoo: tiny Llama models pre-trained on the corpus along the study's variant axes.

Plain library (no ZenML, no MLflow): the pipeline's steps call `pretrain_variant` and log the
metrics it hands to `on_log`.
"""

from sftcast.zoo.config import BASE_MIXTURE, ModelSize, Variant, ZooConfig
from sftcast.zoo.fetch import load_candidate, resolve_candidate
from sftcast.zoo.objectives import OBJECTIVES, ObjectiveBatch, SpecialIds, get_objective
from sftcast.zoo.tokenizer import load_tokenizer, special_ids, train_tokenizer
from sftcast.zoo.train import PretrainResult, build_zoo, checkpoint_dir, pretrain_variant
from sftcast.zoo.verify import CandidateError

__all__ = [
    "BASE_MIXTURE",
    "OBJECTIVES",
    "CandidateError",
    "ModelSize",
    "ObjectiveBatch",
    "PretrainResult",
    "SpecialIds",
    "Variant",
    "ZooConfig",
    "build_zoo",
    "checkpoint_dir",
    "get_objective",
    "load_candidate",
    "load_tokenizer",
    "pretrain_variant",
    "resolve_candidate",
    "special_ids",
    "train_tokenizer",
]
