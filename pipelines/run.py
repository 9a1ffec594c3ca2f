"""sftcast's one command line: the `sftcast` console script, or `python pipelines/run.py`.

sftcast                                  # the default pipeline (select) on the local stack
sftcast --stack k8s --dry-run            # where each step would run, and with what
sftcast select --stack k8s --dry-run     # the same: global options may follow the command
sftcast sft                              # one pipeline by name
sftcast validate --task cls --dataset my_data/

Exit codes: 0 done; 1 a pipeline failed, or a dataset failed validation; 2 bad input or
environment (options, configuration, stack file, environment variables, kubeconfig, an MLflow
store that cannot be used or does not answer, a port in use), named in one line, `error: ...`;
130 a pipeline run stopped by Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, NoReturn

REPO_ROOT = Path(__file__).resolve().parents[1]
# Before ZenML is imported: a project-local ZenML config (export ZENML_CONFIG_PATH to use
# your own, e.g. one logged in to a ZenML server), and no analytics.
os.environ.setdefault("ZENML_CONFIG_PATH", str(REPO_ROOT / ".zenml" / "config"))
os.environ.setdefault("ZENML_ANALYTICS_OPT_IN", "false")
# Steps resolve relative to the project even when the ZenML repository lives elsewhere.
os.environ.setdefault("ZENML_CUSTOM_SOURCE_ROOT", str(REPO_ROOT))
os.environ.setdefault("ZENML_LOGGING_VERBOSITY", "WARN")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# torch's OpenMP threads (libgomp) spin a short while between kernels, then sleep: alone on 2
# cores the demo's fine-tunes ran 1.8 to 2.3x faster than sleeping at once (PASSIVE), and beside
# a second busy process 2.8x faster than libgomp's long default spin. Export
# OMP_WAIT_POLICY=PASSIVE when other work shares the cores (`make test` does).
if "OMP_WAIT_POLICY" not in os.environ:
    os.environ.setdefault("GOMP_SPINCOUNT", "10000")
# ZenML colours its log lines whatever the output; rich (sftcast's own output) already
# colours only a terminal.
if os.environ.get("NO_COLOR") or not (sys.stdout and sys.stdout.isatty()):
    os.environ.setdefault("ZENML_LOGGING_COLORS_DISABLED", "true")
# In a log file, the Hub's, datasets' and transformers' bars ("Loading weights" at every model
# load) are noise; sftcast's own loops print a few plain lines there (sftcast/progress.py).
if not (sys.stderr and sys.stderr.isatty()):
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
# ZenML 0.98 keeps the current run's step runs in a bounded in-process cache (100 by default).
# Resolving a step's inputs, it counts some inputs as cached, fetches the others, and adding
# those can evict one it counted: the step fails with "No step `build_data` found in current
# run". The study (258 steps) lost seven steps to it. Off, as before ZenML had it; the price is
# that ZenML lists the installed packages at every step (uv keeps that to 0.1 s).
os.environ.setdefault("ZENML_PREVENT_EXECUTION_CONTEXT_CACHING", "true")
if __name__ == "__main__" and str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))  # `python pipelines/run.py` puts pipelines/ first instead

# ZenML 0.98's MLflow tracker warns at every step that it could not disable autologging for
# fastai, which is not installed and which sftcast never uses: one line of noise per step.
logging.getLogger(
    "zenml.integrations.mlflow.experiment_trackers.mlflow_experiment_tracker"
).addFilter(lambda record: "Failed to disable MLflow autologging" not in record.getMessage())
# MLflow checks each comparator's input example against its signature and says so at INFO.
logging.getLogger("mlflow.pyfunc").setLevel(logging.WARNING)

import typer  # noqa: E402
import yaml  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from typer.core import TyperGroup  # noqa: E402

from pipelines.guards import ProcessEnvironmentError, check_environment, stop_on_signals  # noqa: E402
from pipelines.runconfig import RunConfigError  # noqa: E402
from pipelines.services import app as services_app  # noqa: E402
from pipelines.stacks import (  # noqa: E402
    StackFile,
    StackFileError,
    available_stacks,
    check_kubernetes_contexts,
    load_stack_file,
    stores_root,
    tracking_uri,
    yaml_error_line,
)
from sftcast.tracking import TrackingUnavailable, check_tracking_uri  # noqa: E402

if TYPE_CHECKING:
    from sftcast.config import RunParameters

DEFAULT_CONFIG = REPO_ROOT / "configs" / "demo.yaml"
DEFAULT_PIPELINE = "select"
LOOPBACK = "127.0.0.1"  # the only address `ui` binds
# `ui` serves the UI only: MLflow's job runner (LLM judges, trace roll-ups, nothing sftcast
# logs) would add eight more processes (MLflow 3.17). The allowed hosts, the loopback names
# only, are the server's whole audience; set, they also spare a hint to widen them.
UI_SERVER_ENV = {
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    "MLFLOW_SERVER_ALLOWED_HOSTS": f"{LOOPBACK},{LOOPBACK}:*,localhost,localhost:*",
}
PIPELINE_COMMANDS = ("data", "zoo", "sft", "study", "select")
# The commands each global option means something to; given to any other it is refused,
# never ignored (`rollback --dry-run` would otherwise roll back for real).
GLOBAL_OPTION_COMMANDS = {
    "stack": (*PIPELINE_COMMANDS, "validate", "rollback", "ui"),
    "config": PIPELINE_COMMANDS,
    "no_cache": PIPELINE_COMMANDS,
    "dry_run": PIPELINE_COMMANDS,
    "force": ("select",),
}
GLOBAL_OPTIONS_NOTE = (
    "Global options (--stack, --config, --no-cache, --dry-run, --force) go before or after "
    "the command: `sftcast --stack k8s select` is `sftcast select --stack k8s`."
)
console = Console()


class GlobalOptionsGroup(TyperGroup):
    """The global options are accepted after the command too: they are moved in front of it
    before parsing, so `select --stack k8s --dry-run` is `--stack k8s --dry-run select`."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, self._hoisted(ctx, args))

    def _hoisted(self, ctx: Any, args: list[str]) -> list[str]:
        globals_ = {name: p for p in self.params for name in p.opts}
        i = 0  # the command's position: past the options that already stand before it
        while i < len(args) and args[i].startswith("-") and args[i] != "--":
            option = globals_.get(args[i])
            i += 2 if option is not None and not option.is_flag else 1
        command = self.get_command(ctx, args[i]) if i < len(args) else None
        if command is None:
            return args
        own = {name: p for p in command.params for name in p.opts}
        moved, kept, rest = [], [], args[i + 1 :]
        while rest:
            arg, name = rest[0], rest[0].split("=", 1)[0]
            if arg == "--":
                kept += rest
                break
            option = globals_.get(name) if name not in own else None
            takes = own.get(name) if option is None else option
            width = 1 if "=" in arg or takes is None or takes.is_flag else 2
            (kept if option is None else moved).extend(rest[:width])
            rest = rest[width:]
        return [*args[:i], *moved, args[i], *kept]


