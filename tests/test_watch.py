"""`sftcast watch` (issue #33) through the real command line, against a real `select` run's
comparator in production: checkpoints written file by file while it polls are each scored once,
at their final content; a killed watcher and two concurrent ones leave every checkpoint scored
once and a pickle-only one rejected once; Ctrl-C stops it cleanly; a task without a comparator
in production, or a folder that is not there, is a clear exit 2."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import yaml

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("watch")]

REPO_ROOT = Path(__file__).resolve().parents[1]
MODEL = "test-watch-{task}"
TINY = {"hidden_size": 32, "num_layers": 2, "num_heads": 2, "intermediate_size": 64}
SMALL = {"train_size": 40, "validation_size": 10, "test_size": 12, "max_chars": 200}
# as conftest's gate: candidates far apart, so that the comparator has something to learn
LEARNING_RATES = {"clm-a": 4e-3, "clm-b": 1e-3, "clm-c": 1e-6}


def _variant(name: str, lr: float, checkpoints: list[int]) -> dict:
    return {"name": name, "family": "test", "objective": "clm", "learning_rate": lr,
            "steps": 12, "checkpoint_steps": checkpoints, "batch_size": 4,
            "seq_len": 64}  # fmt: skip


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny `select` run whose comparator and chosen model are in production, and two
    pre-training runs it never saw (checkpoints 3, 6 and 12), to be watched."""
    root = tmp_path_factory.mktemp("watch")
    parameters = {
        "data": {"output_dir": str(root / "data"),
                 "tasks": dict.fromkeys(("cbqa", "rag", "cls"), SMALL)},
        "zoo": {"root": str(root / "zoo"), "tokenizer_vocab_size": 512,
                "model": {**TINY, "max_length": 128},
                "variants": [_variant(n, lr, [3, 12]) for n, lr in LEARNING_RATES.items()]},
        "sft": {"output_dir": str(root / "sft"), "tasks": ["cls"], "epochs": 2, "batch_size": 8,
                "max_length": 128, "registered_model": MODEL},
        "evaluation": {"max_length": 128, "shots": {"cbqa": 1, "rag": 1, "cls": 1},
                       "demo_context_tokens": 16},
        "proxies": {"heldout_docs": 4, "seq_len": 64},
        "selection": {"labelled": "all", "splits": 5, "force": True},
    }  # fmt: skip
    config = root / "watch.yaml"
    config.write_text(yaml.safe_dump({"parameters": parameters}))
    done = cli(config, "select")
    assert done.returncode == 0, done.stdout + done.stderr
    runs = {name: _pretrain(parameters, name, lr, root / "runs") for name, lr in
            (("clm-d", 2e-3), ("clm-e", 6e-4))}  # fmt: skip
    return {"config": config, **runs}


def _pretrain(parameters: dict, name: str, lr: float, where: Path) -> Path:
    """A pre-training run the select never saw, with the zoo's tokenizer and corpus."""
    from sftcast.data.corpus import load_corpus
    from sftcast.zoo.config import ZooConfig
    from sftcast.zoo.train import pretrain_variant

    zoo = ZooConfig(**{**parameters["zoo"], "variants": [_variant(name, lr, [3, 6, 12])]})
    corpus = load_corpus(next(Path(parameters["data"]["output_dir"]).glob("*/corpus")))
    pretrain_variant(zoo.variants[0], corpus, zoo.tokenizer_dir, where, progress=False)
    return where / zoo.variants[0].run_name


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "pipelines/run.py", "--config", str(config), *args],
        cwd=REPO_ROOT, capture_output=True, text=True,
    )  # fmt: skip


class Watching:
    """`watch` in a process group of its own, its output gathered line by line."""

    def __init__(self, config: Path, folder: Path, *args: str, env: dict | None = None) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "pipelines/run.py", "--config", str(config), "watch",
             "--folder", str(folder), "--task", "cls", *args],
            cwd=REPO_ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})}, start_new_session=True,
        )  # fmt: skip
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, text: str, count: int = 1, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while self.output.count(text) < count:
            assert self.process.poll() is None, f"exited {self.process.returncode}:\n{self.output}"
            assert time.monotonic() < deadline, f"no {count}x {text!r} in:\n{self.output}"
            time.sleep(0.2)

    def finish(self, timeout: float = 300) -> int:
        code = self.process.wait(timeout)
        self._reader.join(10)
        return code


