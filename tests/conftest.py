"""Test isolation: every test session (each xdist worker) gets its own ZenML config and
repository, its own MLflow store, stores root and state folder (run configs, manifests), all
in a temporary folder. Set before anything imports ZenML."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
SESSION_DIR = Path(tempfile.mkdtemp(prefix="sftcast-tests-"))
atexit.register(shutil.rmtree, SESSION_DIR, ignore_errors=True)
TRACKING_URI = f"sqlite:///{SESSION_DIR / 'stores' / 'mlruns' / 'mlflow.db'}"
os.environ.update(
    {
        "ZENML_CONFIG_PATH": str(SESSION_DIR / "zenml-config"),
        "ZENML_REPOSITORY_PATH": str(SESSION_DIR / "zenml-repo"),
        "ZENML_CUSTOM_SOURCE_ROOT": str(REPO_ROOT),
        "ZENML_ANALYTICS_OPT_IN": "false",
        "ZENML_LOGGING_VERBOSITY": "WARN",
        "ZENML_ENABLE_RICH_TRACEBACK": "false",
        "SFTCAST_ROOT": str(SESSION_DIR / "stores"),
        "SFTCAST_STATE_DIR": str(SESSION_DIR / "state"),
        "MLFLOW_TRACKING_URI": TRACKING_URI,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE"),  # see the Makefile
    }
)
(SESSION_DIR / "zenml-repo").mkdir()
(SESSION_DIR / "stores" / "mlruns").mkdir(parents=True)

FAKE_KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters:
- cluster: {server: "https://127.0.0.1:6443"}
  name: fake
contexts:
- context: {cluster: fake, user: fake}
  name: sftcast-test
current-context: sftcast-test
users:
- name: fake
  user: {token: not-a-secret}
"""


@pytest.fixture(scope="session")
def zenml_client():
    """A ZenML repository with the local stack registered and active."""
    from zenml.client import Client

    from deploy.stacks import ensure_repository, load_stack_file, register_stack

    ensure_repository()
    register_stack(load_stack_file("local"), activate=True)
    return Client()


