"""Stacks as files: they load, import idempotently, and the k8s stack compiles without a
cluster, placing GPU steps on the step operator with explicit GPU pod resources."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from deploy.runconfig import RunConfigError, compile_for_stack, placement_rows
from deploy.stacks import (
    STACK_DIR,
    StackFileError,
    available_stacks,
    check_kubernetes_contexts,
    load_stack_file,
    register_stack,
    tracking_uri,
)


def test_the_three_stacks_are_files() -> None:
    assert {"local", "gpu", "k8s"} <= set(available_stacks())


@pytest.mark.parametrize("name", ["local", "gpu"])
def test_local_stacks_need_no_environment(name: str) -> None:
    stack = load_stack_file(name, env={"SFTCAST_ROOT": "/srv/sftcast"})
    tracker = stack.components["experiment_tracker"][0]
    assert tracker["flavor"] == "mlflow"
    assert tracker["configuration"]["tracking_uri"] == "sqlite:////srv/sftcast/mlruns/mlflow.db"
    assert stack.components["model_registry"][0]["flavor"] == "mlflow"
    assert stack.components["orchestrator"][0]["flavor"] == "local"


def test_gpu_stack_pins_gpu_steps_to_cuda() -> None:
    stack = load_stack_file("gpu", env={})
    assert stack.options_for(gpu=True)["environment"]["SFTCAST_DEVICE"] == "cuda"
    assert stack.options_for(gpu=False) == {}


def test_k8s_stack_names_the_missing_variable() -> None:
    with pytest.raises(
        StackFileError, match=r"k8s\.yaml: environment variable SFTCAST_K8S_CONTEXT"
    ):
        load_stack_file("k8s", env={})


def test_k8s_stack_reads_every_endpoint_from_the_environment(k8s_env: dict[str, str]) -> None:
    stack = load_stack_file("k8s")
    flat = yaml.safe_dump(stack.components)
    for value in k8s_env.values():
        if not value.endswith("kubeconfig"):
            assert value in flat
    assert stack.components["orchestrator"][0]["configuration"]["kubernetes_namespace"] == "sftcast"
    gpu = stack.options_for(gpu=True)
    pod = gpu["settings"]["step_operator.kubernetes"]["pod_settings"]
    assert gpu["step_operator"] == "sftcast-k8s-gpu"
    assert pod["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("- just\n- a list\n", "mapping at the top level"),
        ("stack_name: x\n", "missing key"),
        (
            "stack_name: x\ncomponents:\n  artifact_store: [{name: a, flavor: local}]\n",
            "orchestrator",
        ),
        (
            "stack_name: x\ncomponents:\n  orchestrator: [{name: o, flavor: local}]\n"
            "  artifact_store: [{name: a, flavor: local}]\n  teleporter: [{name: t, flavor: x}]\n",
            "unknown component type 'teleporter'",
        ),
        (
            "stack_name: x\ncomponents:\n  orchestrator: [{name: o}]\n",
            "needs a `name` and a `flavor`",
        ),
        (
            "stack_name: x\ncomponents:\n  orchestrator: [{name: o, flavor: local}]\n"
            "  artifact_store: [{name: a, flavor: local}]\nsftcast:\n  tpu_steps: {}\n",
            "sftcast.tpu_steps is unknown",
        ),
        (
            "stack_name: x\ncomponents:\n  orchestrator: [{name: o, flavor: local}]\n"
            "  artifact_store: [{name: a, flavor: local}]\nsftcast:\n  gpu_steps: {gpus: 2}\n",
            "unknown option(s) gpus",
        ),
        ("stack_name: [unclosed\n", "not valid YAML"),
    ],
)
def test_malformed_stack_files_are_named(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    with pytest.raises(StackFileError) as err:
        load_stack_file(path)
    assert str(path) in str(err.value)
    assert problem in str(err.value)


def test_import_is_idempotent_and_follows_the_file(zenml_client, tmp_path: Path) -> None:
    text = (STACK_DIR / "local.yaml").read_text().replace("sftcast-local", "sftcast-idem")
    text = text.replace("sftcast-mlflow-local", "sftcast-mlflow-idem")
    path = tmp_path / "idem.yaml"
    path.write_text(text)
    before = zenml_client.list_stack_components(size=100).total

    first = register_stack(load_stack_file(path), activate=False)
    second = register_stack(load_stack_file(path), activate=False)
    assert first.id == second.id
    # two new components (the orchestrator's, store's and registry's names differ only
    # where the file renamed them); a second import creates nothing
    after = zenml_client.list_stack_components(size=100).total
    assert register_stack(load_stack_file(path), activate=False).id == first.id
    assert zenml_client.list_stack_components(size=100).total == after > before

    path.write_text(text.replace("/.zenml/artifacts", "/.zenml/other-artifacts"))
    register_stack(load_stack_file(path), activate=False)
    store = zenml_client.get_stack_component("artifact_store", "sftcast-idem-artifacts")
    assert store.configuration["path"].endswith("/.zenml/other-artifacts")
    assert zenml_client.list_stack_components(size=100).total == after


def _k8s_rows(stack_path: Path | str) -> list[dict[str, str]]:
    from cli.options import DEFAULT_CONFIG
    from deploy.runconfig import load_run_config, with_stack_options
    from pipelines.registry import PIPELINES, known_sections

    stack_file = load_stack_file(stack_path)
    register_stack(stack_file, activate=False)
    pipeline = PIPELINES["zoo"]
    config = load_run_config(DEFAULT_CONFIG, pipeline, known_sections())
    snapshot, stack = compile_for_stack(
        pipeline, with_stack_options(config, pipeline, stack_file), stack_file
    )
    return placement_rows(snapshot, stack)


def test_k8s_dry_run_places_gpu_steps_on_gpu_pods(k8s_env: dict[str, str]) -> None:
    rows = _k8s_rows("k8s")
    gpu_rows = [r for r in rows if "step operator" in r["where"]]
    cpu_rows = [r for r in rows if "orchestrator" in r["where"]]
    assert gpu_rows and cpu_rows
    for row in gpu_rows:
        assert "nvidia.com/gpu=1" in row["resources"]
        assert row["device"] == "cuda"
        assert "nvidia.com/gpu:NoSchedule" in row["tolerations"]
    for row in cpu_rows:
        assert "nvidia.com/gpu" not in row["resources"]
        assert "cpu=2" in row["resources"]


def test_k8s_dry_run_rejects_malformed_pod_settings(k8s_env, tmp_path: Path) -> None:
    text = (STACK_DIR / "k8s.yaml").read_text()
    text = text.replace("tolerations:\n", "tolerations: not-a-list\n", 1)
    text = "\n".join(
        line
        for line in text.splitlines()
        if not line.strip().startswith(("- key:", "operator:", "effect:"))
    )
    path = tmp_path / "k8s-broken.yaml"
    path.write_text(text)
    with pytest.raises(
        RunConfigError,
        match=r"k8s-broken\.yaml: malformed KubernetesStepOperatorSettings: "
        r"pod_settings\.tolerations",
    ):
        _k8s_rows(path)


def test_cli_dry_run_prints_placement(k8s_env) -> None:
    from pipelines.run import app

    result = CliRunner().invoke(app, ["--stack", "k8s", "--dry-run", "zoo"])
    assert result.exit_code == 0, result.output
    title, header, *lines = result.output.splitlines()
    assert "dry run: nothing was started" in title
    assert header.split("\t") == ["step", "where", "device", "resources", "tolerations"]
    placement = {line.split("\t")[0]: line.split("\t")[1:] for line in lines}
    gpu_step = placement["pretrain_clm-lr1.6e-2"]
    assert gpu_step[:2] == ["step operator sftcast-k8s-gpu (kubernetes)", "cuda"]
    assert placement["build_data"][0].startswith("orchestrator sftcast-k8s-orchestrator")


def test_cli_dry_run_fails_clearly_without_the_cluster_context(k8s_env, monkeypatch) -> None:
    from pipelines.run import app

    monkeypatch.setenv("SFTCAST_K8S_CONTEXT", "no-such-context")
    result = CliRunner().invoke(app, ["--stack", "k8s", "--dry-run", "zoo"])
    assert result.exit_code == 2
    assert "no-such-context" in result.output


def test_every_missing_variable_is_named_at_once() -> None:
    with pytest.raises(StackFileError) as err:
        load_stack_file("k8s", env={})
    message = str(err.value)
    required = ("SFTCAST_K8S_CONTEXT", "SFTCAST_ARTIFACT_STORE", "SFTCAST_REGISTRY_URI")
    for name in (*required, "SFTCAST_MLFLOW_URI"):
        assert name in message, message
    assert "SFTCAST_K8S_NAMESPACE" not in message  # it has a default
    assert message.count("SFTCAST_K8S_CONTEXT") == 1  # named once, though used four times


def test_yaml_errors_name_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("stack_name: x\ncomponents: {orchestrator: [\n")
    with pytest.raises(StackFileError) as err:
        load_stack_file(path)
    assert str(err.value).startswith(f"{path}: not valid YAML at line 3, column 1: ")
    assert "\n" not in str(err.value)


def test_kubernetes_contexts_are_checked_against_the_kubeconfig(
    k8s_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    stack = load_stack_file("k8s")
    check_kubernetes_contexts(stack)  # the fixture's kubeconfig has the context

    monkeypatch.setenv("SFTCAST_K8S_CONTEXT", "elsewhere")
    with pytest.raises(StackFileError, match=r"no Kubernetes context elsewhere in .* sftcast-test"):
        check_kubernetes_contexts(load_stack_file("k8s"))

    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    with pytest.raises(StackFileError, match="could not load the Kubernetes configuration"):
        check_kubernetes_contexts(stack)
    check_kubernetes_contexts(load_stack_file("local"))  # no Kubernetes: nothing to check


def test_tracking_schemes_are_those_mlflow_takes() -> None:
    """stacks.py spells the schemes out (mlflow takes seconds to import): held to MLflow's."""
    from mlflow.store.db.db_types import DATABASE_ENGINES
    from mlflow.tracking._tracking_service.utils import _tracking_store_registry

    from deploy.stacks import DATABASE_SCHEMES, TRACKING_SCHEMES

    assert set(DATABASE_SCHEMES) == set(DATABASE_ENGINES)
    for scheme in TRACKING_SCHEMES:
        _tracking_store_registry.get_store_builder(f"{scheme}://host/x")  # raises if unknown


