"""The `containers` stack: the pods' image built as the k8s stack builds it, and a tiny `select`
with every step in a container of it, tracking and registering through the MLflow server of
`services up --containers`. Builds an image: minutes; `make test-services` runs it (after
`make test`, in .ci/run); elsewhere it skips, saying so."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from test_services import (
    REPO_ROOT,
    cli,
    in_test_services,
    last_select_run,
    mlflow_client,
    needs_postgres,
    services_of,
    started_services,
)

from deploy.services import ENGINE

pytestmark = [
    needs_postgres,
    pytest.mark.slow,
    pytest.mark.xdist_group("containers"),
    in_test_services,
    pytest.mark.skipif(not shutil.which("podman"), reason="podman is not installed"),
]
BASE_IMAGE = "docker.io/library/python:3.11-slim-bookworm"


@pytest.fixture(scope="module")
def containers_env() -> Iterator[dict[str, str]]:
    """The services with the engine, and the base image (a stand-in where none can be pulled)."""
    with started_services("--containers") as env:
        env["DOCKER_HOST"] = services_of(env).url(ENGINE)
        conf = {"CONTAINERS_CONF": str(REPO_ROOT / "zenml_stack" / "containers.conf")}
        base = subprocess.run(
            [str(REPO_ROOT / "zenml_stack" / "stand-in-base.sh"), BASE_IMAGE],
            env={**env, **conf}, capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert base.returncode == 0, base.stdout + base.stderr
        yield env


def test_a_tiny_select_runs_every_step_in_the_image(
    containers_env: dict[str, str], make_select_config, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = containers_env
    stores = Path(env["SFTCAST_ROOT"])
    # the run's folders under SFTCAST_ROOT: the one folder every container sees
    config = yaml.safe_load(make_select_config("test-ctr-{task}").read_text())
    parameters = config["parameters"]
    for section, key in (("data", "output_dir"), ("zoo", "root"), ("sft", "output_dir")):
        parameters[section][key] = str(stores / section)
    path = stores / "select.yaml"
    path.write_text(yaml.safe_dump(config))

    # INFO: ZenML says which step runs in a container, and relays the container's lines
    verbose = {**env, "ZENML_LOGGING_VERBOSITY": "INFO"}
    run = cli(verbose, "--stack", "containers", "--config", str(path), "select", "--force")
    assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-5000:]
    output = run.stdout + run.stderr
    steps = [line for line in output.splitlines() if line.startswith("Running step `")]
    ran = {line.split("`")[1] for line in steps if line.rstrip().endswith("in Docker:")}
    assert {"build_data", "zoo_tokenizer", "select_cls"} <= ran
    assert any(name.startswith("sft_cls_") for name in ran)

    # through the MLflow server: the promoted version, its lineage to the ZenML run
    client = mlflow_client(services_of(env), monkeypatch)
    holder = client.get_model_version_by_alias("test-ctr-cls", "production")
    zenml_run = last_select_run(env)  # as the ZenML server has it
    assert holder.tags["zenml.pipeline_run_id"] == zenml_run["id"]
    assert set(zenml_run["steps"].values()) == {"completed"}

    # the image's torch is the CPU build: no CUDA libraries on a CPU base
    image = subprocess.run(
        ["podman", "--url", env["DOCKER_HOST"], "images", "--format", "json"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    names = [n for i in json.loads(image.stdout) for n in i.get("Names") or []]
    built = next(n for n in names if "sftcast_select" in n)
    probe = subprocess.run(
        ["podman", "--url", env["DOCKER_HOST"], "run", "--rm", built, "python", "-c",
         "import torch, importlib.metadata as m; print(torch.__version__); "
         "print(sorted(d.metadata['Name'] for d in m.distributions() "
         "if d.metadata['Name'].startswith('nvidia')))"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    version, nvidia = probe.stdout.split("\n")[:2]
    assert version.endswith("+cpu") and nvidia == "[]", probe.stdout