app = typer.Typer(
    cls=GlobalOptionsGroup,
    add_completion=False,
    # Plain click help: flags shown as flags, and `[@revision]` in a help text kept as
    # written (rich markup would take it for a tag and drop it).
    rich_markup_mode=None,
    help="sftcast: predict which checkpoint will be best after SFT, and promote it. "
    "With no command: the select pipeline. " + GLOBAL_OPTIONS_NOTE,
)
app.add_typer(services_app, name="services")
# The commands that take global options name them under their own --help.
command_with_globals = partial(app.command, epilog=GLOBAL_OPTIONS_NOTE)


@dataclass
class Options:
    stack: str
    config: Path
    no_cache: bool
    dry_run: bool
    force: bool = False
    variants: list[str] | None = None  # study: a chunk of the zoo
    overwrite: bool = False  # study: write over a table measured with other settings


@app.callback(invoke_without_command=True)
def global_options(
    ctx: typer.Context,
    stack: str = typer.Option(
        "local",
        help=f"A stack of zenml_stack/ ({', '.join(available_stacks())}) or a stack file.",
    ),
    config: Path = typer.Option(DEFAULT_CONFIG, help="A ZenML run configuration in configs/."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Rerun every step."),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Compile for the stack and show where each step runs."
    ),
    force: bool = typer.Option(
        False, "--force", help="select: promote even if no predictor beats chance."
    ),
) -> None:
    command = ctx.invoked_subcommand or DEFAULT_PIPELINE
    defaults = {p.name: p.default for p in ctx.command.params}
    for name, commands in GLOBAL_OPTION_COMMANDS.items():
        if command not in commands and ctx.params[name] != defaults[name]:
            option = "--" + name.replace("_", "-")
            fail(f"{command} does not take {option}; it is for {', '.join(commands)}")
    ctx.obj = Options(stack, config.resolve(), no_cache, dry_run, force)
    if ctx.invoked_subcommand is None:
        _run(ctx.obj, DEFAULT_PIPELINE)


def fail(message: str, code: int = 2, prefix: str = "error") -> NoReturn:
    """One line naming what is wrong (never markup: the message may hold brackets), then
    exit with `code`."""
    console.print(f"{prefix}: {message}", style="red", markup=False, soft_wrap=True)
    raise typer.Exit(code)