@pytest.fixture
def k8s_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, zenml_client) -> dict[str, str]:
    """What an operator sets for the k8s stack, with a kubeconfig naming a cluster that does
    not exist: enough to validate and compile, never to run."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(FAKE_KUBECONFIG)
    env = {
        "KUBECONFIG": str(kubeconfig),
        "SFTCAST_K8S_CONTEXT": "sftcast-test",
        "SFTCAST_ARTIFACT_STORE": "s3://sftcast-test-bucket/zenml",
        "SFTCAST_REGISTRY_URI": "registry.example.com/sftcast",
        "SFTCAST_MLFLOW_URI": "https://mlflow.example.com",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    # the kubernetes package reads KUBECONFIG once, at import, for ZenML's checks: this test's
    from kubernetes.config import kube_config

    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(kubeconfig))
    if not zenml_client.list_secrets(name="sftcast_mlflow").items:
        zenml_client.create_secret("sftcast_mlflow", values={"username": "u", "password": "p"})
    return env


@pytest.fixture
def tracking():
    """Point MLflow at the session's store: ZenML's tracker resets the URI, and the
    MLFLOW_TRACKING_URI variable, after each step."""
    import mlflow

    def point() -> mlflow.MlflowClient:
        os.environ["MLFLOW_TRACKING_URI"] = TRACKING_URI
        mlflow.set_tracking_uri(TRACKING_URI)
        return mlflow.MlflowClient()

    return point


# The `select` pipeline on a tiny zoo: 2 (or 3) variants x 2 checkpoints, SFT on `cls` only.
TINY = {"hidden_size": 32, "num_layers": 2, "num_heads": 2, "intermediate_size": 64}
SMALL = {"train_size": 40, "validation_size": 10, "test_size": 12, "max_chars": 200}


def _variant(name: str, lr: float) -> dict:
    return {"name": name, "family": "test", "objective": "clm", "learning_rate": lr, "steps": 6,
            "checkpoint_steps": [3, 6], "batch_size": 4, "seq_len": 64}  # fmt: skip


@pytest.fixture
def make_select_config(tmp_path: Path):
    """Write a run configuration of the tiny `select` pipeline under `tmp_path`, registering
    fine-tuned models as `registered_model` (`{task}` is filled in), with `variants` zoo
    variants (2 checkpoints each) and `selection` and `sft` settings overridden; returns its
    path."""

    def make(
        registered_model: str = "test-sel-{task}",
        *,
        variants: int = 2,
        selection: dict | None = None,
        **sft: object,
    ) -> Path:
        parameters = {
            "data": {"output_dir": str(tmp_path / "data"),
                     "tasks": dict.fromkeys(("cbqa", "rag", "cls"), SMALL)},
            "zoo": {"root": str(tmp_path / "zoo"), "tokenizer_vocab_size": 512,
                    "model": {**TINY, "max_length": 128},
                    "variants": [_variant(f"clm-{name}", lr) for name, lr in
                                 zip("abc", (4e-3, 1e-3, 2e-3), strict=False)][:variants]},
            "sft": {"output_dir": str(tmp_path / "sft"), "tasks": ["cls"], "epochs": 2,
                    "batch_size": 8, "max_length": 128, "registered_model": registered_model,
                    **sft},
            "evaluation": {"max_length": 128, "shots": {"cbqa": 1, "rag": 1, "cls": 1},
                           "demo_context_tokens": 16},
            "proxies": {"heldout_docs": 4, "seq_len": 64},
            "selection": {"labelled": "all", "splits": 5, **(selection or {})},
        }  # fmt: skip
        name = "-".join(["select", f"v{variants}", *(f"{k}{v}" for k, v in sft.items())])
        path = tmp_path / f"{name}{'-sel' if selection else ''}.yaml"
        path.write_text(yaml.safe_dump({"parameters": parameters}))
        return path

    return make


@pytest.fixture
def select_config(make_select_config) -> Path:
    return make_select_config()


# Candidates that differ a lot, for the promotion gate: next to two normal variants, one at a
# learning rate so low it barely trains, each saved at checkpoints 4x apart.
GATE_LEARNING_RATES = (4e-3, 1e-3, 1e-6)


@pytest.fixture
def make_gate_config(make_select_config):
    """Write the tiny `select` run whose gate decides: 3 variants (`GATE_LEARNING_RATES`) x
    checkpoints 3 and 12, every candidate labelled, `predictor` pinned; returns its path."""

    def make(registered_model: str, predictor: str) -> Path:
        path = make_select_config(registered_model, variants=3, selection={"predictor": predictor})
        config = yaml.safe_load(path.read_text())
        variants = config["parameters"]["zoo"]["variants"]
        for variant, lr in zip(variants, GATE_LEARNING_RATES, strict=True):
            variant.update(learning_rate=lr, steps=12, checkpoint_steps=[3, 12])
        gate = path.with_name(f"gate-{predictor}.yaml")
        gate.write_text(yaml.safe_dump(config))
        return gate

    return make


# A tiny real candidate and task rows, for SFT and probes (module scope: each module trains its
# own tokenizer once). sftcast is imported inside: this file sets the environment it reads.
TINY_SFT_SIZE = {"hidden_size": 32, "num_layers": 2, "num_heads": 2, "intermediate_size": 64}
SFT_SIZES = {"train_size": 64, "validation_size": 8, "test_size": 32}


@pytest.fixture(scope="module")
def tiny_task_rows() -> dict[str, dict[str, list[dict]]]:
    from sftcast.data import DataConfig, build_all

    config = DataConfig(tasks={t: {**SFT_SIZES, "max_chars": 200} for t in ("cbqa", "rag", "cls")})
    corpus, tasks, _ = build_all(config)
    rows = {t: {s: ds.to_list() for s, ds in dd.items()} for t, dd in tasks.items()}
    rows["_corpus"] = corpus  # type: ignore[assignment]
    return rows


@pytest.fixture(scope="module")
def tiny_candidate(tiny_task_rows, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A freshly initialised tiny Llama with a real BPE tokenizer, saved like a zoo checkpoint."""
    from sftcast.zoo import ModelSize
    from sftcast.zoo.data import train_texts
    from sftcast.zoo.model import build_model, save_checkpoint
    from sftcast.zoo.tokenizer import train_tokenizer

    root = tmp_path_factory.mktemp("candidate")
    texts = [t for docs in train_texts(tiny_task_rows["_corpus"]).values() for t in docs[:200]]
    tokenizer = train_tokenizer(texts, 512, root / "tokenizer", model_max_length=128)
    model = build_model(ModelSize(**TINY_SFT_SIZE, max_length=128), tokenizer, seed=0)
    return save_checkpoint(model, tokenizer, root / "checkpoint-0", "# tiny", {"step": 0})
