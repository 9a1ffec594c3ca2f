"""Every pipeline by its CLI command name, and the parameter sections they take."""

from __future__ import annotations

import inspect

from zenml.pipelines.pipeline_definition import Pipeline

from pipelines.data import data_pipeline
from pipelines.selection import select_pipeline
from pipelines.sft import sft_pipeline
from pipelines.study import study_pipeline
from pipelines.watch import watch_pipeline
from pipelines.zoo import zoo_pipeline

PIPELINES = {
    "data": data_pipeline,
    "zoo": zoo_pipeline,
    "sft": sft_pipeline,
    "select": select_pipeline,
    "study": study_pipeline,
    "watch": watch_pipeline,
}


def pipeline_parameters(pipeline: Pipeline) -> set[str]:
    """The parameter sections `pipeline` takes: its entrypoint's arguments."""
    return set(inspect.signature(pipeline.entrypoint).parameters)


def known_sections() -> set[str]:
    """Every parameter section some pipeline takes: what a run configuration may hold. They
    are the sections of `sftcast.config.RunParameters` (tests/test_config.py holds them equal),
    so the root model has no section that no pipeline reads."""
    return set().union(*(pipeline_parameters(p) for p in PIPELINES.values()))
