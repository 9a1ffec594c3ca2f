"""Stacks as files: import `zenml_stack/<name>.yaml` idempotently, apply its step options.

A stack file has the format of `zenml stack export` (`stack_name`, `zenml_version`,
`components`) plus an `sftcast:` section saying what CPU and GPU steps get on that stack
(step operator, settings, environment). Steps mark themselves as GPU work with
`@step(extra={"gpu": True})`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import yaml

if TYPE_CHECKING:
    from zenml.pipelines import Pipeline

REPO_ROOT = Path(__file__).resolve().parents[1]
STACK_DIR = REPO_ROOT / "zenml_stack"
STEP_OPTION_KEYS = {"step_operator", "settings", "environment"}
STEP_CLASSES = ("cpu_steps", "gpu_steps")
SECTION_KEYS = (*STEP_CLASSES, "pipeline")  # `pipeline`: run-wide options, e.g. docker

# ZenML substitutes `${VAR}` in run configurations but knows no `${VAR:-default}`, and stack
# component configurations are not substituted at all: hence this small expander. Innermost
# placeholders first, so a default may itself use a variable.
_PLACEHOLDER = re.compile(r"\$\{(\w+)(?::-([^${}]*))?\}")
# The tracking URIs both MLflow (its tracking store registry) and ZenML's MLflow tracker
# (`_ensure_valid_tracking_uri`: mlflow's DATABASE_ENGINES, http, https, file, or exactly
# `databricks`) take. Spelt out, not imported: mlflow takes seconds to import, and these
# checks run before anything heavy (tests/test_stacks.py holds them to MLflow's own lists).
DATABASE_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")  # each may name a +driver
TRACKING_SCHEMES = ("file", *DATABASE_SCHEMES, "http", "https")
TRACKING_URI_FORMS = (
    "file:<path>, sqlite:///<path>, postgresql://, mysql://, mssql:// (each database with an "
    "optional +driver), http(s)://<host> or databricks"
)


class StackFileError(ValueError):
    """A stack file that cannot be used; the message names the file and what is wrong."""


@dataclass(frozen=True)
class StackFile:
    path: Path
    stack_name: str
    components: dict[str, list[dict[str, Any]]]
    step_options: dict[str, dict[str, Any]] = field(default_factory=dict)

    def options_for(self, gpu: bool) -> dict[str, Any]:
        return self.step_options.get("gpu_steps" if gpu else "cpu_steps", {})

    @property
    def pipeline_options(self) -> dict[str, Any]:
        return self.step_options.get("pipeline", {})


def stores_root() -> Path:
    """Where the ZenML artifacts and the MLflow store live: the repository, unless
    SFTCAST_ROOT says otherwise (tests point it at a temporary folder)."""
    return Path(os.environ.get("SFTCAST_ROOT") or REPO_ROOT)


def available_stacks() -> list[str]:
    return sorted(p.stem for p in STACK_DIR.glob("*.yaml"))


def expand_placeholders(value: Any, source: Path, env: dict[str, str] | None = None) -> Any:
    """Expand placeholders in every string of a parsed YAML document (not in its comments);
    every variable that is needed and not set is named at once."""
    env = dict(os.environ if env is None else env)
    env.setdefault("SFTCAST_ROOT", str(stores_root()))
    missing: list[str] = []

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if env.get(name):
            return env[name]
        if default is not None:
            return default
        if name not in missing:
            missing.append(name)
        return match.group(0)  # left as it is: the loop below stops, the error follows

    def expand(value: Any) -> Any:
        if isinstance(value, dict):  # keys too: a volume's host path is a key, for one
            return {expand(k): expand(v) for k, v in value.items()}
        if isinstance(value, list):
            return [expand(v) for v in value]
        if not isinstance(value, str):
            return value
        while (expanded := _PLACEHOLDER.sub(substitute, value)) != value:
            value = expanded
        return value

    expanded = expand(value)
    if missing:
        others = f", nor {', '.join(missing[1:])}" if missing[1:] else ""
        raise StackFileError(
            f"{source}: environment variable {missing[0]} is not set{others}; the stack needs "
            f"{'them' if others else 'it'} (see the comments at the top of {source.name})"
        )
    return expanded


def yaml_error_line(err: yaml.YAMLError) -> str:
    """A YAML error on one line, where it is first: `not valid YAML at line 3, column 7: ...`."""
    mark = getattr(err, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    return f"not valid YAML{where}: {problem}"


def load_stack_file(name_or_path: str | Path, env: dict[str, str] | None = None) -> StackFile:
    """A stack of zenml_stack/ by name, or a stack file by path: its variables expanded, its
    shape, tracking URI and devices checked; `StackFileError` names the file and the key."""
    path = Path(name_or_path)
    if path.suffix != ".yaml":
        path = STACK_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise StackFileError(
            f"no stack file {path}; available stacks: {', '.join(available_stacks())}"
        )
    try:
        data = expand_placeholders(yaml.safe_load(path.read_text()), path, env)
    except yaml.YAMLError as err:
        raise StackFileError(f"{path}: {yaml_error_line(err)}") from err
    if not isinstance(data, dict):
        raise StackFileError(f"{path}: expected a mapping at the top level")
    missing = {"stack_name", "components"} - data.keys()
    if missing:
        raise StackFileError(f"{path}: missing key(s) {', '.join(sorted(missing))}")

    components = _components(path, _mapping(path, "components", data["components"]))
    _check_tracking_uris(path, components.get("experiment_tracker", []))
    options = _step_options(path, _mapping(path, "sftcast", data.get("sftcast")))
    return StackFile(path, data["stack_name"], components, options)


def _components(path: Path, found: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The stack's components by type, each with a `name`, a `flavor` and a configuration."""
    from zenml.enums import StackComponentType

    known_types = {t.value for t in StackComponentType}
    components: dict[str, list[dict[str, Any]]] = {}
    for ctype, entries in found.items():
        if ctype not in known_types:
            raise StackFileError(
                f"{path}: unknown component type {ctype!r}; known: {', '.join(sorted(known_types))}"
            )
        entries = entries if isinstance(entries, list) else [entries]
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict) or not {"name", "flavor"} <= entry.keys():
                raise StackFileError(f"{path}: each {ctype} needs a `name` and a `flavor`")
            where = f"components.{ctype}[{i}].configuration"
            entry["configuration"] = _mapping(path, where, entry.get("configuration"))
        components[ctype] = entries
    for required in ("orchestrator", "artifact_store"):
        if required not in components:
            raise StackFileError(f"{path}: a stack needs an {required} component")
    return components


