"""The root run configuration (`sftcast.config.RunParameters`): one model for every section,
the cross-section checks in one place, every model frozen; the shipped configs expand to the
variants (and config hashes) they had before they were rewritten as differences."""

from __future__ import annotations

import inspect
import json
import typing
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from pydantic import BaseModel, ValidationError

from pipelines.registry import PIPELINES, known_sections
from sftcast.comparator.model import Comparator, ComparatorSettings
from sftcast.config import RunParameters, SectionConflict
from sftcast.zoo import Variant, ZooConfig
from sftcast.zoo.config import HASHED_WHEN_CHANGED, VariantSettings
from sftcast.zoo.train import _optimizer

REPO = Path(__file__).resolve().parents[1]
# Every variant's config hash as the configs spelled it out in full (commit 880d240): the zoos
# trained then are reused only if these stay the same.
PINNED = json.loads((REPO / "tests/fixtures/variant_hashes.json").read_text())


def parameters(name: str) -> dict[str, Any]:
    return yaml.safe_load((REPO / f"configs/{name}.yaml").read_text())["parameters"]


@pytest.mark.parametrize("name", ["demo", "study"])
def test_shipped_variants_keep_their_config_hashes(name: str) -> None:
    zoo = ZooConfig.from_run_config(REPO / f"configs/{name}.yaml")
    assert {v.name: v.config_hash for v in zoo.variants} == PINNED[name]
    assert [v.name for v in zoo.variants] == list(PINNED[name])  # same order, too
    # ZenML hands a step the section as its dump: validating it again changes nothing
    again = ZooConfig.model_validate(json.loads(zoo.model_dump_json()))
    assert again == zoo


def test_a_variant_is_the_zoo_size_then_the_defaults_then_its_own_keys() -> None:
    small = {"hidden_size": 64, "num_layers": 2, "num_heads": 2, "intermediate_size": 128}
    zoo = ZooConfig.model_validate(
        {
            "model": {**small, "max_length": 64},
            "variant_defaults": {"steps": 10, "learning_rate": 0.004, "seq_len": 64},
            "variants": [
                {"name": "a"},
                {"name": "b", "learning_rate": 0.001, "steps": 4},
                {"name": "c", "model": {**small, "max_length": 128}, "seq_len": 128},
            ],
        }
    )
    a, b, c = zoo.variants
    assert (a.steps, a.learning_rate, a.checkpoint_steps, a.size.max_length) == (10, 4e-3, [10], 64)
    assert (b.steps, b.learning_rate, b.checkpoint_steps) == (4, 1e-3, [4])
    assert c.size.max_length == 128
    with pytest.raises(ValidationError, match=r"variants\.0\n.*seq_len 256 exceeds max_length 64"):
        ZooConfig.model_validate({"model": zoo.model.model_dump(), "variants": [{"name": "x"}]})


def test_pretraining_hyperparameters_enter_the_hash_only_when_changed() -> None:
    base = Variant(name="x")
    defaults = {k: VariantSettings.model_fields[k].default for k in HASHED_WHEN_CHANGED}
    assert Variant(name="x", **defaults).config_hash == base.config_hash
    changed = {
        "warmup_ratio": 0.1,
        "min_lr_ratio": 0.0,
        "betas": (0.9, 0.99),
        "weight_decay": 0.0,
        "grad_clip": 0.5,
    }
    assert set(changed) == set(HASHED_WHEN_CHANGED)
    hashes = {Variant(name="x", **{k: v}).config_hash for k, v in changed.items()}
    assert len(hashes) == len(changed) and base.config_hash not in hashes


def test_pretraining_hyperparameters_reach_the_optimizer() -> None:
    variant = Variant(
        name="x", steps=100, warmup_ratio=0.2, min_lr_ratio=0.3, betas=(0.8, 0.9), weight_decay=0.01
    )
    optimizer, scheduler = _optimizer(torch.nn.Linear(4, 4), variant)
    matrices, vectors = optimizer.param_groups
    assert (matrices["weight_decay"], vectors["weight_decay"]) == (0.01, 0)
    assert matrices["betas"] == (0.8, 0.9)
    schedule = scheduler.lr_lambdas[0]
    assert schedule(10) == pytest.approx(0.5) and schedule(20) == pytest.approx(1.0)
    assert schedule(100) == pytest.approx(0.3)


def test_comparator_settings_reach_the_classifier() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(8, 2)), rng.normal(size=8)
    settings = ComparatorSettings(n_estimators=7, max_depth=2, learning_rate=0.3)
    model = Comparator.from_settings(settings, random_state=1).fit(x, y).model_
    assert model.get_booster().num_boosted_rounds() == 7
    assert (model.max_depth, model.learning_rate, model.random_state) == (2, 0.3, 1)
    default = Comparator().fit(x, y).model_
    assert default.get_booster().num_boosted_rounds() == ComparatorSettings().n_estimators


def test_root_sections_are_what_the_pipelines_take() -> None:
    """Each pipeline takes its sections with the root's own models; no root section is left
    that no pipeline takes (a run configuration holding it would be silently ignored)."""
    assert set(RunParameters.model_fields) == known_sections()
    root = typing.get_type_hints(RunParameters)
    for pipeline in PIPELINES.values():
        hints = typing.get_type_hints(pipeline.entrypoint)
        for name in inspect.signature(pipeline.entrypoint).parameters:
            assert root[name] == hints[name] | None, (pipeline.name, name)


