"""Run configurations (`configs/*.yaml`) and the stack dry-run.

A run configuration is a ZenML run configuration whose `parameters` hold one section per
concern (`data`, `zoo`, ...). Every pipeline takes the sections it needs; a section no
pipeline knows is an error, so a typo never goes unnoticed.

`load_run_config` is also the pre-flight: the sections the pipeline takes are validated by the
root model (`sftcast.config.RunParameters`: each section by its own model, then the sections
against each other), and every external candidate of
`zoo.candidates` is verified, so a bad configuration stops the command (exit code 2) with the
file, the key and the problem named, before ZenML runs any step and before MLflow is touched.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from deploy.stacks import REPO_ROOT, StackFile, yaml_error_line
from sftcast.tracking import config_hash

if TYPE_CHECKING:
    from zenml.pipelines import Pipeline

    from sftcast.config import RunParameters

# What runs leave for people to read: each run's effective configuration and a dry run's
# Kubernetes Jobs. SFTCAST_STATE_DIR moves it; the tests give each worker its own, since two
# workers' dry runs emptying one manifests folder raced.
STATE_DIR = Path(os.environ.get("SFTCAST_STATE_DIR") or REPO_ROOT / ".zenml")
EFFECTIVE_DIR = STATE_DIR / "run-configs"
MANIFESTS_DIR = STATE_DIR / "manifests"


class RunConfigError(ValueError):
    """A run configuration that cannot be used; the message names the file and the key."""


def read_run_config(path: Path) -> dict[str, Any]:
    """The run configuration's YAML, parsed once, with its top-level shape checked: cheap, so
    the command line calls it before the orchestration layer is imported (a bad file is
    reported in a second)."""
    if not path.is_file():
        raise RunConfigError(f"no run configuration at {path}")
    try:
        raw = yaml.safe_load(path.read_bytes())
    except yaml.YAMLError as err:
        raise RunConfigError(f"{path}: {yaml_error_line(err)}") from err
    if not isinstance(raw, dict | None):
        raise RunConfigError(f"{path}: expected a mapping at the top level")
    if not isinstance((raw or {}).get("parameters") or {}, dict):
        raise RunConfigError(f"{path}: parameters: expected a mapping of sections")
    return raw or {}


@dataclass(frozen=True)
class RunConfig:
    """A run configuration for one pipeline: the ZenML options as written, and its parameter
    sections validated by the root model. Command-line overrides go through `with_sections`,
    and `to_zenml` serialises it, once, for ZenML."""

    path: Path
    zenml: dict[str, Any]  # everything but `parameters`
    parameters: RunParameters

    def with_sections(self, **updates: dict[str, Any]) -> RunConfig:
        """Sections updated key by key, then validated again (as the file was)."""
        dumped = self._dumped()
        for section, values in updates.items():
            dumped[section] = {**dumped.get(section, {}), **values}
        return replace(self, parameters=parse_parameters(self.path, dumped))

    def to_zenml(self) -> dict[str, Any]:
        return {**self.zenml, "parameters": self._dumped()}

    def _dumped(self) -> dict[str, Any]:
        # only what was written (or overridden): defaults stay the models' business
        return self.parameters.model_dump(mode="json", exclude_unset=True)


def load_run_config(
    path: Path,
    pipeline: Pipeline,
    known_sections: set[str],
    no_cache: bool = False,
    raw: dict[str, Any] | None = None,
) -> RunConfig:
    """The run configuration of `pipeline` (`raw`, if the file was read already): its
    parameters narrowed to the pipeline's own and pre-flighted, `--no-cache` applied."""
    from pydantic import ValidationError
    from zenml.config.pipeline_run_configuration import PipelineRunConfiguration

    raw = read_run_config(path) if raw is None else raw
    # ZenML ignores keys it does not know: a typo (`enable_cach`) would silently do nothing.
    stray = sorted(map(str, set(raw) - set(PipelineRunConfiguration.model_fields)))
    if stray:
        raise RunConfigError(
            f"{path}: unknown top-level key(s) {', '.join(stray)}; a ZenML run configuration "
            "takes parameters, steps, settings, enable_cache, run_name, ..."
        )
    parameters = raw.get("parameters") or {}
    unknown = set(parameters) - known_sections
    if unknown:
        raise RunConfigError(
            f"{path}: unknown parameter section(s) {', '.join(sorted(unknown))}; "
            f"known: {', '.join(sorted(known_sections))}"
        )
    wanted = set(inspect.signature(pipeline.entrypoint).parameters)
    config = {**raw, "parameters": {k: v for k, v in parameters.items() if k in wanted}}
    if no_cache:
        config["enable_cache"] = False
    try:
        PipelineRunConfiguration.model_validate(config)
    except ValidationError as err:
        raise RunConfigError(f"{path}: {_first_errors(err, show_input=True)}") from err
    validated = preflight(path, pipeline, config.pop("parameters"))
    return RunConfig(path, config, validated)