@command_with_globals()
def data(ctx: typer.Context) -> None:
    """Build the pre-training corpus and the task datasets, and validate them."""
    _run(ctx.obj, "data")


@command_with_globals()
def zoo(ctx: typer.Context) -> None:
    """Validated data, then pre-train the zoo's variants and fetch every candidate checkpoint."""
    _run(ctx.obj, "zoo")


@command_with_globals()
def sft(ctx: typer.Context) -> None:
    """The zoo's candidates fine-tuned on each task, evaluated, and registered in MLflow."""
    _run(ctx.obj, "sft")


@command_with_globals("study")
def study(
    ctx: typer.Context,
    variants: str = typer.Option(
        "",
        help="A chunk: comma-separated shell patterns of variant names (`clm-*,plm-*`); its "
        "rows are added to the table.",
    ),
    judge_only: bool = typer.Option(
        False, "--judge-only", help="Run nothing: judge the table on disk (summary, figures)."
    ),
    overwrite: bool = typer.Option(
        False,
        "--overwrite",
        help="Write over a study table measured with other settings (sft, evaluation, "
        "proxies) than this configuration's, and over its judgement.",
    ),
) -> None:
    """The study: every candidate's proxies (fine-tuning probes included) and post-SFT score
    per task, written to study.results with its summary (judged by compare) and figures."""
    ctx.obj.variants = _columns(variants) or None
    ctx.obj.overwrite = overwrite
    if not judge_only:
        _run(ctx.obj, "study")
        return
    given = [o for o, on in (("--variants", variants), ("--dry-run", ctx.obj.dry_run),
                             ("--no-cache", ctx.obj.no_cache)) if on]  # fmt: skip
    if given:
        fail(f"study --judge-only runs nothing, so it does not take {', '.join(given)}")
    with contextlib.chdir(REPO_ROOT):  # the configuration's paths, as a run resolves them
        try:
            check_environment()
            check_config_file(ctx.obj.config)
        except (RunConfigError, ProcessEnvironmentError) as err:
            fail(str(err))
        _publish_study(None, ctx.obj)


@command_with_globals("select")
def select_(ctx: typer.Context) -> None:
    """The main pipeline: proxies for all candidates, SFT for the labelled ones, the judged
    comparator, and the best-predicted candidate promoted to `production` (--force: even if
    no predictor beats chance on held-out candidates)."""
    _run(ctx.obj, "select")


@command_with_globals(
    help=(
        "Validate one task dataset with Great Expectations and log the report to the stack's "
        "MLflow store (the sftcast_validate experiment).\n\n"
        "Exit codes:\n"
        "0 the dataset is valid;\n"
        "1 it failed validation or could not be read (each problem names its file, split, row "
        "and column);\n"
        "2 a usage error (an unknown task, a missing or empty option).\n\n"
        "Logging does not change the verdict: a report that cannot be logged (the stack file "
        "does not load, the MLflow store cannot be used or does not answer) gets one warning "
        "line on stderr, and "
        "the exit code is still the data's."
    )
)
def validate(
    ctx: typer.Context,
    task: str = typer.Option(..., help="cbqa, rag or cls"),
    dataset: str = typer.Option(..., help="A folder of split files, or hf:<name>[@revision]"),
) -> None:
    """Validate one task dataset; the exit code is the data's verdict (see the help above)."""
    from sftcast.data.schema import TASKS
    from sftcast.validation import validate_source

    if task not in TASKS:
        fail(f"--task {task!r} is not a task; expected one of {', '.join(TASKS)}")
    if not dataset.strip():  # a usage error, not a dataset (it would read the current folder)
        fail("--dataset is empty; expected a folder of split files or hf:<name>[@revision]")
    report = validate_source(dataset, task)
    if console.is_terminal:
        console.print(report.to_table())
    else:  # piped: whole lines, no colour, no cell wrapping a path mid-name
        print("\n".join(report.to_lines()))
    not_logged = _log_validation(report, task, dataset, ctx.obj.stack)
    if not_logged:
        sys.stdout.flush()  # the report first, also where stdout and stderr share a pipe
        print(f"warning: validation report not logged: {not_logged}", file=sys.stderr)
    verdict = f"{dataset}: {task} dataset {'is valid' if report.success else 'failed validation'}"
    if console.is_terminal:
        console.print(verdict, style="green" if report.success else "red", markup=False)
    else:
        print(verdict)
    if not report.success:
        raise typer.Exit(1)