def _models(model: type[BaseModel]) -> set[type[BaseModel]]:
    """`model` and every model its fields hold, however nested (lists, dicts, unions)."""
    found = {model}

    def walk(annotation: Any) -> None:
        model = annotation if isinstance(annotation, type) else None
        if model is not None and issubclass(model, BaseModel) and model not in found:
            found.update(_models(model))
        for arg in typing.get_args(annotation):
            walk(arg)

    for field in model.model_fields.values():
        walk(field.annotation)
    return found


def test_every_config_model_is_frozen_and_strict() -> None:
    models = _models(RunParameters)
    assert {"ZooConfig", "Variant", "VariantSettings", "TaskConfig", "ComparatorSettings"} <= {
        m.__name__ for m in models
    }
    for model in models:
        assert model.model_config.get("frozen"), model.__name__
        assert model.model_config.get("extra") == "forbid", model.__name__
        # a learning rate of .inf or .nan is a mistake, never a setting
        assert model.model_config.get("allow_inf_nan") is False, model.__name__
    run = RunParameters.model_validate(parameters("demo"))
    with pytest.raises(ValidationError, match="frozen"):
        run.zoo.root = Path("elsewhere")  # type: ignore[misc, union-attr]


@pytest.mark.parametrize(
    ("edit", "key"),
    [
        (lambda p: p["selection"].update(labelled=["zoo:nope@1"] * 4), "selection.labelled"),
        (
            lambda p: p["sft"].update(replicate_candidates=["zoo:nope@1"]),
            "sft.replicate_candidates",
        ),
    ],
)
def test_cross_section_checks_name_the_setting(edit: Any, key: str) -> None:
    demo = parameters("demo")
    RunParameters.model_validate(demo)  # the demo itself agrees with itself
    edit(demo)
    with pytest.raises(ValidationError) as caught:
        RunParameters.model_validate(demo)
    conflict = caught.value.errors()[0]["ctx"]["error"]
    assert isinstance(conflict, SectionConflict) and conflict.key == key
    assert "zoo:nope@1" in conflict.problem
    # without the zoo nothing is known about the candidates: no conflict
    RunParameters.model_validate({k: v for k, v in demo.items() if k != "zoo"})


def test_literal_types_reject_what_is_not_a_task_split_or_format() -> None:
    for section, settings, where in [
        ("sft", {"tasks": ["cls", "qa"]}, ("sft", "tasks", 1)),
        ("evaluation", {"split": "dev"}, ("evaluation", "split")),
        ("evaluation", {"formats": ["train", "chat"]}, ("evaluation", "formats", 1)),
        ("evaluation", {"shots": {"qa": 1}}, ("evaluation", "shots", "qa", "[key]")),
        ("data", {"tasks": {"qa": {}}}, ("data", "tasks", "qa", "[key]")),
    ]:
        with pytest.raises(ValidationError) as caught:
            RunParameters.model_validate({section: settings})
        assert caught.value.errors()[0]["loc"] == where


def test_replicated_candidates_may_be_named_by_pattern() -> None:
    study = yaml.safe_load((REPO / "configs" / "study.yaml").read_text())["parameters"]
    every = {**study, "sft": {**study["sft"], "replicate_candidates": ["*"]}}
    params = RunParameters.model_validate(every)
    assert params.sft and params.zoo
    assert all(params.sft.extra_seeds(u) == [1, 2] for u in params.zoo.all_candidates())
    some = {**study, "sft": {**study["sft"], "replicate_candidates": ["zoo:clm-lr1e-3@*"]}}
    sft = RunParameters.model_validate(some).sft
    assert sft is not None
    assert sft.extra_seeds("zoo:clm-lr1e-3@50") == [1, 2] and not sft.extra_seeds("zoo:x@50")
    nothing = {**study, "sft": {**study["sft"], "replicate_candidates": ["zoo:nope-*"]}}
    with pytest.raises(ValidationError, match=r"\['zoo:nope-\*'\] name or match no candidate"):
        RunParameters.model_validate(nothing)


@pytest.mark.parametrize(
    ("config", "earlier", "candidates"),
    [
        ("heldout.yaml", [], 42),
        ("heldout2.yaml", ["heldout.yaml"], 30),
        ("heldout3.yaml", ["heldout.yaml", "heldout2.yaml"], 30),
        ("heldout4.yaml", ["heldout.yaml", "heldout2.yaml", "heldout3.yaml"], 30),
        ("heldout5.yaml", ["heldout.yaml", "heldout2.yaml", "heldout3.yaml", "heldout4.yaml"], 30),
        ("heldout6.yaml", [f"heldout{s}.yaml" for s in ("", "2", "3", "4", "5")], 30),
    ],
)
def test_a_held_out_zoo_is_the_study_but_for_its_variants_and_its_table(
    config: str, earlier: list[str], candidates: int
) -> None:
    def parameters(name: str) -> dict[str, Any]:
        return yaml.safe_load((REPO / "configs" / name).read_text())["parameters"]

    def variants(params: dict[str, Any]) -> set[str]:
        return {v["name"] for v in params["zoo"].pop("variants")}

    study, heldout = parameters("study.yaml"), parameters(config)
    heldout_variants = variants(heldout)
    # no candidate of the study, nor of an earlier held-out zoo, is held out again
    for other in [variants(study), *(variants(parameters(name)) for name in earlier)]:
        assert not other & heldout_variants
    # judged by methods fitted on the study's table too
    assert heldout["study"].pop("transfer_from") == study["study"]["results"]
    assert heldout["study"].pop("results") != study["study"].pop("results")
    # measured with the code frozen before it: a commit on main's history, recorded
    assert len(heldout["study"].pop("freeze_commit")) == 40
    assert heldout == study  # the same data, recipes, evaluation, proxies and judgement
    zoo = ZooConfig.from_run_config(REPO / "configs" / config)
    assert len(zoo.all_candidates()) == candidates
