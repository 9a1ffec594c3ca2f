"""Every proxy by name: where it comes from, which direction is better, what it measures.

Directions, for the comparator's `lower_is_better`:
- Perplexities: lower is better, as everywhere.
- `loss_slope`: higher (flatter) is better. In a zoo with a fixed step budget a steeply falling
  loss marks an undertrained checkpoint (an early one, or a too-low learning rate), which is
  the worse starting point for fine-tuning. The caveat: a rising loss (divergence) is ranked
  best by this sign alone; the comparator sees the raw value and can learn otherwise.
- `tokens_seen`: more pre-training is better.
- `weight_norm`: higher is better. From a small initialisation (std 0.02) the weights' RMS
  grows with how far training has moved them: more steps, larger learning rates (on the tiny
  test zoo: 0.069 at init, 0.083 at step 10, 0.090 at step 20, perplexity falling throughout).
  The zoo's runs are short and far from converged, so that dominates; the opposite argument
  (large norms of over-trained models fine-tune worse, lost plasticity) is about a regime the
  zoo does not reach.
- `kshot_*`: few-shot scores of `sftcast.evaluation.evaluate_base`, higher is better.
- `answer_loss_*`, `probe_*`: fine-tuning probes, `sftcast.proxies.probe` (directions there).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from sftcast.evaluation.evaluate import PRIMARY_METRIC, primary
from sftcast.proxies import measures
from sftcast.proxies.measures import ProxyInputs

# name template -> higher is better; `sftcast.proxies.probe` says what each reads out
PROBE_READOUTS = {
    "answer_loss_{task}": False,
    "probe_loss_{task}": False,
    "probe_drop_{task}": True,
    "probe_{task}": True,
}
Source = Literal["heldout", "weights", "run", "eval", "probe"]


@dataclass(frozen=True)
class ProxySpec:
    name: str
    higher_is_better: bool
    source: Source  # held-out blocks, weights, the zoo's run records, evaluate_base, a probe
    description: str
    fn: Callable[[ProxyInputs], float] | None = None  # None: computed by evaluation, not here


_SPECS = (
    ProxySpec(
        "ppl_clm",
        False,
        "heldout",
        "causal-LM perplexity on the held-out slice",
        measures.ppl_clm,
    ),
    ProxySpec(
        "ppl_sc",
        False,
        "heldout",
        "perplexity of the span-corruption targets (0.15, span 3) on the held-out slice",
        measures.ppl_sc,
    ),
    ProxySpec(
        "loss_slope",
        True,
        "run",
        "slope of the training loss per step over the last 20% of steps",
        measures.loss_slope,
    ),
    ProxySpec(
        "tokens_seen",
        True,
        "run",
        "pre-training tokens processed up to the checkpoint",
        measures.tokens_seen,
    ),
    ProxySpec(
        "weight_norm",
        True,
        "weights",
        "global L2 norm of the weights / sqrt(parameters)",
        measures.weight_norm,
    ),
    *(
        ProxySpec(
            f"kshot_{task}",
            True,
            "eval",
            f"few-shot {metric} on {task} (evaluate_base)",
        )
        for task, metric in sorted(PRIMARY_METRIC.items())
    ),
    *(
        ProxySpec(template.format(task=task), higher, "probe", f"fine-tuning probe on {task}")
        for task in sorted(PRIMARY_METRIC)
        for template, higher in PROBE_READOUTS.items()
    ),
)
PROXIES: dict[str, ProxySpec] = {spec.name: spec for spec in _SPECS}
# What `compute_proxies` computes: every proxy that does not come from evaluate_base.
COMPUTED: tuple[str, ...] = tuple(name for name, spec in PROXIES.items() if spec.fn is not None)


def directions() -> dict[str, bool]:
    """Proxy name → higher_is_better, for every proxy (the k-shot ones included)."""
    return {name: spec.higher_is_better for name, spec in PROXIES.items()}


def lower_is_better(proxies: Sequence[str]) -> list[str]:
    """Those of `proxies` whose lower values are better (a name the registry does not know,
    such as a column of the user's own table, counts as higher is better)."""
    return [p for p in proxies if not directions().get(p, True)]


def kshot_proxies(base_scores: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """`evaluate_base` scores → `kshot_<task>`: the primary metric of each task scored."""
    proxies = {}
    for task, scores in base_scores.items():
        if task not in PRIMARY_METRIC:
            raise ValueError(f"unknown task {task!r}; expected one of {list(PRIMARY_METRIC)}")
        proxies[f"kshot_{task}"] = primary(task, scores)
    return proxies