def _log_validation(report: object, task: str, dataset: str, stack: str) -> str | None:
    """Record the report in the stack's MLflow store, where its pipelines log. Never raises:
    returns why it could not log (one line), since the data verdict stands either way."""
    import mlflow

    from sftcast.tracking import ensure_experiment, log_json, safe_tags

    try:
        uri = stack_tracking_uri(stack)
    except StackFileError as err:
        return f"stack {stack!r} does not load: {err}"
    try:
        check_tracking_uri(uri)  # one bounded try: MLflow itself retries for minutes
        mlflow.set_tracking_uri(uri)
        artifacts = stores_root() / "mlruns" / "artifacts"
        experiment_id = ensure_experiment("sftcast_validate", artifacts)
        with mlflow.start_run(experiment_id=experiment_id, run_name=f"validate-{task}"):
            mlflow.set_tags(safe_tags({"sftcast.task": task, "sftcast.dataset": dataset}))
            mlflow.log_metric("validation_failures", len(report.failures))
            mlflow.log_metric("validation_success", int(report.success))
            log_json(report.to_dict(), "validation_report.json")
    except TrackingUnavailable as err:
        return str(err)
    except Exception as err:  # any other failure of the store: a warning, never the verdict
        reason = " ".join(str(err).split())
        return f"cannot log to the MLflow tracking URI {uri}: {type(err).__name__}: {reason}"
    return None


# compare and simulate read the same results table, with the same options
ResultsTable = Annotated[Path, typer.Option(help="CSV or Parquet file, one row per candidate.")]
IdColumn = Annotated[str, typer.Option(help="The column naming each candidate.")]
TargetColumn = Annotated[str, typer.Option(help="The post-SFT score (higher is better).")]
ProxyColumns = Annotated[str, typer.Option(help="Comma-separated proxy columns.")]
LowerIsBetter = Annotated[str, typer.Option(help="Comma-separated proxies where lower is better.")]
Seed = Annotated[int, typer.Option(min=0, max=2**32 - 1, help="Seed of the splits and models.")]
ReportPath = Annotated[
    Path | None, typer.Option(help="Write the JSON report here (missing folders are created).")
]
# sftcast.comparator.protocols.PROTOCOLS, spelt out: the library loads scikit-learn
ProtocolName = Annotated[
    Literal["paper", "group", "deployment"] | None,
    typer.Option(
        help="paper: random splits, held-out pairs; group: leave one --groups group out; "
        "deployment: the random splits, held-out x training pairs. [default: paper, or group "
        "with --groups]",
        show_default=False,
    ),
]
SeedNoise = Annotated[
    float | None,
    typer.Option(
        min=0,
        help="The target's std over fine-tuning seeds: also report accuracy on the pairs whose "
        "targets differ by more than twice it.",
    ),
]


@app.command()
def compare(
    ctx: typer.Context,
    table: ResultsTable,
    id_column: IdColumn,
    target: TargetColumn,
    proxies: ProxyColumns,
    lower_is_better: LowerIsBetter = "",
    protocol: ProtocolName = None,
    groups: str | None = typer.Option(
        None, help="Leave one group of this column out at a time, instead of random splits."
    ),
    splits: int = typer.Option(20, help="Random splits of the candidates."),
    train_fraction: float = typer.Option(0.6, help="Share of candidates to train on per split."),
    seed: Seed = 0,
    top_k: int = typer.Option(3, help="k of top-k recall and of best in top-k."),
    seed_noise: SeedNoise = None,
    jobs: int = typer.Option(1, min=1, help="Processes judging the splits (same result)."),
    output: ReportPath = None,
) -> None:
    """Learning to compare: rank held-out candidates by a comparator over proxies, against
    each proxy alone; no ZenML, no MLflow.

    Exit codes:

    0: judged; a warning says how many splits could not be (their targets tie).

    2: bad input (named by file, row and column), an --output that cannot be
    written (checked first), options that do not go together (--groups with
    another protocol than group), or nothing to judge (every split's targets tie).
    """
    from sftcast.comparator import (
        ComparatorInputError,
        compare_table,
        read_table,
        report_rows,
        report_title,
    )
    from sftcast.comparator.report import report_notes

    _check_output(output, table)
    if groups is not None and (ignored := _given(ctx, "splits", "train_fraction")):
        fail(f"--groups holds out one group at a time: {' and '.join(ignored)} would be ignored")
    try:
        report = compare_table(
            read_table(table),
            id_column,
            target,
            _columns(proxies),
            lower_is_better=_columns(lower_is_better),
            splits=splits,
            train_fraction=train_fraction,
            seed=seed,
            top_k=top_k,
            groups=groups,
            protocol=protocol,
            seed_noise=seed_noise,
            jobs=jobs,
        )
    except ComparatorInputError as err:
        fail(str(err))
    _show(report_title(report), report_rows(report))
    for kind, text in report_notes(report):
        style = "yellow" if kind == "warning" else None
        console.print(f"{kind}: {text}", style=style, markup=False, highlight=False, soft_wrap=True)
    _write_json(output, report)