def preflight(path: Path, pipeline: Pipeline, parameters: dict[str, Any]) -> RunParameters:
    """Validate what `pipeline` will be given before anything runs: the device the steps are
    pinned to (`SFTCAST_DEVICE`, read by every step of this process), its sections, each by
    its model and against each other (`sftcast.config.RunParameters`), then every external
    candidate URI (`zoo.candidates`) by fetching and verifying it. Returns the validated
    parameters; raises `RunConfigError` naming the file and the key path, or the variable."""
    from sftcast.device import ENV, device_problem

    if problem := device_problem(os.environ.get(ENV)):
        raise RunConfigError(f"{problem} (set in the environment)")
    signature = inspect.signature(pipeline.entrypoint)
    for name, param in signature.parameters.items():
        if name not in parameters and param.default is inspect.Parameter.empty:
            raise RunConfigError(
                f"{path}: parameters.{name}: missing; the {pipeline.name} pipeline takes "
                f"the sections {', '.join(signature.parameters)}"
            )
    run = parse_parameters(path, parameters)
    if run.zoo is not None:
        _check_external_candidates(path, run.zoo)
    if run.selection is not None and run.selection.evidence is not None:
        _check_evidence(path, run.selection.evidence)
    return run


def parse_parameters(path: Path, parameters: dict[str, Any]) -> RunParameters:
    """The sections validated by the root model; raises `RunConfigError` naming the file and
    the key paths."""
    from pydantic import ValidationError

    from sftcast.config import RunParameters

    try:
        return RunParameters.model_validate(parameters)
    except ValidationError as err:
        problems = _first_errors(err, prefix="parameters", show_input=True)
        raise RunConfigError(f"{path}: {problems}") from err


def _check_evidence(path: Path, results: Path) -> None:
    """The study table `select` judges after its run (`selection.evidence`), checked now: a
    malformed one would otherwise be found after the promotion. A missing one is a note then."""
    from sftcast.comparator import ComparatorInputError
    from sftcast.data.schema import TASKS
    from sftcast.study.summary import check_evidence

    if not results.is_file():
        return
    try:
        check_evidence(results, TASKS)
    except ComparatorInputError as err:
        raise RunConfigError(f"{path}: parameters.selection.evidence: {err}") from err


def _check_external_candidates(path: Path, zoo: Any) -> None:
    """Every `zoo.candidates` URI fetched and verified as its step would (safetensors only,
    remote code and pickle conversion only when the config allows them); every refusal is
    reported, each with its index, URI and problem."""
    from sftcast.zoo import CandidateError, resolve_candidate

    problems = []
    for i, uri in enumerate(zoo.candidates):
        try:
            resolve_candidate(
                uri,
                zoo_root=zoo.root,
                trust_remote_code=zoo.trust_remote_code,
                allow_pickle=zoo.allow_pickle,
            )
        except CandidateError as err:
            problems.append(f"{path}: parameters.zoo.candidates[{i}]: {err}")
    if problems:
        raise RunConfigError("\n".join(problems))


def with_stack_options(run: RunConfig, pipeline: Pipeline, stack_file: StackFile) -> Path:
    """Write the effective configuration for `pipeline` on the stack: the stack's run-wide
    and per-step options, with what the run configuration itself says taking precedence."""
    from deploy.stacks import step_options

    config = _deep_merge(stack_file.pipeline_options, run.to_zenml())
    probe = pipeline.with_options(config_path=str(write_effective(config, pipeline.name)))
    probe.prepare()  # runs the pipeline function, which creates the step invocations
    steps = step_options(stack_file, probe)
    for step_id, own in (config.get("steps") or {}).items():
        steps[step_id] = _deep_merge(steps.get(step_id, {}), own)
    return write_effective({**config, "steps": steps}, pipeline.name)


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def write_effective(config: dict[str, Any], pipeline_name: str) -> Path:
    """Write the effective configuration where ZenML (and a curious user) can read it."""
    from sftcast.files import write_text_atomic

    EFFECTIVE_DIR.mkdir(parents=True, exist_ok=True)
    path = EFFECTIVE_DIR / f"{pipeline_name}-{config_hash(config)}.yaml"
    # whole or not at all: a file under a hash's name always holds that whole configuration
    write_text_atomic(path, yaml.safe_dump(config, sort_keys=False))
    return path