# A slow writer, in a process of its own: per checkpoint, the small files, then the weights in
# four chunks with a pause (longer than the watcher's settle time) after each.
WRITER = """
import shutil, sys, time
from pathlib import Path
source, target, pause = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3])
for step in (3, 6, 12):
    src, dst = source / f"checkpoint-{step}", target / f"checkpoint-{step}"
    dst.mkdir()
    weights = src / "model.safetensors"
    for file in sorted(src.iterdir()):
        if file != weights:
            shutil.copy2(file, dst / file.name)
    data = weights.read_bytes()
    chunk = len(data) // 4 + 1
    with (dst / weights.name).open("wb") as out:
        for start in range(0, len(data), chunk):
            out.write(data[start : start + chunk])
            out.flush()
            time.sleep(pause)
"""


def scorings(client, folder: Path) -> dict[str, list[dict]]:
    """content hash -> the finished scoring runs' logged scores; rejections under "rejected"."""
    import mlflow

    from sftcast.watch.records import EXPERIMENT, TAG_FOLDER, TAG_HASH, TAG_OUTCOME

    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs(
        [experiment.experiment_id],
        f"tags.`{TAG_FOLDER}` = '{folder}' and attributes.status = 'FINISHED'",
    )
    found: dict[str, list[dict]] = {}
    for run in runs:
        outcome = run.data.tags.get(TAG_OUTCOME)  # none on the folder's own run
        if outcome is None:
            continue
        if outcome == "rejected":
            found.setdefault("rejected", []).append(run.data.tags)
            continue
        local = mlflow.artifacts.download_artifacts(
            run_id=run.info.run_id, artifact_path="watch_cls.json"
        )
        found.setdefault(run.data.tags[TAG_HASH], []).append(json.loads(Path(local).read_text()))
    return found