@app.command()
def simulate(
    table: ResultsTable,
    id_column: IdColumn,
    target: TargetColumn,
    proxies: ProxyColumns,
    lower_is_better: LowerIsBetter = "",
    budget: int = typer.Option(..., help="How many candidates each strategy may fine-tune."),
    initial: int = typer.Option(3, help="Candidates fine-tuned first, spread over the proxies."),
    trials: int = typer.Option(20, help="Replays per strategy, seeds seed, seed + 1, ..."),
    seed: Seed = 0,
    output: ReportPath = None,
    plot: Path | None = typer.Option(
        None,
        help="Write a plot of top-1 found rate against budget to exactly this path; its "
        "extension picks the format (.png, .svg, .pdf, ...; none: PNG).",
    ),
) -> None:
    """Replay selection strategies (random, proxy_greedy, active) on a table whose every
    post-SFT score is known, revealing a score only when a strategy fine-tunes that candidate;
    no ZenML, no MLflow.

    Exit codes: 0 replayed; 2 bad input (named by file, row and column, as compare names
    it), an impossible budget, or an --output or --plot that cannot be written (checked first).
    """
    from sftcast.active import plot_format, save_found_rate, simulate_rows, simulate_title
    from sftcast.active import simulate as replay
    from sftcast.comparator import ComparatorInputError, check_table, read_table

    _check_output(output, table)
    _check_output(plot, table)
    try:
        fmt = plot_format(plot) if plot is not None else "png"
        candidates = check_table(
            read_table(table), id_column, target, _columns(proxies), _columns(lower_is_better)
        )
        report = replay(candidates, target, budget, initial, trials, seed)
    except ComparatorInputError as err:
        fail(str(err))
    _show(simulate_title(report), simulate_rows(report))
    _write_json(output, report)
    if plot is not None:
        try:
            plot.parent.mkdir(parents=True, exist_ok=True)
            save_found_rate(report, plot, fmt)
        except OSError as err:  # checked first; a race or a full disk can still get here
            fail(f"{plot}: cannot write the plot: {err.strerror or err}")
        console.print(f"plot: {plot}", markup=False, soft_wrap=True)


def _given(ctx: typer.Context, *names: str) -> list[str]:
    """The options among `names` given on the command line (not left at their default)."""
    # by name: typer carries a click of its own, whose enum is not click.core's
    given = [n for n in names if getattr(ctx.get_parameter_source(n), "name", "") == "COMMANDLINE"]
    return ["--" + n.replace("_", "-") for n in given]


def _columns(text: str) -> list[str]:
    return [c.strip() for c in text.split(",") if c.strip()]


def _check_output(output: Path | None, table: Path) -> None:
    """Fail before any work when `output` cannot take a file."""
    from sftcast.comparator import unwritable

    if output is not None and (problem := unwritable(output, table)):
        fail(f"{output}: {problem}")


def _show(title: str, rows: list[list[str]]) -> None:
    """A table on a terminal; plain aligned lines on a pipe or in a file."""
    from sftcast.comparator import rows_lines, rows_table

    if console.is_terminal:
        console.print(rows_table(title, rows))
        return
    for line in rows_lines(title, rows):
        console.print(line, markup=False, highlight=False, soft_wrap=True)


def _write_json(output: Path | None, report: dict[str, Any]) -> None:
    import json

    from sftcast.files import write_text_atomic

    if output is None:
        return
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(output, json.dumps(report, indent=2) + "\n")  # or keep the old one
    except OSError as err:  # checked before the work; a race or a full disk can still get here
        fail(f"{output}: cannot write the report: {err.strerror or err}")
    console.print(f"report: {output}", markup=False, soft_wrap=True)