def compile_for_stack(pipeline: Pipeline, config_path: Path, stack_file: StackFile) -> Any:
    """Compile the pipeline for the stack without running anything: resolves step operators
    and settings and rejects malformed values, exactly as a real run would."""
    from pydantic import ValidationError
    from zenml.client import Client
    from zenml.config.compiler import Compiler
    from zenml.config.pipeline_run_configuration import PipelineRunConfiguration
    from zenml.exceptions import SettingsResolvingError
    from zenml.stack import Stack

    stack = Stack.from_model(Client().get_stack(stack_file.stack_name))
    stack.validate()
    configured = pipeline.with_options(config_path=str(config_path))
    configured.prepare()
    run_config = PipelineRunConfiguration.model_validate(yaml.safe_load(config_path.read_text()))
    try:
        snapshot = Compiler().compile(
            pipeline=configured, stack=stack, run_configuration=run_config
        )
    except SettingsResolvingError as err:
        cause = err.__context__  # ZenML raises it inside `except ValidationError`
        if not isinstance(cause, ValidationError):
            raise RunConfigError(f"{stack_file.path}: {err}") from err
        raise RunConfigError(
            f"{stack_file.path}: malformed {cause.title}: {_first_errors(cause)}"
        ) from err
    return snapshot, stack


def _first_errors(err: Any, limit: int = 3, prefix: str = "", show_input: bool = False) -> str:
    """The first few problems of a pydantic error on one line: `where: what`, where is the
    key path under `prefix` (`parameters.zoo.variants[0].steps`, or the setting a
    `SectionConflict` names); with `show_input`, the offending value too when it is short
    (`(got -0.001)`)."""
    from sftcast.config import SectionConflict

    problems = []
    for e in err.errors():
        loc, msg, shown = e["loc"], e["msg"].removeprefix("Value error, "), repr(e.get("input"))
        worth_showing = show_input and e["type"] != "missing" and len(shown) <= 80
        if isinstance(conflict := (e.get("ctx") or {}).get("error"), SectionConflict):
            loc, msg, worth_showing = (*loc, *conflict.key.split(".")), conflict.problem, False
        where = prefix
        for part in loc:
            where += f"[{part}]" if isinstance(part, int) else f".{part}" if where else str(part)
        problem = f"{where or 'configuration'}: {msg}"
        said = f"got {shown}" in problem or f"got {e.get('input')}" in problem  # said already
        if worth_showing and not said:
            problem += f" (got {shown})"
        problems.append(problem)
    more = f" (and {len(problems) - limit} more)" if len(problems) > limit else ""
    return "; ".join(problems[:limit]) + more


def placement_rows(snapshot: Any, stack: Any) -> list[dict[str, str]]:
    """Per step: where it runs and with what resources (settings validated on the way)."""
    rows = []
    for name, step in snapshot.step_configurations.items():
        config = step.config
        if config.step_operator:
            component = stack.step_operators[config.step_operator]
            where = f"step operator {component.name} ({component.flavor})"
        else:
            component = stack.orchestrator
            where = f"orchestrator {component.name} ({component.flavor})"
        pod = _component_settings(name, config.settings, component).get("pod_settings") or {}
        resources = _plain(config.settings.get("resources", {}))
        rows.append(
            {
                "step": name,
                "where": where,
                "device": str(config.environment.get("SFTCAST_DEVICE", "auto")),
                "resources": _describe_resources(resources, pod),
                "tolerations": ", ".join(
                    f"{t.get('key')}:{t.get('effect', '')}" for t in pod.get("tolerations", [])
                )
                or "-",
            }
        )
    return rows


def _component_settings(step: str, settings: dict[str, Any], component: Any) -> dict[str, Any]:
    """The step's settings for `component`, validated by the component's settings class
    (the compiler only normalises their keys)."""
    from pydantic import ValidationError

    keys = (
        f"{component.type.value}:{component.name}",
        f"{component.type.value}.{component.flavor}",
    )
    raw = next((settings[k] for k in keys if k in settings), None)
    if raw is None or component.settings_class is None:
        return {}
    try:
        return _plain(component.settings_class.model_validate(_plain(raw)))
    except ValidationError as err:
        raise RunConfigError(
            f"step {step!r}: malformed settings for {component.type.value} {component.name!r}: "
            f"{err}"
        ) from err


def _plain(value: Any) -> dict[str, Any]:
    return value.model_dump(exclude_none=True) if hasattr(value, "model_dump") else dict(value)


def _describe_resources(resources: dict[str, Any], pod: dict[str, Any]) -> str:
    parts = [f"{k}={v}" for k, v in resources.items() if v not in (None, 0, {}, [])]
    for kind in ("requests", "limits"):
        values = (pod.get("resources") or {}).get(kind) or {}
        if values:
            parts.append(f"{kind}: " + ", ".join(f"{k}={v}" for k, v in values.items()))
    selectors = pod.get("node_selectors") or {}
    parts += [f"node {k}={v}" for k, v in selectors.items()]
    return "; ".join(parts) or "-"
