"""The Kubernetes Jobs a run on a Kubernetes stack would submit, written by `--dry-run` and
validated offline against the Kubernetes API schema (kubernetes-validate, strict: an unknown
field is an error too).

Built with ZenML's own manifest builders and the compiled pipeline's per-step settings, as
ZenML's orchestrator and step operator build them when they submit: the orchestrator Job; per
step the Job the orchestrator starts; and for a step with a step operator, the Job that step
operator starts (the one that gets the GPU). What exists only once a run is submitted (the
snapshot id, the built image's digest, the random part of each Job's name) is a fixed
placeholder, named in the annotation `sftcast.dry-run`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import yaml

from sftcast.files import write_text_atomic

# what a submitted run has in these places instead
PLACEHOLDER_SNAPSHOT_ID = UUID(int=0)  # and the step run's id
PLACEHOLDER_JOB_SUFFIX = "00000000"
DRY_RUN_NOTE = (
    "written by `sftcast --dry-run`: snapshot id, image tag and the job name's random part "
    "are placeholders"
)
SERVICE_ACCOUNT = "zenml-service-account"  # the one ZenML creates when settings name none
DEFAULT_MEMORY_REQUEST = "400Mi"  # what ZenML requests for a step pod that names none


class ManifestError(ValueError):
    """A manifest that does not validate against the Kubernetes schema; names the file."""


def write_manifests(snapshot: Any, stack: Any, folder: Path) -> list[Path]:
    """Write every Job of the dry-run `snapshot` on the Kubernetes `stack` to `folder` (emptied
    of older manifests first), validate each, and return their paths."""
    from kubernetes import client as k8s_client

    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.yaml"):
        old.unlink()
    serialize = k8s_client.ApiClient().sanitize_for_serialization
    written = []
    for name, job in job_manifests(snapshot, stack).items():
        path = folder / f"{name}.yaml"
        # the API client posts a Job to the Jobs endpoint without saying what it is; a file
        # for `kubectl` (and the validator) says it
        manifest = {"apiVersion": "batch/v1", "kind": "Job", **serialize(job)}
        write_text_atomic(path, yaml.safe_dump(manifest, sort_keys=False))
        validate_manifest(path)
        written.append(path)
    return written


def validate_manifest(path: Path, version: str | None = None) -> str:
    """Validate one manifest file against the Kubernetes API schema of `version` (default: the
    newest the validator ships); returns the version used."""
    import kubernetes_validate
    from kubernetes_validate.utils import latest_version

    version = version or latest_version()
    try:
        kubernetes_validate.validate(yaml.safe_load(path.read_text()), version, strict=True)
    except kubernetes_validate.ValidationError as err:
        where = ".".join(map(str, err.path)) or "(top level)"
        raise ManifestError(
            f"{path}: {where}: {err.message} (Kubernetes {version} schema)"
        ) from err
    return version


def job_manifests(snapshot: Any, stack: Any) -> dict[str, Any]:
    """File stem -> V1Job, in the order a run submits them: the orchestrator's, then each
    step's (and, for a step sent to a step operator, that operator's)."""
    from zenml.integrations.kubernetes import kube_utils

    pipeline = snapshot.pipeline_configuration.name
    job = _JobContext(
        stack=stack,
        pipeline=pipeline,
        image=_image_name(stack, pipeline),
        labels={"pipeline": kube_utils.sanitize_label_value(pipeline)},
        annotations={"sftcast.dry-run": DRY_RUN_NOTE},
    )
    jobs = {"orchestrator": _orchestrator_job(snapshot, job)}
    for step_name, step in snapshot.step_configurations.items():
        jobs[step_name] = _step_job(step_name, step, job)
        if step.config.step_operator:
            jobs[f"{step_name}.step-operator"] = _step_operator_job(step_name, step, job)
    return jobs


@dataclass(frozen=True)
class _JobContext:
    """What every Job of one dry run shares."""

    stack: Any
    pipeline: str
    image: str
    labels: dict[str, str]
    annotations: dict[str, str]

    def step_labels(self, step_name: str) -> dict[str, str]:
        from zenml.integrations.kubernetes import kube_utils

        return {**self.labels, "step_name": kube_utils.sanitize_label_value(step_name)}


def _orchestrator_job(snapshot: Any, job: _JobContext) -> Any:
    from zenml.integrations.kubernetes.orchestrators.kubernetes_orchestrator_entrypoint_configuration import (  # noqa: E501
        KubernetesOrchestratorEntrypointConfiguration as Entrypoint,
    )
    from zenml.integrations.kubernetes.pod_settings import KubernetesPodSettings

    orchestrator = job.stack.orchestrator
    settings = _without_cluster_calls(orchestrator.get_settings(snapshot))
    return orchestrator._prepare_job_manifest(
        name=_job_name(settings.job_name_prefix, job.pipeline, ""),
        command=Entrypoint.get_entrypoint_command(),
        args=Entrypoint.get_entrypoint_arguments(snapshot_id=PLACEHOLDER_SNAPSHOT_ID),
        image=job.image,
        environment={},
        labels=job.labels,
        annotations=job.annotations,
        settings=settings,
        pod_settings=settings.orchestrator_pod_settings or KubernetesPodSettings(),
        backoff_limit=settings.orchestrator_job_backoff_limit,
    )


def _step_job(step_name: str, step: Any, job: _JobContext) -> Any:
    from zenml.entrypoints.step_entrypoint_configuration import StepEntrypointConfiguration

    orchestrator = job.stack.orchestrator
    step_settings = _without_cluster_calls(orchestrator.get_settings(step))
    return orchestrator._prepare_job_manifest(
        name=_job_name(step_settings.job_name_prefix, step_name, job.pipeline),
        command=StepEntrypointConfiguration.get_entrypoint_command(),
        args=StepEntrypointConfiguration.get_entrypoint_arguments(
            step_name=step_name, snapshot_id=PLACEHOLDER_SNAPSHOT_ID
        ),
        image=job.image,
        environment=dict(step.config.environment),
        labels=job.step_labels(step_name),
        annotations=job.annotations,
        settings=step_settings,
        pod_settings=step_settings.pod_settings,
        backoff_limit=step_settings.backoff_limit_margin,
    )


def _step_operator_job(step_name: str, step: Any, job: _JobContext) -> Any:
    from zenml.integrations.kubernetes import kube_utils
    from zenml.integrations.kubernetes.manifest_utils import (
        build_job_manifest,
        build_pod_manifest,
        pod_template_manifest_from_pod,
    )
    from zenml.step_operators.step_operator_entrypoint_configuration import (
        StepOperatorEntrypointConfiguration as Entrypoint,
    )

    operator_settings = job.stack.step_operators[step.config.step_operator].get_settings(step)
    command = [
        *Entrypoint.get_entrypoint_command(),
        *Entrypoint.get_entrypoint_arguments(
            step_name=step_name,
            snapshot_id=PLACEHOLDER_SNAPSHOT_ID,
            step_run_id=str(PLACEHOLDER_SNAPSHOT_ID),
        ),
    ]
    pod = build_pod_manifest(
        pod_name=None,
        image_name=job.image,
        command=command[:3],  # as the step operator splits it
        args=command[3:],
        env=dict(step.config.environment),
        privileged=operator_settings.privileged,
        pod_settings=kube_utils.apply_default_resource_requests(
            memory=DEFAULT_MEMORY_REQUEST, pod_settings=operator_settings.pod_settings
        ),
        service_account_name=operator_settings.service_account_name,
        labels=job.step_labels(step_name),
        annotations=job.annotations,
    )
    name = f"{step_name}-{job.pipeline}-step-operator"
    return build_job_manifest(
        job_name=_job_name(operator_settings.job_name_prefix, name, ""),
        pod_template=pod_template_manifest_from_pod(pod),
        backoff_limit=0,  # the orchestrator retries, not the step operator
        ttl_seconds_after_finished=operator_settings.ttl_seconds_after_finished,
        active_deadline_seconds=operator_settings.active_deadline_seconds,
        labels=job.step_labels(step_name),
        annotations=job.annotations,
    )


def _without_cluster_calls(settings: Any) -> Any:
    """The orchestrator's settings with the service account it would otherwise create in the
    cluster first (ZenML's `zenml-service-account`) named: a dry run calls no cluster."""
    account = settings.service_account_name or SERVICE_ACCOUNT
    return settings.model_copy(update={"service_account_name": account})


def _job_name(prefix: str | None, step_name: str, pipeline: str) -> str:
    """ZenML's job name, with a fixed placeholder for its random part."""
    from zenml.integrations.kubernetes import kube_utils

    name = f"{prefix or ''}-{PLACEHOLDER_JOB_SUFFIX}-{step_name}"
    return kube_utils.sanitize_label(f"{name}-{pipeline}" if pipeline else name)


def _image_name(stack: Any, pipeline: str) -> str:
    """Where ZenML pushes the run's image: `<registry>/zenml:<pipeline>-orchestrator` (the
    digest is the build's)."""
    registry = stack.container_registry
    prefix = f"{registry.config.uri.rstrip('/')}/" if registry else ""
    return f"{prefix}zenml:{pipeline}-orchestrator"