@pytest.fixture
def watched(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "watched"
    folder.mkdir()
    yield folder


def test_checkpoints_written_while_watched_are_scored_once_at_their_final_content(
    world, watched, tracking
):
    from sftcast.promotion import PromotionRefused, promote
    from sftcast.registry import alias_version
    from sftcast.watch.challenger import CHALLENGER
    from sftcast.watch.folder import content_hash
    from sftcast.watch.pool import load_pool, production_comparator
    from sftcast.watch.records import TAG_FOLDER_RUN

    watcher = Watching(world["config"], watched, "--interval", "0.3", "--settle", "0.5")
    watcher.wait_for("watching ")
    writer = subprocess.run(
        [sys.executable, "-c", WRITER, str(world["clm-d"]), str(watched), "1.0"], timeout=300
    )
    assert writer.returncode == 0
    watcher.wait_for(" cls: predicted to beat ", count=3)
    watcher.process.send_signal(signal.SIGINT)
    code = watcher.finish()
    output = watcher.output

    assert code == 0, output
    assert "SIGINT: stopping after the checkpoint in hand" in output, output
    assert "being written" in output, output  # the truncated weights were waited for
    assert not re.search(r"^(rejected|failed) ", output, re.MULTILINE), output
    found = scorings(tracking(), watched)
    hashes = {content_hash(watched / f"checkpoint-{s}"): s for s in (3, 6, 12)}
    assert set(found) == set(hashes), found
    assert all(len(runs) == 1 for runs in found.values()), found  # each scored exactly once
    assert {runs[0]["step"] for runs in found.values()} == {3, 6, 12}

    client = tracking()
    folder_run = client.search_runs(
        [client.get_experiment_by_name("sftcast_watch").experiment_id],
        f"tags.`{TAG_FOLDER_RUN}` = '{watched}'",
    )
    assert len(folder_run) == 1
    run_id = folder_run[0].info.run_id
    assert [a.path for a in client.list_artifacts(run_id, "figures")] == ["figures/watch_cls.png"]
    assert len(client.get_metric_history(run_id, "standing.cls")) == 3

    # the challenger is the checkpoint the comparator prefers to every other one scored
    challenger = alias_version(MODEL.format(task="cls"), CHALLENGER)
    assert challenger is not None and challenger.tags["sftcast.stage"] == "pretrained"
    best = challenger.tags["sftcast.checkpoint_key"]
    assert best in hashes
    pool = load_pool("cls", production_comparator("cls"), MODEL.format(task="cls"))
    frame = pd.DataFrame([{"candidate": h, **runs[0]["proxies"]} for h, runs in found.items()])
    preference = pool.preference(frame)
    row = list(frame["candidate"]).index(best)
    assert all(preference[row, j] >= 0.5 for j in range(len(frame)) if j != row), preference
    with pytest.raises(PromotionRefused, match="pre-trained"):
        promote(
            challenger.name,
            challenger.version,
            evidence={},
            pipeline_run_id="",
            predictor="ltc",
            force=True,
        )


def test_a_killed_watcher_and_two_concurrent_ones_score_each_checkpoint_once(
    world, watched, tracking
):
    import torch
    from safetensors.torch import load_file

    for step in (3, 6, 12):
        shutil.copytree(world["clm-e"] / f"checkpoint-{step}", watched / f"checkpoint-{step}")
    pickled = watched / "checkpoint-50"  # the same model, its weights as a pickle only
    shutil.copytree(watched / "checkpoint-3", pickled)
    weights = pickled / "model.safetensors"
    torch.save(load_file(weights), pickled / "pytorch_model.bin")
    weights.unlink()
    for entry in watched.rglob("*"):
        os.utime(entry, (time.time() - 60, time.time() - 60))

    # killed outright (SIGKILL, the whole process group) while a checkpoint is being scored
    killed = Watching(world["config"], watched, "--settle", "0",
                      env={"ZENML_LOGGING_VERBOSITY": "INFO"})  # fmt: skip
    killed.wait_for("Step `score_cls` has started")
    os.killpg(killed.process.pid, signal.SIGKILL)
    killed.finish()

    pair = [Watching(world["config"], watched, "--settle", "0", "--once") for _ in range(2)]
    codes = [w.finish() for w in pair]
    output = "\n".join(w.output for w in pair)

    assert codes == [0, 0], output
    found = scorings(tracking(), watched)
    assert len(found.pop("rejected", [])) == 1, output
    assert len(found) == 3 and all(len(runs) == 1 for runs in found.values()), found
    assert output.count("rejected checkpoint-50") <= 1, output  # none if the killed one did
    again = Watching(world["config"], watched, "--settle", "0", "--once")
    assert again.finish() == 0
    assert "0 scored, 0 rejected, 0 failed" in again.output, again.output


def test_a_task_without_a_comparator_in_production_or_no_folder_is_exit_2(world, watched):
    no_comparator = cli(world["config"], "watch", "--folder", str(watched), "--task", "rag")
    missing = cli(world["config"], "watch", "--folder", str(watched / "nope"), "--task", "cls")

    assert no_comparator.returncode == 2, no_comparator.stdout + no_comparator.stderr
    said = " ".join((no_comparator.stdout + no_comparator.stderr).split())
    assert "task 'rag' has no comparator in production" in said and "select" in said, said
    assert missing.returncode == 2
    assert "no such folder" in missing.stdout + missing.stderr


def test_a_checkpoint_predicted_ahead_of_production_is_finetuned_and_promoted_on_its_score(
    world, watched, tracking
):
    """Production moved (by hand, as an operator may) to the barely trained candidate; a copy
    of a well-trained one is predicted ahead, fine-tuned (its version found by its SFT key) and
    promoted only if its measured score beats production's."""
    client = tracking()
    name = MODEL.format(task="cls")
    versions = {
        v.tags["sftcast.candidate"]: v
        for v in client.search_model_versions(f"name = '{name}'")
        if v.tags.get("sftcast.stage") != "pretrained"
    }
    weakest, strong = versions["zoo:clm-c@3"], versions["zoo:clm-b@3"]
    client.set_registered_model_alias(name, "production", weakest.version)
    zoo = Path(yaml.safe_load(world["config"].read_text())["parameters"]["zoo"]["root"])
    shutil.copytree(next(zoo.glob("clm-b-*/checkpoint-3")), watched / "checkpoint-3")

    done = cli(world["config"], "watch", "--folder", str(watched), "--task", "cls", "--once",
               "--settle", "0", "--finetune-when", "beats-production")  # fmt: skip

    assert done.returncode == 0, done.stdout + done.stderr
    assert "ahead beyond the comparator's spread" in done.stdout, done.stdout
    assert "cls: fine-tuned to " in done.stdout, done.stdout
    holder = client.get_registered_model(name).aliases["production"]
    ahead = float(strong.tags["metric.score"]) > float(weakest.tags["metric.score"])
    assert str(holder) == str(strong.version if ahead else weakest.version), done.stdout
    if ahead:
        evidence = client.get_model_version(name, strong.version).tags["sftcast.promotion.evidence"]
        assert '"watch"' in evidence and '"measured"' in evidence, evidence