@command_with_globals()
def rollback(
    ctx: typer.Context,
    task: str | None = typer.Option(None, help="cbqa, rag or cls: the model sftcast-<task>."),
    model_name: str | None = typer.Option(None, help="The registered model, instead of --task."),
) -> None:
    """Move a model's `production` alias back to the version that held it before, in the
    --stack's MLflow store; no pipeline runs."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from sftcast.data.schema import TASKS
    from sftcast.promotion import PromotionError
    from sftcast.promotion import rollback as rollback_production

    if task is None and model_name is None:
        fail("rollback needs --task (for the model sftcast-<task>) or --model-name")
    if task is not None and model_name is not None:
        fail("rollback takes --task or --model-name, not both: which model to roll back?")
    if task is not None and task not in TASKS:
        fail(f"--task {task!r} is not a task; expected one of {', '.join(TASKS)}")
    try:
        uri = stack_tracking_uri(ctx.obj.stack)
        check_tracking_uri(uri)
        mlflow.set_tracking_uri(uri)
        result = rollback_production(model_name or f"sftcast-{task}")
    except (StackFileError, TrackingUnavailable, PromotionError, MlflowException) as err:
        fail(str(err))
    console.print(result.summary, markup=False, soft_wrap=True)


@command_with_globals()
def ui(
    ctx: typer.Context,
    port: int = typer.Option(5000, min=1, max=65535, help="Port on 127.0.0.1."),
) -> None:
    """Serve the --stack's MLflow store (runs and registry) in the MLflow UI, on 127.0.0.1
    only; Ctrl-C stops it."""
    from sftcast.tracking import is_local_store

    name = ctx.obj.stack
    try:
        uri = stack_tracking_uri(name)
    except StackFileError as err:
        fail(str(err))
    if not is_local_store(uri):
        fail(f"stack {name!r} tracks to the MLflow server at {uri}: open that one")
    try:
        check_tracking_uri(uri)  # the server would start, then fail at the first page
    except TrackingUnavailable as err:
        fail(str(err))
    _check_port_free(port)
    command = mlflow_server_command(uri, stores_root() / "mlruns" / "artifacts", port)
    console.print(f"MLflow UI on http://{LOOPBACK}:{port} over {uri}", markup=False, soft_wrap=True)
    sys.stdout.flush()
    sys.stderr.flush()
    # The server in this process's place: Ctrl-C and SIGTERM reach it (it forwards them to
    # its workers), and whoever started `ui` holds the server's own process id.
    os.execve(command[0], command, {**os.environ, **UI_SERVER_ENV})


def _check_port_free(port: int) -> None:
    """Fail naming the port if something listens there: once exec'd, the server would only
    log "address already in use" and exit 0."""
    import socket

    with socket.socket() as probe:
        # as the server binds: a port left in TIME_WAIT by a stopped server is free
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((LOOPBACK, port))
        except OSError as err:
            fail(f"port {port} on {LOOPBACK} is not free ({err.strerror}); choose another: --port")


def mlflow_server_command(tracking_uri: str, artifact_root: Path, port: int) -> list[str]:
    """`mlflow server` over one store, bound to the loopback interface and nothing else; one
    worker is plenty for one person's browser."""
    return [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", tracking_uri,
        "--default-artifact-root", str(artifact_root),
        "--host", LOOPBACK,
        "--port", str(port),
        "--workers", "1",
    ]  # fmt: skip


def stack_tracking_uri(stack: str) -> str:
    """The MLflow store a stack's pipelines track and register in: its experiment
    tracker's `tracking_uri`."""
    return tracking_uri(load_stack_file(stack))


def check_config_file(path: Path) -> None:
    """The run configuration's YAML and top-level shape, checked before the orchestration
    layer is imported (a bad file is then reported in a second, not after ZenML's import);
    `load_run_config` checks the rest."""
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


def _run(opts: Options, name: str) -> None:
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


def _preflight_and_run(opts: Options, name: str) -> None:
    try:  # the checks that take a second first, before the pipelines (torch, ...) load
        check_environment()
        check_config_file(opts.config)
        stack_file = load_stack_file(opts.stack)
        check_kubernetes_contexts(stack_file)
        if not opts.dry_run:  # a dry run never reaches the store
            check_stack_tracking(stack_file)
    except (StackFileError, RunConfigError, TrackingUnavailable, ProcessEnvironmentError) as err:
        fail(str(err))
    from zenml.exceptions import StackValidationError

    from pipelines.manifests import ManifestError

    try:
        _run_pipeline(opts, name, stack_file)
    except (StackFileError, RunConfigError, StackValidationError, ManifestError) as err:
        fail(str(err))
    except PipelineFailed as err:
        fail(str(err), code=1, prefix="pipeline failed")


