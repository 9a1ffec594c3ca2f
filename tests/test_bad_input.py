"""Bad input at every entry of the command line (issue #6): run configurations, external
candidate URIs, `validate` datasets and `compare` tables. Each case goes through the real CLI
and must end in a clear error that names the offending input (file, key path, URI, row,
column), with exit code 2 for configuration and input errors and 1 for a dataset that fails
validation; none may start a pipeline, and none may change the MLflow registry."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
import yaml
import zenml.logger  # noqa: F401 (ZenML's log stream binds the real stdout, not a CliRunner's)
from safetensors.torch import load_file, save_file
from test_validation import valid_rows  # the same tiny valid rows the validation tests use
from typer.testing import CliRunner

import cli.render
import deploy.stacks
from pipelines.run import app
from sftcast.zoo import ModelSize
from sftcast.zoo.model import CHECKPOINT_META, build_model, save_checkpoint
from sftcast.zoo.tokenizer import train_tokenizer

TINY = ModelSize(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32, max_length=32)
GUARD_MODEL = "bad-input-guard"  # a registered model with a version and an alias: must survive
TEXTS = [
    "Shares rose after the merger was announced on Monday.",
    "The striker scored twice in the second half.",
    "Parliament passed the bill after a long debate.",
    "A new phone chip was unveiled at the fair.",
] * 4


@dataclass
class Env:
    tmp: Path  # this case's own folder
    good: Path  # the tiny real candidate: never damaged, copied by the cases that break it
    monkeypatch: pytest.MonkeyPatch | None = None  # undoes what `setenv` sets, after the case

    def setenv(self, **variables: str) -> None:
        """Set environment variables for this case only."""
        assert self.monkeypatch is not None, "this Env cannot set variables"
        for name, value in variables.items():
            self.monkeypatch.setenv(name, value)

    def broken(self, damage: Callable[[Path], Any]) -> str:
        """A copy of the good candidate, damaged by `damage`; its path as a URI."""
        copy = self.tmp / "candidate"
        shutil.copytree(self.good, copy)
        damage(copy)
        return str(copy)


# A case makes its input under `env.tmp` and returns the CLI arguments and what the message
# must contain ("{tmp}" stands for the case's folder).
Case = Callable[[Env], tuple[list[str], list[str]]]


@pytest.fixture(scope="module")
def good_candidate(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny real Llama checkpoint in Hugging Face format (safetensors, config, tokenizer,
    the recorded sha256 of its weights), as the zoo writes one."""
    root = tmp_path_factory.mktemp("bad-input")
    tokenizer = train_tokenizer(TEXTS, 512, root / "tokenizer", model_max_length=32)
    model = build_model(TINY, tokenizer, seed=0)
    return save_checkpoint(model, tokenizer, root / "good", "# tiny\n", {"step": 1})


# --- run configurations -------------------------------------------------------------------------


def _variant(name: str) -> dict[str, Any]:
    return {"name": name, "steps": 6, "checkpoint_steps": [3, 6], "batch_size": 2, "seq_len": 32}


def base_parameters(tmp: Path) -> dict[str, Any]:
    """A valid `select` configuration (4 zoo candidates); the cases break one thing in it."""
    return {
        "data": {"output_dir": str(tmp / "data")},
        "zoo": {
            "root": str(tmp / "zoo"),
            "tokenizer_vocab_size": 512,
            "model": TINY.model_dump(),
            "variants": [_variant("a"), _variant("b")],
        },
        "sft": {"output_dir": str(tmp / "sft"), "tasks": ["cls"]},
        "evaluation": {},
        "proxies": {},
        "selection": {"labelled": "all"},
    }


def write_config(tmp: Path, parameters: dict[str, Any], **top: Any) -> Path:
    path = tmp / "run.yaml"
    path.write_text(yaml.safe_dump({"parameters": parameters, **top}))
    return path


def config(edit: Callable[[dict[str, Any]], Any], *needles: str, command: str = "select") -> Case:
    """The base configuration with `edit` applied to its parameters."""

    def make(env: Env) -> tuple[list[str], list[str]]:
        parameters = base_parameters(env.tmp)
        edit(parameters)
        path = write_config(env.tmp, parameters)
        return ["--config", str(path), command], [str(path), *needles]

    return make


def config_text(text: str, *needles: str) -> Case:
    """A configuration file with this exact content."""

    def make(env: Env) -> tuple[list[str], list[str]]:
        path = env.tmp / "run.yaml"
        path.write_text(text)
        return ["--config", str(path), "select"], [str(path), *needles]

    return make


def missing_config(env: Env) -> tuple[list[str], list[str]]:
    path = env.tmp / "absent.yaml"
    return ["--config", str(path), "select"], ["no run configuration", str(path)]


def unknown_top_level_key(env: Env) -> tuple[list[str], list[str]]:
    path = write_config(env.tmp, base_parameters(env.tmp), enable_cach=False)
    return ["--config", str(path), "select"], [str(path), "unknown top-level key", "enable_cach"]