def test_tracking_uri_is_the_experiment_trackers() -> None:
    stack = load_stack_file("local", env={"SFTCAST_ROOT": "/srv/sftcast"})
    assert tracking_uri(stack) == "sqlite:////srv/sftcast/mlruns/mlflow.db"


def test_k8s_dry_run_writes_the_jobs_valid_against_the_kubernetes_schema(k8s_env) -> None:
    from deploy.manifests import validate_manifest
    from deploy.runconfig import MANIFESTS_DIR
    from pipelines.run import app

    folder = MANIFESTS_DIR / "sftcast_zoo"
    result = CliRunner().invoke(app, ["--stack", "k8s", "--dry-run", "zoo"])
    assert result.exit_code == 0, result.output
    assert f"Kubernetes Jobs in {folder}, valid" in result.output
    jobs = {path.stem: path for path in folder.glob("*.yaml")}
    steps = {line.split("\t")[0] for line in result.output.splitlines()[2:] if "\t" in line}
    operated = {s.removesuffix(".step-operator") for s in jobs if s.endswith(".step-operator")}
    assert set(jobs) == {"orchestrator", *steps, *(f"{s}.step-operator" for s in operated)}
    assert operated and all(s.startswith("pretrain_") for s in operated)

    for name, path in jobs.items():
        assert validate_manifest(path)  # as a user would check it: offline, strict
        job = yaml.safe_load(path.read_text())
        assert (job["apiVersion"], job["kind"]) == ("batch/v1", "Job")
        pod = job["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["image"].startswith("registry.example.com/sftcast/")
        resources = container["resources"]
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        if name.endswith(".step-operator"):  # the GPU pod
            assert resources["limits"]["nvidia.com/gpu"] == "1"
            assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
            assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
            assert env["SFTCAST_DEVICE"] == "cuda"
        else:
            assert "nvidia.com/gpu" not in yaml.safe_dump(resources)
            assert "nodeSelector" not in pod


def test_a_manifest_off_the_kubernetes_schema_is_named(tmp_path: Path) -> None:
    from deploy.manifests import ManifestError, validate_manifest

    path = tmp_path / "job.yaml"
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "x"},
           "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [
               {"name": "main", "image": "i", "resources": {"limits": ["nvidia.com/gpu"]}}
           ]}}}}  # fmt: skip
    path.write_text(yaml.safe_dump(job))
    with pytest.raises(ManifestError) as err:
        validate_manifest(path)
    assert str(err.value).startswith(f"{path}: spec.template.spec.containers.0.resources.limits")
    job["spec"]["template"]["spec"]["containers"][0]["resources"] = {"limits": {"cpu": "1"}}
    job["spec"]["template"]["spec"]["nodeSelectors"] = {"a": "b"}  # a typo: strict refuses it
    path.write_text(yaml.safe_dump(job))
    with pytest.raises(ManifestError, match="nodeSelectors"):
        validate_manifest(path)


def test_k8s_dry_run_of_watch_writes_each_ready_checkpoints_scoring_jobs(
    k8s_env, tiny_candidate: Path, tmp_path: Path
) -> None:
    import shutil

    from deploy.runconfig import MANIFESTS_DIR
    from pipelines.run import app

    watched = tmp_path / "watched"
    shutil.copytree(tiny_candidate, watched / "checkpoint-100")
    folder = MANIFESTS_DIR / "sftcast_watch"
    args = ["--stack", "k8s", "--dry-run", "watch", "--folder", str(watched), "--task", "cls",
            "--settle", "0"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert f"Kubernetes Jobs in {folder}, valid" in result.output
    jobs = {path.stem for path in folder.glob("*.yaml")}
    assert {"orchestrator", "fetch_checkpoint", "proxies_checkpoint", "score_cls"} <= jobs, jobs