def _step_options(path: Path, found: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The `sftcast:` section: per step class (and `pipeline`), the options it gets."""
    options = {}
    for key, value in found.items():
        if key not in SECTION_KEYS:
            raise StackFileError(f"{path}: sftcast.{key} is unknown; expected {SECTION_KEYS}")
        options[key] = value = _mapping(path, f"sftcast.{key}", value)
        allowed = {"settings"} if key == "pipeline" else STEP_OPTION_KEYS
        unknown = set(value) - allowed
        if unknown:
            raise StackFileError(
                f"{path}: sftcast.{key} has unknown option(s) {', '.join(sorted(unknown))}; "
                f"allowed: {', '.join(sorted(allowed))}"
            )
        _check_device(path, key, value)
    return options


def _mapping(path: Path, key: str, value: Any) -> dict[str, Any]:
    """`value` of the stack file's `key`, a mapping (absent or empty: an empty one)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise StackFileError(
            f"{path}: {key}: expected a mapping, got {type(value).__name__} {value!r:.60}"
        )
    return value


def _check_tracking_uris(path: Path, trackers: list[dict[str, Any]]) -> None:
    """Every MLflow tracker's `tracking_uri` is one MLflow and ZenML can use: otherwise it is
    found out only when a step opens its run."""
    for i, tracker in enumerate(trackers):
        uri = tracker["configuration"].get("tracking_uri")
        if tracker["flavor"] != "mlflow" or not uri:  # none: `tracking_uri` says so when used
            continue
        if problem := tracking_uri_problem(uri):
            from sftcast.tracking import without_password

            raise StackFileError(
                f"{path}: components.experiment_tracker[{i}].configuration.tracking_uri "
                f"{without_password(str(uri))!r}: {problem}; expected {TRACKING_URI_FORMS}"
            )


