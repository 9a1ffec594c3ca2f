"""Cheap proxies of a pre-trained candidate, from its weights, a held-out slice of the corpus
and the zoo's records of its run; the comparator learns from them which candidate will be best
after fine-tuning. K-shot proxies come from `sftcast.evaluation.evaluate_base` scores.

Plain library (no ZenML, no MLflow).
"""

from sftcast.proxies.compute import ProxyResult, compute_proxies
from sftcast.proxies.config import ProxyConfig
from sftcast.proxies.heldout import heldout_blocks, sample_heldout_texts
from sftcast.proxies.measures import ProxyInputs, ProxyUnavailable, RunInfo, perplexity
from sftcast.proxies.registry import COMPUTED, PROXIES, ProxySpec, directions, kshot_proxies

__all__ = [
    "COMPUTED",
    "PROXIES",
    "ProxyConfig",
    "ProxyInputs",
    "ProxyResult",
    "ProxySpec",
    "ProxyUnavailable",
    "RunInfo",
    "compute_proxies",
    "directions",
    "heldout_blocks",
    "kshot_proxies",
    "perplexity",
    "sample_heldout_texts",
]
