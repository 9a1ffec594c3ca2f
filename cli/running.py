"""Running one pipeline: the pre-flight (cheap checks first, before ZenML is imported), the
run or dry run on a stack, Ctrl-C, and a failure summarised by each failed step's own error."""

from __future__ import annotations

import contextlib
import sys
from typing import Any

from cli.options import Options
from cli.render import console, fail, print_placement, print_selection
from deploy.guards import (
    ProcessEnvironmentError,
    atomic_zenml_config_writes,
    check_environment,
    stop_on_signals,
)
from deploy.runconfig import RunConfig, RunConfigError, read_run_config
from deploy.stacks import (
    REPO_ROOT,
    StackFile,
    StackFileError,
    check_kubernetes_contexts,
    load_stack_file,
    stores_root,
    tracking_uri,
)  # fmt: skip
from sftcast.tracking import TrackingUnavailable, check_tracking_uri


class PipelineFailed(RuntimeError):
    """A pipeline run failed; the message holds each failed step's own error."""


def run(opts: Options, name: str) -> None:
    """Run (or dry-run) one pipeline from the project root, so that a run configuration's
    relative paths mean the same wherever the command starts; known failures become a
    message and an exit code, Ctrl-C and SIGTERM stop it (exit 130)."""
    with contextlib.chdir(REPO_ROOT), stop_on_signals():
        try:
            _preflight_and_run(opts, name)
        except KeyboardInterrupt as err:
            fail(
                f"{err or 'SIGINT'}: the run stopped, no further step started; run the same "
                "command again to resume from the cache",
                code=130,
                prefix="interrupted",
            )


def preflight(opts: Options) -> tuple[StackFile, dict[str, Any]]:
    """The checks that take a second, before the pipelines (torch, ...) load: the process
    environment, the run configuration's YAML, the stack file, its kubeconfig and tracking
    store (not for a dry run, which never reaches it). Exit 2 naming the problem."""
    try:
        check_environment()
        raw = read_run_config(opts.config)
        stack_file = load_stack_file(opts.stack)
        check_kubernetes_contexts(stack_file)
        if not opts.dry_run:
            check_stack_tracking(stack_file)
    except (StackFileError, RunConfigError, TrackingUnavailable, ProcessEnvironmentError) as err:
        fail(str(err))
    atomic_zenml_config_writes()  # before this process's ZenML client writes its config
    return stack_file, raw


def _preflight_and_run(opts: Options, name: str) -> None:
    stack_file, raw = preflight(opts)
    from zenml.exceptions import StackValidationError

    from deploy.manifests import ManifestError

    try:
        _run_pipeline(opts, name, stack_file, raw)
    except (StackFileError, RunConfigError, StackValidationError, ManifestError) as err:
        fail(str(err))
    except PipelineFailed as err:
        fail(str(err), code=1, prefix="pipeline failed")


def _run_pipeline(opts: Options, name: str, stack_file: StackFile, raw: dict[str, Any]) -> None:
    from cli.study import check_study_settings, print_study_outputs
    from deploy.runconfig import load_run_config, with_stack_options
    from deploy.stacks import ensure_repository
    from pipelines.registry import PIPELINES, known_sections

    pipeline = PIPELINES[name]
    config = _with_overrides(
        load_run_config(opts.config, pipeline, known_sections(), opts.no_cache, raw), opts
    )
    if name == "study" and not opts.dry_run:  # before the hours of measuring, not after
        check_study_settings(config.parameters, opts)
    ensure_repository()
    config_path = with_stack_options(config, pipeline, stack_file)
    if opts.dry_run:
        dry_run(pipeline, config_path, stack_file)
        return
    activate(stack_file, pipeline.name)
    result = launch(pipeline, config_path, stack_file)
    if name == "select":
        evidence = config.parameters.selection.evidence if config.parameters.selection else None
        print_selection(result.id, str(evidence) if evidence else None)
    if name == "study":
        print_study_outputs(result.id, chunk=bool(opts.variants))


def activate(stack_file: StackFile, pipeline_name: str) -> None:
    """Register the stack and make it active; on the embedded store, make the pipeline's
    experiment where its artifacts belong."""
    from deploy.stacks import register_stack

    register_stack(stack_file, activate=True)
    _prepare_tracking(pipeline_name)