def setting(section: str, key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda p: p[section].__setitem__(key, value)


def variant_setting(i: int, key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda p: p["zoo"]["variants"][i].__setitem__(key, value)


def every_variant(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(p: dict[str, Any]) -> None:
        for v in p["zoo"]["variants"]:
            v[key] = value

    return edit


# --- external candidates (zoo.candidates) -------------------------------------------------------


def candidate(uri: Callable[[Env], str] | str, *needles: str, **zoo_flags: bool) -> Case:
    """The base configuration with one external candidate; the message must name the key,
    the URI and the problem (`needles`)."""

    def make(env: Env) -> tuple[list[str], list[str]]:
        text = uri(env) if callable(uri) else uri
        parameters = base_parameters(env.tmp)
        parameters["zoo"] |= {"candidates": [str(env.good), text], **zoo_flags}
        path = write_config(env.tmp, parameters)
        return ["--config", str(path), "select"], [
            str(path),
            "parameters.zoo.candidates[1]",
            repr(text),
            *needles,
        ]

    return make


def damaged(damage: Callable[[Path], Any]) -> Callable[[Env], str]:
    return lambda env: env.broken(damage)


def truncate(folder: Path) -> None:
    (folder / CHECKPOINT_META).unlink()  # no recorded digest: the header check must catch it
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])


def flip_a_byte(folder: Path) -> None:
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF  # inside the tensor data: the header still parses
    weights.write_bytes(bytes(data))


def pickle_only(folder: Path) -> None:
    state = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    torch.save(state, folder / "pytorch_model.bin")


class _RunsCode:
    """Unpickled by plain `pickle`, this would create a folder."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


def code_in_pickle(folder: Path) -> None:
    (folder / "model.safetensors").unlink()
    marker = str(folder.parent / "unpickled-code-ran")
    torch.save({"model.norm.weight": _RunsCode(marker)}, folder / "pytorch_model.bin")


def edit_config_json(**changes: Any) -> Callable[[Path], None]:
    def damage(folder: Path) -> None:
        config_path = folder / "config.json"
        config_path.write_text(json.dumps({**json.loads(config_path.read_text()), **changes}))
        (folder / CHECKPOINT_META).unlink(missing_ok=True)

    return damage


def drop_tensor(folder: Path) -> None:
    state = load_file(folder / "model.safetensors")
    del state["model.norm.weight"]
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
    (folder / CHECKPOINT_META).unlink()


def drop_tokenizer(folder: Path) -> None:
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (folder / name).unlink()


def drop_vocabulary(folder: Path) -> None:
    """tokenizer_config.json stays; the vocabulary it describes (tokenizer.json) goes."""
    (folder / "tokenizer.json").unlink()


def garble_tokenizer(folder: Path) -> None:
    """A tokenizer.json that is JSON, but no tokenizer."""
    (folder / "tokenizer.json").write_text('{"version": "1.0", "model": 5}')


# --- validate --task T --dataset D --------------------------------------------------------------


def dataset(edit: Callable[[dict[str, list[dict[str, Any]]], Path], Any], *needles: str) -> Case:
    """Valid `cls` JSONL files, then `edit(rows, folder)` (before writing) may change rows or,
    after, overwrite files; `needles` may name files under the folder as `{dir}/...`."""

    def make(env: Env) -> tuple[list[str], list[str]]:
        folder = env.tmp / "my_cls"
        folder.mkdir()
        rows = valid_rows("cls")
        after = edit(rows, folder)
        for split, split_rows in rows.items():
            text = "".join(json.dumps(r) + "\n" for r in split_rows)
            (folder / f"{split}.jsonl").write_text(text, encoding="utf-8")
        if callable(after):
            after(folder)
        args = ["validate", "--task", "cls", "--dataset", str(folder)]
        return args, [str(folder), *(n.replace("{dir}", str(folder)) for n in needles)]

    return make


def set_cell(split: str, row: int, **changes: Any) -> Callable[..., None]:
    return lambda rows, folder: rows[split][row - 1].update(changes)


def drop_column(split: str, column: str) -> Callable[..., None]:
    def edit(rows: dict[str, list[dict[str, Any]]], folder: Path) -> None:
        for r in rows[split]:
            del r[column]

    return edit


def overwrite(name: str, content: bytes) -> Callable[..., Callable[[Path], None]]:
    return lambda rows, folder: lambda f: (f / name).write_bytes(content)


def replace_line(name: str, line: int, raw: bytes) -> Callable[..., Callable[[Path], None]]:
    def after(folder: Path) -> None:
        lines = (folder / name).read_bytes().split(b"\n")
        lines[line - 1] = raw
        (folder / name).write_bytes(b"\n".join(lines))

    return lambda rows, folder: after


def link_to(name: str, target: str) -> Callable[..., Callable[[Path], None]]:
    """After writing: `name` becomes a symbolic link to `target` ("{dir}": the folder)."""

    def after(folder: Path) -> None:
        (folder / name).unlink(missing_ok=True)
        (folder / name).symlink_to(target.replace("{dir}", str(folder)))

    return lambda rows, folder: after


def duplicate_id(rows: dict[str, list[dict[str, Any]]], folder: Path) -> None:
    rows["train"][2]["id"] = rows["train"][0]["id"]


def missing_dataset(env: Env) -> tuple[list[str], list[str]]:
    folder = env.tmp / "nowhere"
    return ["validate", "--task", "cls", "--dataset", str(folder)], [str(folder)]


def unknown_task(env: Env) -> tuple[list[str], list[str]]:
    folder = env.tmp / "my_cls"
    folder.mkdir()
    return ["validate", "--task", "poetry", "--dataset", str(folder)], ["'poetry' is not a task"]


def with_notes(rows: dict[str, list[dict[str, Any]]], folder: Path) -> Callable[[Path], None]:
    """Notes beside the data (ignored), and a second data file for the test split (refused)."""

    def after(f: Path) -> None:
        (f / "README.md").write_text("# my cls data\n")
        (f / ".notes").write_text("to do\n")
        (f / "test.csv").write_text("id,text,label\nn9,x,tech\n")

    return after


def many_nulls(rows: dict[str, list[dict[str, Any]]], folder: Path) -> None:
    rows["train"] = [{"id": f"t{i}", "text": "Oil prices fell.", "label": None} for i in range(30)]


def every_duplicate(rows: dict[str, list[dict[str, Any]]], folder: Path) -> None:
    for row in rows["train"][1:]:
        row["id"] = rows["train"][0]["id"]


def unterminated_string(env: Env) -> tuple[list[str], list[str]]:
    """json says "Unterminated string starting at" (position): the message says "at" once."""
    return dataset(
        replace_line("train.jsonl", 2, b'{"id": "n2", "text": "The film'),
        "{dir}/train.jsonl: split 'train', row 2 (line 2)",
        "invalid JSON: Unterminated string starting at character 22",
    )(env)


def cbqa_csv(answers: str, *needles: str) -> Case:
    """Valid `cbqa` CSV files whose test row 2 has this raw `answers` cell."""

    def make(env: Env) -> tuple[list[str], list[str]]:
        from test_validation import write_dataset

        folder = write_dataset(env.tmp / "my_cbqa", valid_rows("cbqa"), "csv")
        path = folder / "test.csv"
        text = path.read_text(encoding="utf-8")
        path.write_text(text.replace('"[""Capital of Nepal"", ""capital-nepal""]"', answers))
        args = ["validate", "--task", "cbqa", "--dataset", str(folder)]
        return args, [f"{path}: split 'test', row 2 (line 3), column 'answers'", *needles]

    return make


def logged_to(stack: Callable[[Path], str], *needles: str) -> Case:
    """A dataset that fails validation, logged to the stack `stack(folder)` names: the verdict
    (exit 1) stands, and one warning line says why the report was not logged."""

    def make(env: Env) -> tuple[list[str], list[str]]:
        args, found = dataset(set_cell("test", 1, label="weather"), "{dir}/test.jsonl")(env)
        return ["--stack", stack(env.tmp), *args], [
            *found,
            "failed validation",
            "warning: validation report not logged: ",
            *needles,
        ]

    return make


def unreachable_stack(tmp: Path) -> str:
    """A stack file whose MLflow tracking URI is a local port nobody listens on."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    components = {
        "orchestrator": [{"name": "o", "flavor": "local"}],
        "artifact_store": [
            {"name": "a", "flavor": "local", "configuration": {"path": str(tmp / "a")}}
        ],
        "experiment_tracker": [
            {
                "name": "t",
                "flavor": "mlflow",
                "configuration": {"tracking_uri": f"http://127.0.0.1:{port}"},
            }
        ],
    }
    path = tmp / "unreachable.yaml"
    path.write_text(yaml.safe_dump({"stack_name": "unreachable", "components": components}))
    return str(path)


