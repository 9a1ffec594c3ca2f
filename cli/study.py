"""The study's command-line side: the guard that keeps a run or a judgement from writing
over a study measured with other settings, what the study pipeline wrote, and `--judge-only`
(the table on disk judged, no run)."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from cli.options import Options
from cli.render import console, fail
from deploy.guards import ProcessEnvironmentError, check_environment
from deploy.runconfig import RunConfigError, parse_parameters, read_run_config
from deploy.stacks import REPO_ROOT

if TYPE_CHECKING:
    from sftcast.config import RunParameters


def check_study_settings(params: RunParameters, opts: Options) -> None:
    """Fail, before anything is written, when the table at `study.results` was measured with
    other settings than this configuration's: a judgement or a full run would replace its
    evidence (the demo's configuration would write over the committed study), a chunk would
    drop its rows. `--overwrite` says the user means it."""
    from sftcast.comparator import ComparatorInputError
    from sftcast.study import StudyConfig, measured_settings, study_settings

    settings = study_settings(params.sft, params.evaluation, params.proxies)
    results = (params.study or StudyConfig()).results
    if opts.overwrite or not results.is_file():
        return
    try:
        measured = measured_settings(results)
    except ComparatorInputError as err:
        fail(str(err))
    if measured != [settings]:
        fail(
            f"{results.resolve()}: measured with settings {', '.join(measured)}, not "
            f"{settings} ({opts.config}'s sft, evaluation and proxies): this would write over "
            "its study; use the configuration that measured it, or pass --overwrite"
        )


def print_study_outputs(run_id: object, chunk: bool) -> None:
    """What the run's last steps wrote: the table, and (for the whole zoo) its judgement."""
    from zenml.client import Client

    steps = Client().get_pipeline_run(run_id).steps
    measured = len(steps["study_table"].output.load())
    path = steps["write_study_table"].output.load()
    console.print(f"wrote {path} ({measured} candidates measured by this run)", markup=False)
    if chunk:
        console.print(
            "a chunk: the summary and figures come from `study --judge-only` or a run "
            "without --variants (every chunk's steps come from the cache)",
            markup=False,
        )
        return
    for written in steps["judge_study"].output.load():
        console.print(f"wrote {written}", markup=False, soft_wrap=True)


def judge_only(opts: Options) -> None:
    """Judge the table on disk (summary, reports, figures), from the project root as a run
    resolves the configuration's paths."""
    from sftcast.comparator import ComparatorInputError
    from sftcast.study import StudyConfig, judge

    with contextlib.chdir(REPO_ROOT):
        try:
            check_environment()
            raw = read_run_config(opts.config)
            params = parse_parameters(opts.config, raw.get("parameters") or {})
        except (RunConfigError, ProcessEnvironmentError) as err:
            fail(str(err))
        check_study_settings(params, opts)
        study = params.study or StudyConfig()
        if not study.results.is_file():
            fail(f"{study.results}: no study table yet; run `study` first")
        try:
            written = judge(study, params.sft.tasks)
        except ComparatorInputError as err:
            fail(str(err))
    for path in written:
        console.print(f"wrote {path}", markup=False, soft_wrap=True)