def _run_pipeline(opts: Options, name: str, stack_file: StackFile) -> None:
    from pipelines.registry import PIPELINES, known_sections
    from pipelines.runconfig import (
        compile_for_stack,
        load_run_config,
        placement_rows,
        with_stack_options,
    )
    from pipelines.stacks import ensure_repository, register_stack

    pipeline = PIPELINES[name]
    config = load_run_config(opts.config, pipeline, known_sections(), opts.no_cache)
    if name == "study" and not opts.dry_run:  # before the hours of measuring, not after
        _check_study_settings(_study_parameters(opts), opts)
    if opts.force and "selection" in config["parameters"]:
        config["parameters"]["selection"] = {**config["parameters"]["selection"], "force": True}
    if opts.variants:
        config["parameters"]["study"] = {
            **config["parameters"].get("study", {}),
            "variants": opts.variants,
        }
    ensure_repository()
    config_path = with_stack_options(config, pipeline, stack_file)
    if opts.dry_run:
        register_stack(stack_file, activate=False)
        snapshot, stack = compile_for_stack(pipeline, config_path, stack_file)
        _print_placement(placement_rows(snapshot, stack), pipeline.name, stack_file.stack_name)
        if stack.orchestrator.flavor == "kubernetes":
            _write_manifests(snapshot, stack, pipeline.name)
        return
    stack = register_stack(stack_file, activate=True)
    _prepare_tracking(pipeline.name)
    console.print(f"Running {pipeline.name} on stack {stack.name}", markup=False)
    try:
        run = pipeline.with_options(config_path=str(config_path))()
    except RuntimeError as err:
        raise PipelineFailed(_failure_summary(pipeline.name, stack_file) or str(err)) from err
    console.print(
        f"Finished run {run.name} ({run.id}); `make ui` shows it.", style="green", markup=False
    )
    if name == "select":
        _print_selection(run.id, config["parameters"].get("selection", {}).get("evidence"))
    if name == "study":
        _publish_study(run.id, opts)


def _publish_study(run_id: object | None, opts: Options) -> None:
    """Write the study's table (a chunk adds its rows) from the run, then judge the whole
    table (summary, reports, figures) unless it was a chunk; with no run, judge the table on
    disk."""
    from sftcast.comparator import ComparatorInputError
    from sftcast.study import StudyConfig, judge, write_table

    params = _study_parameters(opts)
    study = params.study or StudyConfig()
    settings = _check_study_settings(params, opts)
    if run_id is not None:
        from zenml.client import Client

        table = Client().get_pipeline_run(run_id).steps["study_table"].output.load()
        path = write_table(table, study, settings, merge=bool(opts.variants))
        console.print(f"wrote {path} ({len(table)} candidates measured by this run)", markup=False)
        if opts.variants:
            console.print(
                "a chunk: the summary and figures come from `study --judge-only` or a run "
                "without --variants (every chunk's steps come from the cache)",
                markup=False,
            )
            return
    if not study.results.is_file():
        fail(f"{study.results}: no study table yet; run `study` first")
    try:
        written = judge(study, params.sft.tasks)
    except ComparatorInputError as err:
        fail(str(err))
    for path in written:
        console.print(f"wrote {path}", markup=False, soft_wrap=True)


def _study_parameters(opts: Options) -> RunParameters:
    from pipelines.runconfig import parse_parameters

    try:
        return parse_parameters(opts.config, yaml.safe_load(opts.config.read_text())["parameters"])
    except RunConfigError as err:
        fail(str(err))


def _check_study_settings(params: RunParameters, opts: Options) -> str:
    """This configuration's study settings (a hash of its sft, evaluation and proxies
    sections); fails, before anything is written, when the table at `study.results` was
    measured with others: a judgement or a full run would replace its evidence (the demo's
    configuration would write over the committed study), a chunk would drop its rows."""
    from sftcast.comparator import ComparatorInputError
    from sftcast.study import StudyConfig
    from sftcast.study.table import read_results
    from sftcast.tracking import config_hash

    settings = config_hash(params.sft, params.evaluation, params.proxies)
    results = (params.study or StudyConfig()).results
    if opts.overwrite or not results.is_file():
        return settings
    try:
        table = read_results(results)
    except ComparatorInputError as err:
        fail(str(err))
    measured = sorted(set(table["settings"].astype(str))) if "settings" in table else ["unknown"]
    if measured != [settings]:
        fail(
            f"{results.resolve()}: measured with settings {', '.join(measured)}, not "
            f"{settings} ({opts.config}'s sft, evaluation and proxies): this would write over "
            "its study; use the configuration that measured it, or pass --overwrite"
        )
    return settings