def launch(pipeline: Any, config_path: Any, stack_file: StackFile) -> Any:
    """Run `pipeline` on the active stack; its run, or `PipelineFailed` with each failed
    step's own error."""
    from zenml.client import Client

    stack = Client().active_stack_model
    console.print(f"Running {pipeline.name} on stack {stack.name}", markup=False)
    try:
        result = pipeline.with_options(config_path=str(config_path))()
    except RuntimeError as err:
        raise PipelineFailed(failure_summary(pipeline.name, stack_file) or str(err)) from err
    console.print(
        f"Finished run {result.name} ({result.id}); `make ui` shows it.",
        style="green",
        markup=False,
    )
    return result


def _with_overrides(config: RunConfig, opts: Options) -> RunConfig:
    """The command line's overrides of the run configuration: --force, study --variants."""
    if opts.force and config.parameters.selection is not None:
        config = config.with_sections(selection={"force": True})
    if opts.variants:
        config = config.with_sections(study={"variants": opts.variants})
    return config


def dry_run(pipeline: Any, config_path: Any, stack_file: StackFile) -> None:
    """Compile for the stack and show where each step would run; on Kubernetes, also write
    the Jobs it would submit, validated offline."""
    from deploy.manifests import write_manifests
    from deploy.runconfig import MANIFESTS_DIR, compile_for_stack, placement_rows
    from deploy.stacks import register_stack

    register_stack(stack_file, activate=False)
    snapshot, stack = compile_for_stack(pipeline, config_path, stack_file)
    print_placement(placement_rows(snapshot, stack), pipeline.name, stack_file.stack_name)
    if stack.orchestrator.flavor == "kubernetes":
        folder = MANIFESTS_DIR / pipeline.name
        paths = write_manifests(snapshot, stack, folder)
        # on stderr: stdout is the placement table, which scripts read
        print(
            f"manifests: {len(paths)} Kubernetes Jobs in {folder}, valid against the API schema",
            file=sys.stderr,
        )


def failure_summary(pipeline_name: str, stack_file: StackFile) -> str:
    """Each failed step of the latest run with its own error, rather than ZenML's
    'failure in step(s)' alone."""
    from zenml.client import Client
    from zenml.enums import ExecutionStatus

    runs = Client().list_pipeline_runs(pipeline_name=pipeline_name, sort_by="desc:created", size=1)
    if not runs.items:
        return ""
    run = runs.items[0]
    if run.status != ExecutionStatus.FAILED:  # it failed before a run existed (its image build)
        return ""
    lines = [f"run {run.name} ({run.id}) failed:"]
    unexplained = False
    for name, step_run in run.steps.items():
        if step_run.status == ExecutionStatus.FAILED:
            info = step_run.exception_info
            unexplained |= info is None
            lines.append(f"step {name}: {info.message if info else 'failed (see the log above)'}")
    if unexplained and (diagnosis := tracking_diagnosis(stack_file)):
        lines.append(diagnosis)
    return "\n".join(lines)


def tracking_diagnosis(stack_file: StackFile) -> str | None:
    """Why steps may have failed without an error of their own: ZenML records a step's
    error only from the step's code, and its MLflow tracker opens the step's run before that
    code starts, so a tracking server that went away mid-run fails the next steps silently.
    None when the stack's store answers (or it has none)."""
    try:
        check_stack_tracking(stack_file)
    except TrackingUnavailable as err:
        return f"{err} (steps that fail before their code starts carry no error of their own)"
    return None


def check_stack_tracking(stack_file: StackFile) -> None:
    """Raise `TrackingUnavailable` unless the stack's tracking store answers (or it has none)."""
    if "experiment_tracker" in stack_file.components:
        check_tracking_uri(tracking_uri(stack_file))


def _prepare_tracking(experiment: str) -> None:
    """On the embedded store, create the experiment with its artifacts under mlruns/."""
    import mlflow
    from zenml.client import Client

    from sftcast.tracking import ensure_experiment, is_local_store

    tracker = Client().active_stack.experiment_tracker
    uri = getattr(tracker.config, "tracking_uri", None) if tracker else None
    if uri and is_local_store(uri):
        mlflow.set_tracking_uri(uri)
        ensure_experiment(experiment, stores_root() / "mlruns" / "artifacts")


def stack_tracking_uri(stack: str) -> str:
    """The MLflow store a stack's pipelines track and register in: its experiment
    tracker's `tracking_uri`."""
    return tracking_uri(load_stack_file(stack))