# --- environment and command line --------------------------------------------------------------


def stack_tracking_to(env: Env, uri: str) -> Path:
    """The local stack file with its experiment tracker pointed at `uri`."""
    stack = yaml.safe_load((deploy.stacks.STACK_DIR / "local.yaml").read_text())
    stack["components"]["experiment_tracker"][0]["configuration"]["tracking_uri"] = uri
    path = env.tmp / "stack.yaml"
    path.write_text(yaml.safe_dump(stack))
    return path


def unusable_store(make_store: Callable[[Path], str], *command: str, needle: str) -> Case:
    """`command` on a stack whose MLflow store is the local one `make_store(folder)` makes
    and names: said in one line naming the store, before any work."""

    def make(env: Env) -> tuple[list[str], list[str]]:
        uri = make_store(env.tmp)
        path = stack_tracking_to(env, uri)
        if command == ("select",):  # a good configuration: the store is at fault
            args, _ = config(lambda p: None)(env)
            return [*args, "--stack", str(path)], [f"the MLflow store {uri} cannot be used", needle]
        return [*command, "--stack", str(path)], [f"the MLflow store {uri} cannot be used", needle]

    return make


def not_a_database(tmp: Path) -> str:
    (tmp / "mlflow.db").write_text("a text file where the MLflow database should be\n")
    return f"sqlite:///{tmp / 'mlflow.db'}"


def under_a_file(tmp: Path) -> str:
    """No store yet, and its folder cannot be made: a file stands where it would go."""
    (tmp / "mlruns").write_text("")
    return f"sqlite:///{tmp / 'mlruns' / 'mlflow.db'}"


def folder_variable_is_a_file(name: str) -> Case:
    """A variable that names the folder sftcast or ZenML writes into names a file."""

    def make(env: Env) -> tuple[list[str], list[str]]:
        (env.tmp / "a-file").write_text("")
        env.setenv(**{name: str(env.tmp / "a-file")})
        args, _ = config(lambda p: None)(env)
        return args, [f"{name}={env.tmp / 'a-file'} is a file, not a folder"]

    return make


def evidence_with_a_bad_cell(env: Env) -> tuple[list[str], list[str]]:
    """`select` with a study table (`selection.evidence`) holding a word where a proxy's
    number should be: refused by the pre-flight, not found after the promotion."""
    results = env.tmp / "study.csv"
    rows = [f"c{i},0.{i},{i},{9 - i}" for i in range(8)]
    rows[3] = "c3,0.3,three,6"
    results.write_text("candidate,sft_cls,ppl_clm,kshot_cls\n" + "\n".join(rows) + "\n")
    parameters = base_parameters(env.tmp)
    parameters["selection"]["evidence"] = str(results)
    path = write_config(env.tmp, parameters)
    return ["--config", str(path), "select"], [
        f"{path}: parameters.selection.evidence: {results}",
        "row 4 (line 5), column 'ppl_clm'",
    ]


def unknown_device(env: Env) -> tuple[list[str], list[str]]:
    """SFTCAST_DEVICE, which every step of the run reads, names no device: said before any."""
    env.setenv(SFTCAST_DEVICE="tpu")
    args, _ = config(lambda p: None)(env)  # a good configuration: the variable is at fault
    return args, ["SFTCAST_DEVICE='tpu'", "expected auto, cpu, cuda or cuda:N", "environment"]


def stack_edit(edit: Callable[[dict[str, Any]], Any], *needles: str) -> Case:
    """`select` on the local stack file with `edit` applied; the message names the copy."""

    def make(env: Env) -> tuple[list[str], list[str]]:
        stack = yaml.safe_load((deploy.stacks.STACK_DIR / "local.yaml").read_text())
        edit(stack)
        path = env.tmp / "stack.yaml"
        path.write_text(yaml.safe_dump(stack))
        return ["--stack", str(path), "select"], [str(path), *needles]

    return make


def tracking_uri_set(uri: str) -> Callable[[dict[str, Any]], None]:
    def edit(stack: dict[str, Any]) -> None:
        stack["components"]["experiment_tracker"][0]["configuration"]["tracking_uri"] = uri

    return edit


def kubeconfig(text: str, *needles: str) -> Case:
    """`--stack k8s --dry-run` with every variable the stack needs set, and KUBECONFIG naming
    a file with this text: the message names the file and KUBECONFIG."""

    def make(env: Env) -> tuple[list[str], list[str]]:
        from kubernetes.config import kube_config

        path = env.tmp / "kubeconfig"
        path.write_text(text)
        env.setenv(
            KUBECONFIG=str(path),
            SFTCAST_K8S_CONTEXT="sftcast-test",
            SFTCAST_ARTIFACT_STORE="s3://sftcast-test-bucket/zenml",
            SFTCAST_REGISTRY_URI="registry.example.com/sftcast",
            SFTCAST_MLFLOW_URI="https://mlflow.example.com",
        )
        # the check points the kubernetes package's default at the file: undone after the case
        assert env.monkeypatch is not None
        default = kube_config.KUBE_CONFIG_DEFAULT_LOCATION
        env.monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", default)
        args = ["--stack", "k8s", "--dry-run", "select"]
        return args, [f"the Kubernetes configuration {path} (KUBECONFIG)", *needles]

    return make


def unset_stack_variables(env: Env) -> tuple[list[str], list[str]]:
    path = stack_tracking_to(env, "${SFTCAST_UNSET_HOST}:${SFTCAST_UNSET_PORT}")
    return ["--stack", str(path), "select"], [
        f"{path}: environment variable SFTCAST_UNSET_HOST is not set, nor SFTCAST_UNSET_PORT"
    ]