def _print_selection(run_id: object, evidence: str | None = None) -> None:
    """Per task: pairwise accuracy (mean ± std over splits) of PPL-CLM, the best single proxy
    and the comparator on held-out candidates, whether the best predictor's lead is beyond that
    spread, and what was promoted (or why not)."""
    from zenml.client import Client

    from sftcast.comparator.report import lead_note
    from sftcast.selection.report import SelectionSummary

    run = Client().get_pipeline_run(run_id)
    rows = [["task", "ppl_clm", "best single proxy", "comparator", "ranked by", "promoted"]]
    notes, refusals, choices, judged = [], [], [], []
    for step_name, step_run in sorted(run.steps.items()):
        if not step_name.startswith("select_"):
            continue
        s: SelectionSummary = step_run.outputs["selection"][0].load()
        choices += [f"{s.task}: {c['candidate']} ({c['why']})" for c in s.choices]
        promoted = f"{s.candidate} ({s.model} v{s.version})"
        if not s.promoted:
            promoted = f"refused: {s.candidate}"
            refusals.append(f"{s.task}: {s.refused}")
        if s.lead:
            notes.append(f"{s.task}: {lead_note({'lead': s.lead})}")
        judged.append(f"{s.task} {s.judged_pairs} ({s.protocol or 'none'})")
        std = s.pairwise_accuracy_std
        best_single = s.best_single_proxy
        rows.append([
            s.task,
            _fmt(s.ppl_clm, std.get("ppl_clm")),
            f"{best_single or '-'} {_fmt(s.best_single_accuracy, std.get(best_single or ''))}",
            _fmt(s.ltc, std.get("ltc")),
            s.predictor,
            promoted,
        ])  # fmt: skip
    _show(
        "selection (pairwise accuracy ± std over splits, on held-out candidates; judged pairs: "
        f"{', '.join(judged)})",
        rows,
    )
    for line in notes:
        console.print(f"note: {line}", markup=False, highlight=False, soft_wrap=True)
    if choices:
        console.print("fine-tuned by active selection, in order:", markup=False)
    for line in choices:
        console.print(f"  {line}", markup=False, highlight=False, soft_wrap=True)
    for line in refusals:
        console.print(line, style="yellow", markup=False, soft_wrap=True)
    if not evidence:
        return
    try:  # checked in the pre-flight; whatever still fails here leaves the run's exit code
        _print_study_evidence(Path(evidence), [row[0] for row in rows[1:]])
    except Exception as err:
        reason = " ".join(str(err).split())
        console.print(
            f"warning: study evidence not judged: {reason}",
            style="yellow",
            markup=False,
            soft_wrap=True,
        )


def _print_study_evidence(results: Path, tasks: list[str]) -> None:
    """After the smoke run's table, the evidence at scale: a study table (selection.evidence)
    judged live (ppl_clm, the best single proxy, the comparator on held-out candidates), on
    the run's tasks first, then on every other task the table holds."""
    from sftcast.data.schema import TASKS
    from sftcast.study.summary import evidence_lines

    if not results.is_file():
        console.print(f"note: no study table at {results} (selection.evidence)", markup=False)
        return
    console.print(
        f"the study ({results}), judged now: pairwise accuracy on held-out candidates, "
        "mean ± std over splits",
        markup=False,
        soft_wrap=True,
    )
    every = [*tasks, *(t for t in TASKS if t not in tasks)]
    for line in evidence_lines(results, every, cache=stores_root() / ".cache" / "evidence"):
        console.print(f"  {line}", markup=False, highlight=False, soft_wrap=True)


def _fmt(value: float | None, std: float | None = None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if std is None else f"{value:.2f} ± {std:.2f}"


class PipelineFailed(RuntimeError):
    """A pipeline run failed; the message holds each failed step's own error."""


def _failure_summary(pipeline_name: str, stack_file: StackFile) -> str:
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


def _write_manifests(snapshot: Any, stack: Any, pipeline: str) -> None:
    """The Jobs the run would submit, validated offline (pipelines/manifests.py)."""
    from pipelines.manifests import write_manifests
    from pipelines.runconfig import MANIFESTS_DIR

    folder = MANIFESTS_DIR / pipeline
    paths = write_manifests(snapshot, stack, folder)
    # on stderr: stdout is the placement table, which scripts read
    print(
        f"manifests: {len(paths)} Kubernetes Jobs in {folder}, valid against the API schema",
        file=sys.stderr,
    )


def _print_placement(rows: list[dict[str, str]], pipeline: str, stack: str) -> None:
    """A table on a terminal; tab-separated lines when piped, for scripts to read."""
    columns = ("step", "where", "device", "resources", "tolerations")
    title = f"{pipeline} on {stack} (dry run: nothing was started)"
    values = [[row[c] for c in columns] for row in rows]
    if not console.is_terminal:
        print(title)
        for line in (columns, *values):
            print("\t".join(line))
        return
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for line in values:
        table.add_row(*line)
    console.print(table)


def main() -> None:
    """The `sftcast` console script (pyproject.toml's [project.scripts])."""
    app()


if __name__ == "__main__":
    main()
