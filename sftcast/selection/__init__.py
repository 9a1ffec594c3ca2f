"""From proxies and a labelled pool to one candidate: judge every predictor on held-out
candidates, rank all candidates with the best one (or the one the config names), and say
whether it beats chance.

The predictors are those of `sftcast.comparator.compare_table`: the comparator (`ltc`), each
single proxy and `proxy_mean`. The one with the best mean pairwise accuracy on held-out
candidates ranks every candidate, labelled or not; promotion is only honest when it beats a
coin (pairwise accuracy > 0.5).

- `config`: the settings (`SelectionConfig`, `ActiveLabelling`) and what a step is given
  (`SelectionSettings`);
- `ranking`: the judgement and the ranking (`select`, `Selection`);
- `report`: the selection table, figures and per-task summary;
- `service`: one task's selection inside the active MLflow run, up to the promotion.
"""

from sftcast.selection.config import ActiveLabelling, SelectionConfig, SelectionSettings
from sftcast.selection.ranking import (
    CHANCE,
    ID,
    TARGET,
    Selection,
    fit_comparator,
    oriented,
    predict_strength,
    select,
)

__all__ = [
    "CHANCE",
    "ID",
    "TARGET",
    "ActiveLabelling",
    "Selection",
    "SelectionConfig",
    "SelectionSettings",
    "fit_comparator",
    "oriented",
    "predict_strength",
    "select",
]