def silent_tracking(*command: str) -> Case:
    """`command` on a stack whose MLflow store refuses connections (a port nobody holds)."""

    def make(env: Env) -> tuple[list[str], list[str]]:
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            uri = f"http://127.0.0.1:{probe.getsockname()[1]}"
        path = stack_tracking_to(env, uri)
        return [*command, "--stack", str(path)], [f"MLflow tracking URI {uri} does not answer"]

    return make


def arguments(*args: str, needles: tuple[str, ...]) -> Case:
    return lambda env: (list(args), list(needles))


# --- compare --table ----------------------------------------------------------------------------


def scores(n: int = 8) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "model": [f"m{i}" for i in range(n)],
            "sft_score": [0.1 * i + 0.05 * (i % 3) for i in range(n)],
            "ppl": [30.0 - i for i in range(n)],
            "kshot": [0.02 * i for i in range(n)],
        }
    )


def table(
    edit: Callable[[pd.DataFrame], pd.DataFrame | None] = lambda df: df,
    *needles: str,
    name: str = "scores.csv",
    raw: bytes | None = None,
    extra: tuple[str, ...] = (),
    names_table: bool = True,
    command: str = "compare",
) -> Case:
    """A results table (`raw` bytes, or `scores()` after `edit`) given to `command`; "{tmp}"
    in `extra` stands for the case's folder. The message must name the table unless the
    case's fault is elsewhere (`names_table=False`: the output path)."""

    def make(env: Env) -> tuple[list[str], list[str]]:
        path = env.tmp / name
        if raw is not None:
            path.write_bytes(raw)
        elif name.endswith(".csv"):
            df = scores()
            edited = edit(df)
            (df if edited is None else edited).to_csv(path, index=False)
        args = [command, "--table", str(path), "--id-column", "model", "--target", "sft_score"]
        args += ["--proxies", "ppl,kshot", "--lower-is-better", "ppl"]
        args += [a.replace("{tmp}", str(env.tmp)) for a in extra]
        return args, [str(path), *needles] if names_table else list(needles)

    return make


def set_value(row: int, column: str, value: Any) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def edit(df: pd.DataFrame) -> pd.DataFrame:
        df = df.astype({column: object})
        df.loc[row - 1, column] = value
        return df

    return edit


def repeat_ppl(df: pd.DataFrame) -> pd.DataFrame:
    """A second column named 'ppl' (other numbers) at the end: pandas reads it as 'ppl.1'."""
    return pd.concat([df, df[["ppl"]] * 2], axis=1)


def evidence_repeating_a_column(env: Env) -> tuple[list[str], list[str]]:
    """`select` with a study table (`selection.evidence`) whose header names 'ppl_clm' twice:
    refused by the pre-flight, before the run it would be judged after."""
    results = env.tmp / "study.csv"
    rows = "".join(f"c{i},0.{i},{i},{9 - i}\n" for i in range(8))
    results.write_text("candidate,sft_cls,ppl_clm,ppl_clm\n" + rows)
    parameters = base_parameters(env.tmp)
    parameters["selection"]["evidence"] = str(results)
    path = write_config(env.tmp, parameters)
    return ["--config", str(path), "select"], [
        f"{path}: parameters.selection.evidence: {results}: the header repeats column name(s) "
        "'ppl_clm' (columns 3 and 4)"
    ]


