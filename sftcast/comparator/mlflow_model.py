"""The registered comparator as an MLflow pyfunc model, logged as code (MLflow's "models from
code"): nothing is pickled; the comparator comes back from its JSON state.

    model = mlflow.pyfunc.load_model("models:/sftcast-comparator-cls/1")
    strength = model.predict(candidates)  # one row per candidate, the proxy columns

returns each candidate's predicted strength (higher is better), as `select` ranks them. This
file is what MLflow stores and runs on loading; sftcast must be installed where it loads.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow.models import set_model
from mlflow.pyfunc import PythonModel

from sftcast.comparator.forms import ChosenComparator
from sftcast.comparator.model import strength
from sftcast.comparator.table import direction_signs

STATE_ARTIFACT = "comparator"


class ComparatorModel(PythonModel):
    def load_context(self, context: Any) -> None:
        state = json.loads(Path(context.artifacts[STATE_ARTIFACT]).read_text())
        self.proxies = state["proxies"]
        self.signs = direction_signs(self.proxies, state["lower_is_better"])
        self.comparator = ChosenComparator.from_state(state["comparator"])

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> pd.Series:
        values = strength(self.preference(model_input))
        return pd.Series(values, index=model_input.index, name="strength")

    def preference(self, candidates: pd.DataFrame) -> np.ndarray:
        """(n, n) matrix of P(row i beats row j) over `candidates`' proxy columns: what
        `watch` reads a new checkpoint's chances against named candidates from."""
        return self.comparator.preference(
            candidates[self.proxies].to_numpy(dtype=float) * self.signs
        )


set_model(ComparatorModel())