def tracking_uri_problem(uri: Any) -> str | None:
    """Why `uri` is no MLflow tracking URI the stack's tracker can use; None if it is one."""
    if not isinstance(uri, str):
        return f"expected a URI, got {type(uri).__name__}"
    if uri == "databricks":
        return None
    parts = urlsplit(uri)
    engine, plus, _ = parts.scheme.partition("+")
    if (name := parts.scheme or uri).startswith("databricks") or name == "uc":
        return "ZenML's MLflow tracker takes Databricks only as `databricks`"
    if len(parts.scheme) < 2:  # none, or a Windows drive letter (`C:\data`)
        return "a bare path, which ZenML's MLflow tracker refuses (write file:<path>)"
    if engine not in TRACKING_SCHEMES or (plus and engine not in DATABASE_SCHEMES):
        return f"unknown scheme {parts.scheme!r}"
    if engine in ("http", "https") and not parts.hostname:
        return "names no host"
    return None


def _check_device(path: Path, section: str, options: dict[str, Any]) -> None:
    """The device a step class is pinned to (`environment.SFTCAST_DEVICE`) is one sftcast
    runs on; whether that machine has it is known only where the step runs."""
    from sftcast.device import ENV, device_problem

    environment = _mapping(path, f"sftcast.{section}.environment", options.get("environment"))
    value = environment.get(ENV)
    if value is not None and (problem := device_problem(str(value))):
        raise StackFileError(f"{path}: sftcast.{section}.environment.{ENV}: {problem}")


def tracking_uri(stack_file: StackFile) -> str:
    """The MLflow store the stack's pipelines track and register in: its experiment
    tracker's `tracking_uri`."""
    trackers = stack_file.components.get("experiment_tracker")
    if not trackers:
        raise StackFileError(f"{stack_file.path}: the stack has no experiment tracker")
    uri = trackers[0]["configuration"].get("tracking_uri")
    if not uri:
        raise StackFileError(f"{stack_file.path}: its experiment tracker has no tracking_uri")
    return uri


def check_kubernetes_contexts(stack_file: StackFile) -> None:
    """Every Kubernetes context the stack's components name is in the kubeconfig. Without a
    kubeconfig at all, ZenML's own check fails deep inside stack validation instead."""
    contexts = {
        entry["configuration"]["kubernetes_context"]
        for entries in stack_file.components.values()
        for entry in entries
        if entry["configuration"].get("kubernetes_context")
        and not entry["configuration"].get("incluster")
    }
    if not contexts:
        return
    from kubernetes import config as k8s_config

    # Read KUBECONFIG now: the kubernetes package reads it once, when first imported.
    kubeconfig = os.environ.get("KUBECONFIG") or "~/.kube/config"
    origin = "KUBECONFIG" if os.environ.get("KUBECONFIG") else "the default: KUBECONFIG is unset"
    # ZenML's own checks later read the package's default path, fixed at its first import:
    # point it at this file, so that one process never reads two kubeconfigs.
    k8s_config.kube_config.KUBE_CONFIG_DEFAULT_LOCATION = kubeconfig
    needs = f"the stack needs the context {', '.join(sorted(contexts))}"
    for file in _kubeconfig_files(kubeconfig):
        if problem := kubeconfig_problem(file):
            raise StackFileError(
                f"{stack_file.path}: the Kubernetes configuration {file} ({origin}) {problem}; "
                f"{needs}"
            )
    try:
        known, _ = k8s_config.list_kube_config_contexts(config_file=kubeconfig)
    except (k8s_config.ConfigException, TypeError, ValueError, KeyError, AttributeError) as err:
        # ConfigException for what the package checks; the others for a shape it does not
        raise StackFileError(
            f"{stack_file.path}: could not load the Kubernetes configuration {kubeconfig} "
            f"({origin}): {str(err).rstrip('.')}; {needs}"
        ) from err
    absent = sorted(contexts - {c["name"] for c in known})
    if absent:
        raise StackFileError(
            f"{stack_file.path}: no Kubernetes context {', '.join(absent)} in {kubeconfig} "
            f"({origin}); it has {', '.join(sorted(c['name'] for c in known)) or 'none'}"
        )


def _kubeconfig_files(kubeconfig: str) -> list[Path]:
    """The files KUBECONFIG names (a list, as kubectl reads it) that exist: the kubernetes
    package merges those and skips the others."""
    files = (Path(f).expanduser() for f in kubeconfig.split(os.pathsep) if f)
    return [f for f in files if f.is_file()]


# A kubeconfig's lists, and what each entry holds besides its `name`.
KUBECONFIG_LISTS = {"contexts": "context", "clusters": "cluster", "users": "user"}