def parquet_repeating_ppl() -> bytes:
    """A Parquet file whose schema names 'ppl' twice (pyarrow writes that)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    df = repeat_ppl(scores())
    columns = [pa.array(df.iloc[:, i]) for i in range(df.shape[1])]
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table(columns, names=list(df.columns)), sink)
    return sink.getvalue().to_pybytes()


CASES = [
    # run configurations (exit 2)
    pytest.param(missing_config, 2, id="config-missing-file"),
    pytest.param(config_text("parameters: [unclosed\n", "not valid YAML"), 2, id="config-bad-yaml"),
    pytest.param(config_text("- a\n- b\n", "expected a mapping"), 2, id="config-not-a-mapping"),
    pytest.param(unknown_top_level_key, 2, id="config-unknown-top-level-key"),
    pytest.param(
        config(lambda p: p.__setitem__("sfft", {}), "unknown parameter section", "sfft"),
        2,
        id="config-unknown-section",
    ),
    pytest.param(
        config(lambda p: p.pop("proxies"), "parameters.proxies: missing"),
        2,
        id="config-missing-section",
    ),
    pytest.param(
        config(lambda p: p.update(proxies=None), "parameters.proxies", "got None"),
        2,
        id="config-section-not-a-mapping",
    ),
    pytest.param(
        config(setting("sft", "learnin_rate", 0.1), "parameters.sft.learnin_rate", "Extra inputs"),
        2,
        id="config-unknown-key",
    ),
    pytest.param(
        config(variant_setting(0, "steps", "many"), "parameters.zoo.variants[0].steps", "'many'"),
        2,
        id="config-wrong-type",
    ),
    pytest.param(
        config(
            setting("sft", "learning_rate", -0.001),
            "parameters.sft.learning_rate: Input should be greater than 0 (got -0.001)",
        ),
        2,
        id="config-negative-sft-learning-rate",
    ),
    pytest.param(
        config(
            variant_setting(1, "learning_rate", -1.0), "parameters.zoo.variants[1].learning_rate"
        ),
        2,
        id="config-negative-zoo-learning-rate",
    ),
    pytest.param(
        config(
            setting("sft", "learning_rate", float("inf")),
            "parameters.sft.learning_rate: Input should be a finite number (got inf)",
        ),
        2,
        id="config-infinite-sft-learning-rate",
    ),
    pytest.param(
        config(
            variant_setting(0, "mixture", {"knowledge": float("nan"), "trivia": 1.0}),
            "parameters.zoo.variants[0].mixture.knowledge: Input should be a finite number",
        ),
        2,
        id="config-nan-mixture-weight",
    ),
    pytest.param(
        config(setting("zoo", "variants", []), "parameters.zoo.variants", "at least 1 item"),
        2,
        id="config-empty-variant-list",
    ),
    pytest.param(
        config(
            variant_setting(0, "checkpoint_steps", [3, 5]),
            "parameters.zoo.variants[0].checkpoint_steps",
            "end at steps=6",
        ),
        2,
        id="config-checkpoint-steps-not-ending-at-steps",
    ),
    pytest.param(
        # empty checkpoint_steps means the last step only: 2 candidates, too few to select
        config(
            every_variant("checkpoint_steps", []),
            "parameters.selection.labelled",
            "needs at least 4",
        ),
        2,
        id="config-empty-checkpoint-steps-too-few-candidates",
    ),
    pytest.param(
        config(variant_setting(0, "objective", "clm2"), "parameters.zoo.variants[0].objective"),
        2,
        id="config-unknown-objective",
    ),
    pytest.param(
        config(
            lambda p: p["zoo"]["variants"].append(_variant("a")),
            "parameters.zoo",
            "duplicate variant names",
        ),
        2,
        id="config-duplicate-variant",
    ),
    pytest.param(
        config(setting("sft", "tasks", ["cls", "poetry"]), "parameters.sft.tasks", "'poetry'"),
        2,
        id="config-unknown-task",
    ),
    pytest.param(
        config(
            lambda p: p["data"].__setitem__("tasks", {"cls": {"train_size": 0}}),
            "parameters.data.tasks.cls.train_size",
            command="data",
        ),
        2,
        id="config-data-pipeline-zero-train-size",
    ),
    pytest.param(
        config(
            setting("zoo", "tokenizer_vocab_size", 10),
            "parameters.zoo.tokenizer_vocab_size",
            command="zoo",
        ),
        2,
        id="config-zoo-pipeline-tiny-vocabulary",
    ),
    pytest.param(
        config(
            setting("sft", "method", "qlora"), "parameters.sft.method", "'qlora'", command="sft"
        ),
        2,
        id="config-sft-pipeline-unknown-method",
    ),
    pytest.param(
        config(
            setting("selection", "labelled", ["zoo:a@3", "zoo:b@6", "zoo:a@6", "zoo:nope@1"]),
            "parameters.selection.labelled",
            "zoo:nope@1",
        ),
        2,
        id="config-labelled-unknown-candidate",
    ),
    pytest.param(
        config(setting("selection", "labelled", "some"), "parameters.selection.labelled"),
        2,
        id="config-labelled-not-all-fraction-or-list",
    ),
    pytest.param(
        config(setting("selection", "labelled", 1.5), "parameters.selection.labelled", "1.5"),
        2,
        id="config-labelled-fraction-above-one",
    ),
    pytest.param(
        config(
            setting("selection", "labelled", {"strategy": "active", "budget": 4, "initial": 5}),
            "parameters.selection.labelled",
            "initial (5) exceeds the budget (4)",
        ),
        2,
        id="config-active-initial-above-budget",
    ),
    pytest.param(
        config(
            setting("selection", "labelled", {"strategy": "active", "budget": 9}),
            "parameters.selection.labelled",
            "budget 9 exceeds the 4 candidates",
        ),
        2,
        id="config-active-budget-above-candidates",
    ),
    pytest.param(
        config(
            setting("selection", "labelled", {"strategy": "greedy", "budget": 4}),
            "parameters.selection.labelled",
            "'active'",
        ),
        2,
        id="config-labelled-unknown-strategy",
    ),
    pytest.param(
        config(setting("selection", "predictor", "ppl"), "parameters.selection.predictor", "ppl"),
        2,
        id="config-unknown-predictor",
    ),
    pytest.param(
        config(
            setting("sft", "replicate_candidates", ["zoo:../x@1"]),
            "parameters.sft.replicate_candidates",
            "zoo:../x@1",
        ),
        2,
        id="config-replicate-candidate-path-traversal",
    ),
    # external candidates (exit 2, before any step)
    pytest.param(
        candidate(lambda env: str(env.tmp / "nowhere"), "no such folder"),
        2,
        id="candidate-missing-folder",
    ),
    pytest.param(
        candidate(lambda env: os.path.relpath("/etc"), "not a Hugging Face model folder"),
        2,
        id="candidate-path-traversal",
    ),
    pytest.param(
        config(
            setting("zoo", "candidates", ["zoo:../x@1"]),
            "parameters.zoo.candidates[0]",
            "'zoo:../x@1': '../x' is not a variant name (no paths)",
        ),
        2,
        id="candidate-zoo-uri-path-traversal",
    ),
    pytest.param(
        candidate(damaged(truncate), "corrupted or truncated model.safetensors"),
        2,
        id="candidate-truncated-safetensors",
    ),
    pytest.param(
        candidate(damaged(flip_a_byte), "does not match its recorded sha256"),
        2,
        id="candidate-corrupted-digest",
    ),
    pytest.param(
        candidate(damaged(pickle_only), "only pickle weights", "allow_pickle"),
        2,
        id="candidate-pickle-only",
    ),
    pytest.param(
        candidate(damaged(code_in_pickle), "refused by torch.load", allow_pickle=True),
        2,
        id="candidate-allowed-pickle-holding-code",
    ),
    pytest.param(
        candidate(
            damaged(edit_config_json(auto_map={"AutoModelForCausalLM": "evil.EvilLM"})),
            "trust_remote_code",
        ),
        2,
        id="candidate-remote-code-without-flag",
    ),
    pytest.param(
        candidate(damaged(edit_config_json(intermediate_size=48)), "weight shapes do not match"),
        2,
        id="candidate-shape-mismatch",
    ),
    pytest.param(
        candidate(damaged(drop_tensor), "weights missing"), 2, id="candidate-missing-tensor"
    ),
    pytest.param(
        candidate(damaged(drop_tokenizer), "no tokenizer files"), 2, id="candidate-no-tokenizer"
    ),
    pytest.param(
        candidate(
            damaged(drop_vocabulary),
            "its tokenizer does not load",
            "has tokenizer_config.json but neither tokenizer.json nor tokenizer.model",
        ),
        2,
        id="candidate-tokenizer-config-without-vocabulary",
    ),
    pytest.param(
        candidate(damaged(garble_tokenizer), "its tokenizer does not load"),
        2,
        id="candidate-tokenizer-does-not-load",
    ),
    pytest.param(
        candidate("s3://bucket/model", "unknown URI scheme"), 2, id="candidate-unknown-scheme"
    ),
    pytest.param(
        candidate("hf:someone/model", "pin a revision"), 2, id="candidate-malformed-hf-uri"
    ),
    pytest.param(
        candidate("hf:sftcast/not-cached@main", "could not fetch"),
        2,
        id="candidate-hf-not-cached-offline",
    ),
    pytest.param(
        config(setting("zoo", "candidates", ["  "]), "parameters.zoo.candidates[0]", "empty"),
        2,
        id="candidate-empty-uri",
    ),
    pytest.param(
        config(
            setting("zoo", "candidates", ["/models/x", "/models/x"]),
            "parameters.zoo",
            "listed twice",
            "/models/x",
        ),
        2,
        id="candidate-listed-twice",
    ),
    # validate --task T --dataset D (exit 1: the dataset failed validation)
    pytest.param(
        dataset(drop_column("train", "label"), "{dir}/train.jsonl", "missing column(s) 'label'"),
        1,
        id="validate-missing-column",
    ),
    pytest.param(
        dataset(
            set_cell("test", 3, label="weather"),
            "{dir}/test.jsonl",
            "row 3 (line 3)",
            "label",
            "'weather'",
        ),
        1,
        id="validate-wrong-label",
    ),
    pytest.param(
        dataset(overwrite("test.jsonl", b""), "{dir}/test.jsonl", "empty (0 bytes)"),
        1,
        id="validate-empty-split",
    ),
    pytest.param(
        dataset(duplicate_id, "{dir}/train.jsonl", "row 1 (line 1)", "id", "duplicate id"),
        1,
        id="validate-duplicate-ids",
    ),
    pytest.param(
        dataset(
            replace_line("train.jsonl", 3, b'{"id": "n3", "text": "caf\xe9", "label": "politics"}'),
            "{dir}/train.jsonl",
            "row 3 (line 3)",
            "invalid UTF-8 byte 0xe9",
        ),
        1,
        id="validate-non-utf8",
    ),
    pytest.param(
        dataset(
            replace_line("validation.jsonl", 2, b'{"id": "n6", "text": "x",'),
            "{dir}/validation.jsonl",
            "row 2 (line 2)",
            "invalid JSON",
        ),
        1,
        id="validate-bad-json-line",
    ),
    pytest.param(missing_dataset, 1, id="validate-missing-dataset"),
    pytest.param(
        dataset(
            link_to("train.jsonl", "{dir}/../nowhere.jsonl"),
            "{dir}/train.jsonl: split 'train': cannot be read: a symbolic link to",
            "nowhere.jsonl', which leads nowhere (no such file or directory)",
        ),
        1,
        id="validate-split-file-dangling-link",
    ),
    pytest.param(
        dataset(
            link_to("test.jsonl", "test.jsonl"),
            "{dir}/test.jsonl: split 'test': cannot be read: a symbolic link to 'test.jsonl'",
            "too many levels of symbolic links",
        ),
        1,
        id="validate-split-file-link-loop",
    ),
    pytest.param(unknown_task, 2, id="validate-unknown-task"),
    pytest.param(
        dataset(with_notes, "split 'test'", "more than one file", "test.csv, test.jsonl"),
        1,
        id="validate-notes-ignored-second-file-refused",
    ),
    pytest.param(
        dataset(
            overwrite("dev.jsonl", b"{}\n"),
            "unexpected entry 'dev.jsonl'",
            "hidden entries (names starting with '.')",
            "README*, LICENSE*, *.md, *.rst, *.txt",
        ),
        1,
        id="validate-unexpected-entry-says-what-is-ignored",
    ),
    pytest.param(
        cbqa_csv('"{""gold"": ""Kathmandu""}"', "a JSON object, not a list of answers"),
        1,
        id="validate-csv-answers-json-object",
    ),
    pytest.param(
        cbqa_csv('"""Kathmandu"""', "a JSON string", 'write one answer as ["Kathmandu"]'),
        1,
        id="validate-csv-answers-json-string",
    ),
    pytest.param(
        dataset(
            every_duplicate,
            "{dir}/train.jsonl",
            "4 rows: row 1 (line 1), row 2 (line 2), row 3 (line 3), row 4 (line 4)",
        ),
        1,
        id="validate-duplicate-ids-every-row",
    ),
    pytest.param(unterminated_string, 1, id="validate-bad-json-said-once"),
    pytest.param(
        dataset(
            many_nulls,
            "{dir}/train.jsonl: split 'train', row 20 (line 20), column 'label'",
            "{dir}/train.jsonl: split 'train': 10 more problem(s)",
        ),
        1,
        id="validate-every-bad-cell-counted",
    ),
    pytest.param(
        logged_to(lambda tmp: "no-such-stack", "stack 'no-such-stack' does not load"),
        1,
        id="validate-verdict-stands-stack-unloadable",
    ),
    pytest.param(
        logged_to(
            unreachable_stack, "the MLflow tracking URI http://127.0.0.1:", "does not answer"
        ),
        1,
        id="validate-verdict-stands-mlflow-unreachable",
    ),
    # environment and command line (exit 2)
    pytest.param(unset_stack_variables, 2, id="env-stack-variables-unset"),
    pytest.param(unknown_device, 2, id="env-device-unknown"),
    pytest.param(
        stack_edit(
            lambda s: s["sftcast"]["gpu_steps"]["environment"].update(SFTCAST_DEVICE="gpu0"),
            "sftcast.gpu_steps.environment.SFTCAST_DEVICE: SFTCAST_DEVICE='gpu0'",
            "expected auto, cpu, cuda or cuda:N",
        ),
        2,
        id="env-stack-device-unknown",
    ),
    pytest.param(
        stack_edit(
            tracking_uri_set("garbage"),
            "components.experiment_tracker[0].configuration.tracking_uri 'garbage': a bare path",
            "sqlite:///<path>",
        ),
        2,
        id="env-tracking-uri-garbage",
    ),
    pytest.param(
        stack_edit(tracking_uri_set("s3://bucket/mlflow"), "unknown scheme 's3'", "http(s)://"),
        2,
        id="env-tracking-uri-unknown-scheme",
    ),
    pytest.param(
        kubeconfig("contexts: [unclosed\n", "not valid YAML at line 2, column 1"),
        2,
        id="env-kubeconfig-not-yaml",
    ),
    pytest.param(
        kubeconfig("- a\n- b\n", "not a kubeconfig: expected a mapping, got list"),
        2,
        id="env-kubeconfig-a-list",
    ),
    pytest.param(
        kubeconfig("contexts: 5\n", "not a kubeconfig: contexts: expected a list, got int 5"),
        2,
        id="env-kubeconfig-contexts-not-a-list",
    ),
    pytest.param(silent_tracking("select"), 2, id="env-tracking-uri-silent-pipeline"),
    pytest.param(
        silent_tracking("rollback", "--task", "cls"), 2, id="env-tracking-uri-silent-rollback"
    ),
    pytest.param(
        arguments("select", "--stack", "nowhere", needles=("no stack file", "nowhere.yaml")),
        2,
        id="cli-unknown-stack-after-the-command",
    ),
    pytest.param(
        arguments("rollback", "--task", "cls", "--dry-run", needles=("does not take --dry-run",)),
        2,
        id="cli-dry-run-given-to-rollback",
    ),
    pytest.param(
        arguments("rollback", needles=("--task", "--model-name")),
        2,
        id="cli-rollback-without-task-or-model",
    ),
    pytest.param(
        arguments("validate", "--task", "cls", "--dataset", "", needles=("--dataset is empty",)),
        2,
        id="cli-validate-empty-dataset",
    ),
    pytest.param(
        arguments("rollback", "--task", "poetry", needles=("'poetry' is not a task",)),
        2,
        id="cli-rollback-unknown-task",
    ),
    pytest.param(
        config_text("parameters:\n  sft: {learning_rate: [\n", "YAML at line 3, column 1"),
        2,
        id="cli-config-yaml-error-line-and-column",
    ),
    pytest.param(
        arguments("rollback", "--task", "cls", "--model-name", GUARD_MODEL, needles=("not both",)),
        2,
        id="cli-rollback-task-and-model-name",
    ),
    pytest.param(
        arguments("study", "--judge-only", "--variants", "clm-*", needles=("--variants",)),
        2,
        id="cli-study-judge-only-with-a-chunk",
    ),
    pytest.param(
        arguments("study", "--judge-only", "--no-cache", needles=("does not take --no-cache",)),
        2,
        id="cli-study-judge-only-no-cache",
    ),
    pytest.param(
        table(
            lambda df: df,
            "--splits would be ignored",
            extra=("--groups", "model", "--splits", "5"),
            names_table=False,
        ),
        2,
        id="cli-compare-groups-with-splits",
    ),
    pytest.param(
        unusable_store(not_a_database, "select", needle="file is not a database"),
        2,
        id="env-mlflow-store-not-a-database-select",
    ),
    pytest.param(
        unusable_store(not_a_database, "rollback", "--task", "cls", needle="not a database"),
        2,
        id="env-mlflow-store-not-a-database-rollback",
    ),
    pytest.param(
        unusable_store(not_a_database, "ui", needle="file is not a database"),
        2,
        id="env-mlflow-store-not-a-database-ui",
    ),
    pytest.param(
        unusable_store(under_a_file, "select", needle="is a file, not a folder"),
        2,
        id="env-mlflow-store-cannot-be-created",
    ),
    pytest.param(
        logged_to(
            lambda tmp: str(stack_tracking_to(Env(tmp, tmp), not_a_database(tmp))),
            "file is not a database",
        ),
        1,
        id="validate-logged-to-a-store-that-is-not-a-database",
    ),
    pytest.param(folder_variable_is_a_file("SFTCAST_STATE_DIR"), 2, id="env-state-dir-is-a-file"),
    pytest.param(
        folder_variable_is_a_file("ZENML_CONFIG_PATH"), 2, id="env-zenml-config-is-a-file"
    ),
    pytest.param(evidence_with_a_bad_cell, 2, id="config-evidence-bad-cell"),
    # compare --table (exit 2)
    pytest.param(
        table(lambda df: df.drop(columns="kshot"), "missing column(s) 'kshot'"),
        2,
        id="compare-missing-column",
    ),
    pytest.param(
        table(set_value(3, "ppl", "abc"), "row 3 (line 4), column 'ppl'", "'abc'"),
        2,
        id="compare-non-numeric",
    ),
    pytest.param(
        table(set_value(5, "kshot", float("nan")), "row 5 (line 6), column 'kshot'", "NaN"),
        2,
        id="compare-nan",
    ),
    pytest.param(
        table(lambda df: df.head(3), "3 candidate(s)", "at least 4"),
        2,
        id="compare-too-few-candidates",
    ),
    pytest.param(
        table(set_value(4, "model", "m0"), "row 4 (line 5), column 'model'", "duplicate id 'm0'"),
        2,
        id="compare-duplicate-ids",
    ),
    pytest.param(
        table(lambda df: df, "no such file", name="absent.parquet"), 2, id="compare-missing-file"
    ),
    pytest.param(
        table(name="scores.parquet", raw=b"not parquet at all"), 2, id="compare-unreadable-file"
    ),
    pytest.param(table(name="scores.xlsx", raw=b"PK"), 2, id="compare-wrong-file-type"),
    pytest.param(
        table(
            lambda df: df, "'loss'", "not among the proxies", extra=("--lower-is-better", "loss")
        ),
        2,
        id="compare-lower-is-better-not-a-proxy",
    ),
    pytest.param(
        table(
            lambda df: df, "Invalid value for '--seed'", extra=("--seed", "-1"), names_table=False
        ),
        2,
        id="compare-seed-out-of-range",
    ),
    # simulate --table (exit 2): the same table checks as compare, and the budget
    pytest.param(
        table(
            lambda df: df,
            "budget (20) <= candidates (8)",
            extra=("--budget", "20"),
            command="simulate",
        ),
        2,
        id="simulate-budget-above-candidates",
    ),
    pytest.param(
        table(
            lambda df: df,
            "initial (5) <= budget (4)",
            extra=("--budget", "4", "--initial", "5"),
            command="simulate",
        ),
        2,
        id="simulate-initial-above-budget",
    ),
    pytest.param(
        table(
            lambda df: df.drop(columns="kshot"),
            "missing column(s) 'kshot'",
            extra=("--budget", "4"),
            command="simulate",
        ),
        2,
        id="simulate-missing-column",
    ),
    pytest.param(
        table(
            set_value(3, "ppl", "abc"),
            "row 3 (line 4), column 'ppl'",
            "'abc'",
            extra=("--budget", "4"),
            command="simulate",
        ),
        2,
        id="simulate-non-numeric",
    ),
    pytest.param(
        table(
            lambda df: df,
            "{tmp}: is a directory",
            extra=("--budget", "4", "--plot", "{tmp}"),
            names_table=False,
            command="simulate",
        ),
        2,
        id="simulate-plot-is-a-directory",
    ),
    pytest.param(
        table(set_value(3, "ppl", "1e309"), "row 3 (line 4), column 'ppl'", "not finite"),
        2,
        id="compare-infinite-proxy",
    ),
    # finite, but standardising it would overflow or merge the column's other values
    pytest.param(
        table(set_value(3, "ppl", "1e308"), "row 3 (line 4), column 'ppl'", "'1e308'", "merge"),
        2,
        id="compare-proxy-1e308",
    ),
    pytest.param(
        table(set_value(6, "kshot", "-1e160"), "row 6 (line 7), column 'kshot'", "'-1e160'"),
        2,
        id="compare-proxy-1e160",
    ),
    pytest.param(
        table(set_value(1, "kshot", "1e20"), "row 1 (line 2), column 'kshot'", "eps * span"),
        2,
        id="compare-proxy-outlier-drowns-the-column",
    ),
    pytest.param(
        table(
            lambda df: df.assign(kshot=[0.0] * 7 + [1e19]),
            "row 8 (line 9), column 'kshot'",
            "standardises to 1e+19",
            "float32",
        ),
        2,
        id="compare-proxy-beyond-float32-when-standardised",
    ),
    pytest.param(
        table(
            lambda df: df.assign(kshot=[1e-160 * i for i in range(8)]),
            "row 8 (line 9), column 'kshot'",
            "span only 7e-160",
        ),
        2,
        id="compare-proxy-span-too-narrow-to-square",
    ),
    pytest.param(
        table(lambda df: df.assign(sft_score=[0.5] * 7 + [0.6]), "nothing to judge"),
        2,
        id="compare-nothing-to-judge",
    ),
    pytest.param(
        table(
            lambda df: df, "{tmp}: is a directory", extra=("--output", "{tmp}"), names_table=False
        ),
        2,
        id="compare-output-is-a-directory",
    ),
    pytest.param(
        table(
            lambda df: df,
            "{tmp}/scores.csv/report.json",
            "is a file, not a folder",
            extra=("--output", "{tmp}/scores.csv/report.json"),
            names_table=False,
        ),
        2,
        id="compare-output-under-a-file",
    ),
    pytest.param(
        table(lambda df: df, "is the input table", extra=("--output", "{tmp}/scores.csv")),
        2,
        id="compare-output-is-the-table",
    ),
    pytest.param(
        table(repeat_ppl, "the header repeats column name(s) 'ppl' (columns 3 and 5)"),
        2,
        id="compare-repeated-column-name",
    ),
    pytest.param(
        table(
            lambda df: df,
            "the header repeats column name(s) 'ppl' (columns 3 and 5)",
            name="scores.parquet",
            raw=parquet_repeating_ppl(),
        ),
        2,
        id="compare-repeated-column-name-parquet",
    ),
    pytest.param(
        table(
            repeat_ppl,
            "the header repeats column name(s) 'ppl' (columns 3 and 5)",
            extra=("--budget", "4"),
            command="simulate",
        ),
        2,
        id="simulate-repeated-column-name",
    ),
    pytest.param(
        table(
            lambda df: df,
            "{tmp}/found.xyz: '.xyz' is not an image format matplotlib writes",
            ".png",
            ".svg",
            "(none: PNG)",
            extra=("--budget", "4", "--plot", "{tmp}/found.xyz"),
            names_table=False,
            command="simulate",
        ),
        2,
        id="simulate-plot-unknown-format",
    ),
    pytest.param(evidence_repeating_a_column, 2, id="config-evidence-repeated-column-name"),
]


def registry_snapshot(client: Any) -> dict[str, Any]:
    """Every registered model with its tags, aliases and versions (source, tags, status)."""
    snapshot = {}
    for model in client.search_registered_models(max_results=1000):
        versions = client.search_model_versions(f"name = '{model.name}'", max_results=1000)
        snapshot[model.name] = {
            "tags": dict(model.tags),
            "aliases": dict(model.aliases),
            "versions": {
                v.version: (v.source, v.run_id, dict(v.tags), v.status, v.description)
                for v in versions
            },
        }
    return snapshot


@pytest.mark.parametrize(("make", "exit_code"), CASES)
def test_bad_input_is_named_and_changes_nothing(
    make: Case,
    exit_code: int,
    good_candidate: Path,
    tmp_path: Path,
    tracking,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import huggingface_hub.constants

    client = tracking()
    if not client.search_registered_models(filter_string=f"name = '{GUARD_MODEL}'"):
        client.create_registered_model(GUARD_MODEL, tags={"sftcast.task": "cls"})
        version = client.create_model_version(GUARD_MODEL, source=str(good_candidate))
        client.set_registered_model_alias(GUARD_MODEL, "production", version.version)
    before = registry_snapshot(client)

    started: list[str] = []  # past the pre-flight, `_run_pipeline` prepares ZenML first

    def no_pipeline(*args: Any, **kwargs: Any) -> None:
        started.append("ensure_repository")
        raise RuntimeError("a pipeline was about to start")

    monkeypatch.setattr(deploy.stacks, "ensure_repository", no_pipeline)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(cli.render.console, "width", 1000)  # report tables on one line per row
    args, needles = make(Env(tmp_path, good_candidate, monkeypatch))
    result = CliRunner().invoke(app, args)

    assert not started, f"the pre-flight let it through:\n{result.output}"
    assert result.exit_code == exit_code, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # a message, no traceback
    for needle in needles:
        assert needle.replace("{tmp}", str(tmp_path)) in result.output, (needle, result.output)
    assert registry_snapshot(tracking()) == before
    assert not (tmp_path / "unpickled-code-ran").exists()


def test_enough_cases() -> None:
    assert len(CASES) >= 30
    ids = [c.id for c in CASES]
    assert len(set(ids)) == len(ids)
    least = {"config-": 4, "candidate-": 4, "validate-": 4, "compare-": 4, "simulate-": 4,
             "env-": 3, "cli-": 4}  # fmt: skip
    for entry, count in least.items():
        assert sum(i.startswith(entry) for i in ids) >= count, entry


def test_good_input_passes_the_preflight(good_candidate: Path, tmp_path: Path) -> None:
    """The base configuration of the cases, with the good candidate and with a pickle-only
    copy allowed to convert, passes: each case fails for its own breakage only."""
    from deploy.runconfig import load_run_config
    from pipelines.registry import PIPELINES, known_sections

    parameters = base_parameters(tmp_path)
    env = Env(tmp_path, good_candidate)
    pickled = env.broken(pickle_only)
    parameters["zoo"] |= {"candidates": [str(good_candidate), pickled], "allow_pickle": True}
    path = write_config(tmp_path, parameters)
    config_ = load_run_config(path, PIPELINES["select"], known_sections())
    assert config_.parameters.zoo.candidates == [str(good_candidate), pickled]
    converted = [p for p in tmp_path.iterdir() if p.name.startswith("candidate.safetensors-")]
    assert len(converted) == 1 and (converted[0] / "model.safetensors").is_file()
