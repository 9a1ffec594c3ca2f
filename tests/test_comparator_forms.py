"""The comparator chooses its form on its training candidates and does not lose to its inputs."""

from __future__ import annotations

import numpy as np
import pytest

from sftcast.comparator import pairwise_accuracy, random_splits
from sftcast.comparator.baselines import learned_signs
from sftcast.comparator.forms import AUTO_FORMS, FORMS, ChosenComparator, clear_winner, make_form
from sftcast.comparator.metrics import preference_from_scores


def table(kind: str, n: int = 30, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    if kind == "one proxy":  # a single input already orders the candidates well
        return x, x[:, 0] + 0.3 * rng.normal(size=n)
    return x, x[:, 0] + x[:, 1] + 0.3 * rng.normal(size=n)  # two proxies combine


def held_out_accuracy(x: np.ndarray, y: np.ndarray, splits: int = 8) -> tuple[float, float]:
    """Mean held-out pairwise accuracy of the chosen comparator, and of the best single proxy
    (the one with the best mean over the same splits)."""
    chosen, singles = [], []
    for split in random_splits(len(y), splits, 0.6, seed=0):
        f = ChosenComparator().fit(x[split.train], y[split.train]).preference(x[split.test])
        chosen.append(pairwise_accuracy(f, y[split.test]))
        singles.append(
            [
                pairwise_accuracy(preference_from_scores(x[split.test, k]), y[split.test])
                for k in range(x.shape[1])
            ]
        )
    return float(np.mean(chosen)), float(np.mean(singles, axis=0).max())


def test_never_loses_to_its_best_single_input() -> None:
    # the scale of the paper's study: 50 candidates, 30 to train on per split
    chosen, best_single = held_out_accuracy(*table("one proxy", n=50))
    assert chosen >= best_single - 0.005, (chosen, best_single)


def test_beats_every_single_input_when_proxies_combine() -> None:
    chosen, best_single = held_out_accuracy(*table("two proxies"))
    assert chosen > best_single + 0.05, (chosen, best_single)


@pytest.mark.parametrize("form", FORMS)
def test_every_form_is_antisymmetric(form: str) -> None:
    x, y = table("two proxies", n=16)
    f = make_form(form).fit(x, y).preference(x)
    off = ~np.eye(len(y), dtype=bool)
    assert np.array_equal(f[off], (1 - f.T)[off])


def test_the_monotone_form_follows_each_proxy_s_direction_on_the_training_side() -> None:
    x, y = table("two proxies", n=24)
    model = make_form("xgboost_monotone").fit(x, y)
    # the directions learned from the training candidates, not given: the noise columns' too
    signs = learned_signs(x, y)
    assert signs[0] == signs[1] == 1 and -1 in signs[2:]
    base = np.zeros((1, x.shape[1]))
    for k in range(x.shape[1]):
        more = base.copy()
        more[0, k] = 2.0
        f = model.preference(np.vstack([more, base]))
        # never prefers the candidate with less of a proxy that helps, or more of one that hurts
        assert signs[k] * (f[0, 1] - 0.5) >= 0


def test_a_pool_too_small_to_fold_still_ranks_its_candidates() -> None:
    x, y = table("two proxies", n=3)
    chosen = ChosenComparator().fit(x, y)
    assert chosen.form_ == "ensemble"  # the default: `linear` is not among `auto`'s forms
    assert ChosenComparator(forms=("best_proxy", "linear")).fit(x, y).form_ == "linear"
    # where the boosted trees, unable to split 6 pairs, call every pair a tie
    assert np.ptp(make_form("xgboost").fit(x, y).preference(x)) == 0
    assert np.ptp(chosen.preference(x)) > 0


def test_the_choice_stays_among_the_forms_offered() -> None:
    x, y = table("two proxies", n=30)
    offered = ("best_proxy", "linear")
    chosen = ChosenComparator(forms=offered).fit(x, y)
    assert set(chosen.inner_accuracy_) == set(offered)
    assert chosen.form_ in offered
    assert set(ChosenComparator().fit(x, y).inner_accuracy_) == set(AUTO_FORMS)  # the default
    # a pool too small to fold, `linear` not offered: the default form
    assert ChosenComparator(forms=("best_proxy",)).fit(x[:3], y[:3]).form_ == "best_proxy"
    with pytest.raises(ValueError, match="the default must be one of the forms"):
        ChosenComparator(forms=("best_proxy", "linear"), default="xgboost")
    with pytest.raises(ValueError, match="every form one of"):
        ChosenComparator(forms=("best_proxy", "forest"))


def test_the_default_form_stands_unless_clearly_beaten() -> None:
    default = [0.70, 0.72, 0.68, 0.71, 0.69]
    noisy = [0.80, 0.60, 0.75, 0.66, 0.74]  # ahead on the mean, but within its paired spread
    clear = [0.74, 0.76, 0.72, 0.75, 0.73]  # ahead on every fold
    assert clear_winner({"ensemble": default, "best_proxy": noisy}, "ensemble") == "ensemble"
    assert clear_winner({"ensemble": default, "best_proxy": clear}, "ensemble") == "best_proxy"
    picks = {"ensemble": default, "best_proxy": clear, "linear": [a + 0.01 for a in clear]}
    assert clear_winner(picks, "ensemble") == "linear"  # the one that beats it most


@pytest.mark.parametrize("form", ["auto", *FORMS])
def test_a_comparator_survives_its_json_state(form: str) -> None:
    import json

    from sftcast.comparator.model import ComparatorSettings

    x, y = table("two proxies", n=20)
    fitted = ChosenComparator(ComparatorSettings(form=form)).fit(x, y)
    state = json.loads(json.dumps(fitted.state()))  # JSON all the way: no pickle
    loaded = ChosenComparator.from_state(state)
    assert loaded.form_ == fitted.form_
    assert np.allclose(loaded.preference(x), fitted.preference(x))
    assert np.allclose(loaded.proxy_importance(), fitted.proxy_importance())


def test_the_registered_comparator_ranks_as_it_did_when_fitted(tracking) -> None:
    """Logged as code with its JSON state (no pickle), loaded back as a pyfunc model, it gives
    every candidate the strength the fitted comparator gave, from the raw proxy columns."""
    import mlflow
    import pandas as pd

    from sftcast.comparator.model import strength
    from sftcast.registry import register_comparator

    client = tracking()
    x, y = table("two proxies", n=20)
    raw = pd.DataFrame({"ppl": -x[:, 0], "kshot": x[:, 1], "noise": x[:, 2]})
    oriented = raw.to_numpy() * np.array([-1.0, 1.0, 1.0])
    fitted = ChosenComparator().fit(oriented, y)
    with mlflow.start_run():
        version = register_comparator(
            fitted, raw, ["ppl"], "forms-test", "key-1",
            tags={"sftcast.form": fitted.form_}, metrics={},
        )  # fmt: skip
    assert client.get_model_version(version.name, version.version).tags["sftcast.form"]
    model = mlflow.pyfunc.load_model(f"models:/{version.name}/{version.version}")
    # its signature names the proxy columns it ranks from, so a serving layer can check input
    assert model.metadata.get_input_schema().input_names() == ["ppl", "kshot", "noise"]
    predicted = model.predict(raw)
    assert np.allclose(predicted.to_numpy(), strength(fitted.preference(oriented)))


def test_the_form_is_chosen_on_the_training_side_only() -> None:
    """Poisoning the held-out candidates' targets changes the scores, never the form each
    split's comparator chose, nor what it predicts for them."""
    from sftcast.comparator import Candidates, evaluate_split

    x, y = table("two proxies", n=30, seed=4)
    honest = Candidates(ids=np.arange(30).astype(str), target=y, proxies=x,
                        proxy_names=("a", "b", "c", "d"), groups=None, source="t")  # fmt: skip
    for split in random_splits(30, 4, 0.6, seed=1):
        poisoned_target = y.copy()
        poisoned_target[split.test] = -poisoned_target[split.test]  # every held-out pair flips
        poisoned = Candidates(**{**honest.__dict__, "target": poisoned_target})
        (metrics, form), (flipped, poisoned_form) = (
            evaluate_split(honest, split),
            evaluate_split(poisoned, split),
        )
        assert form == poisoned_form
        ltc, ltc_flipped = metrics["ltc"]["pairwise_accuracy"], flipped["ltc"]["pairwise_accuracy"]
        assert ltc + ltc_flipped == pytest.approx(1.0)  # the same predictions, judged backwards