def kubeconfig_problem(file: Path) -> str | None:
    """What makes `file` no kubeconfig: not YAML (with its line and column), or YAML of
    another shape than kubectl's (a mapping whose `contexts`, `clusters` and `users` are lists
    of {name, <entry>} mappings); None if it is one. An empty file the kubernetes package
    reports itself."""
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        return f"is {yaml_error_line(err)}"
    except (OSError, UnicodeDecodeError) as err:
        return f"cannot be read: {err}"
    if data is None:
        return None
    if not isinstance(data, dict):
        return f"is not a kubeconfig: expected a mapping, got {type(data).__name__} {data!r:.60}"
    for key, inner in KUBECONFIG_LISTS.items():
        entries = data.get(key)
        if entries is None:
            continue
        if not isinstance(entries, list):
            got = f"{type(entries).__name__} {entries!r:.60}"
            return f"is not a kubeconfig: {key}: expected a list, got {got}"
        for i, entry in enumerate(entries):
            if not (isinstance(entry, dict) and isinstance(entry.get("name"), str)):
                return f"is not a kubeconfig: {key}[{i}] is not a mapping with a name"
            if not isinstance(entry.get(inner), dict):
                return f"is not a kubeconfig: {key}[{i}].{inner} is not a mapping"
    return None


def ensure_repository() -> None:
    """Initialise the ZenML repository once (idempotent): the project root, unless
    ZENML_REPOSITORY_PATH names another."""
    from zenml.client import Client

    root = Path(os.environ.get("ZENML_REPOSITORY_PATH") or REPO_ROOT)
    if not (root / ".zen").is_dir():
        Client.initialize(root=root)


def register_stack(stack_file: StackFile, activate: bool = True) -> Any:
    """Create or update the stack and its components to match the file; optionally activate."""
    from zenml.client import Client
    from zenml.enums import StackComponentType

    client = Client()
    component_ids: dict[StackComponentType, list[Any]] = {}
    changed = False
    for ctype_value, entries in stack_file.components.items():
        ctype = StackComponentType(ctype_value)
        component_ids[ctype] = []
        for entry in entries:
            component_id, updated = _ensure_component(client, ctype, entry, stack_file)
            component_ids[ctype].append(component_id)
            changed |= updated

    try:
        stack = client.get_stack(stack_file.stack_name, allow_name_prefix_match=False)
    except KeyError:
        stack = client.create_stack(name=stack_file.stack_name, components=component_ids)
    else:
        current = {ctype: [c.id for c in comps] for ctype, comps in stack.components.items()}
        # An update also renews the stack's `updated` time, the key of ZenML's in-process
        # cache of stacks: without it a changed component would be served stale.
        if changed or current != component_ids:
            stack = client.update_stack(stack.id, component_updates=component_ids)
    if activate and client.active_stack_model.id != stack.id:
        client.activate_stack(stack.id)
    return stack


def _ensure_component(
    client: Any, ctype: Any, entry: dict[str, Any], stack_file: StackFile
) -> tuple[Any, bool]:
    """The component's id, created or updated to match the file, and whether it changed."""
    name, flavor, configuration = entry["name"], entry["flavor"], entry["configuration"]
    try:
        existing = client.get_stack_component(ctype, name, allow_name_prefix_match=False)
    except KeyError:
        try:
            created = client.create_stack_component(
                name=name, flavor=flavor, component_type=ctype, configuration=configuration
            )
            return created.id, True
        except Exception as err:  # ZenML raises several types for a bad configuration
            raise StackFileError(
                f"{stack_file.path}: component {name!r} ({ctype.value}, flavor {flavor}): {err}"
            ) from err
    if existing.flavor_name != flavor:
        raise StackFileError(
            f"{stack_file.path}: a {ctype.value} named {name!r} already exists with flavor "
            f"{existing.flavor_name}, not {flavor}; rename it in the stack file"
        )
    if existing.configuration == configuration:
        return existing.id, False
    client.update_stack_component(name, ctype, configuration=configuration)
    return existing.id, True


def step_options(stack_file: StackFile, pipeline: Pipeline) -> dict[str, dict[str, Any]]:
    """The `steps:` section of a run configuration giving every step invocation of the
    (prepared) pipeline the options its class, CPU or GPU work, has on this stack."""
    options = {}
    for invocation_id, invocation in pipeline.invocations.items():
        gpu = bool(invocation.step.configuration.extra.get("gpu"))
        if chosen := stack_file.options_for(gpu):
            options[invocation_id] = chosen
    return options
