"""`watch`: score each checkpoint of a folder as a pre-training run writes it, one
`sftcast_watch` pipeline run per checkpoint, until Ctrl-C (or once)."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import typer

from cli.options import Options
from cli.render import console, fail
from cli.running import PipelineFailed, activate, dry_run, launch, preflight
from deploy.guards import STOP_SIGNALS
from deploy.stacks import REPO_ROOT, StackFile

FINETUNE_WHEN = ("never", "beats-production")


def watch(
    ctx: typer.Context,
    folder: Path = typer.Option(
        ..., "--folder", help="Where a pre-training run writes checkpoint folders."
    ),
    task: list[str] = typer.Option(
        ..., "--task", help="A task to rank each checkpoint for (repeat for several)."
    ),
    interval: float = typer.Option(30.0, min=0.1, help="Seconds between polls of the folder."),
    settle: float = typer.Option(
        10.0, min=0.0, help="Seconds a checkpoint folder must stay unchanged before it is read."
    ),
    once: bool = typer.Option(False, "--once", help="Score what is there now, then exit."),
    finetune_when: str = typer.Option(
        "never",
        "--finetune-when",
        help="beats-production: fine-tune a checkpoint predicted to beat production beyond "
        "the comparator's spread, and promote it if its measured score beats production's.",
    ),
) -> None:
    """Predict each new checkpoint's post-SFT standing with the task's comparator in
    production, as a pre-training run writes it; the best-predicted gets `challenger`."""
    from sftcast.data.schema import TASKS

    unknown = [t for t in task if t not in TASKS]
    if unknown:
        fail(f"--task {unknown[0]!r} is not a task; expected one of {', '.join(TASKS)}")
    if finetune_when not in FINETUNE_WHEN:
        fail(f"--finetune-when {finetune_when!r}: expected one of {', '.join(FINETUNE_WHEN)}")
    folder = folder.expanduser().resolve()
    if not folder.is_dir():
        fail(f"--folder {folder}: no such folder" + (" (a file)" if folder.exists() else ""))
    request = {
        "folder": folder, "tasks": list(dict.fromkeys(task)), "interval": interval,
        "settle": settle, "once": once, "finetune_when": finetune_when,
    }  # fmt: skip
    with contextlib.chdir(REPO_ROOT):
        _watch(ctx.obj, request)


def _watch(opts: Options, request: dict[str, Any]) -> None:
    stack_file, raw = preflight(opts)
    from deploy.manifests import ManifestError
    from deploy.runconfig import RunConfigError, load_run_config
    from deploy.stacks import StackFileError, ensure_repository
    from pipelines.registry import PIPELINES, known_sections

    pipeline = PIPELINES["watch"]
    try:
        config = load_run_config(opts.config, pipeline, known_sections(), opts.no_cache, raw)
        ensure_repository()
        if opts.dry_run:
            _dry_runs(pipeline, config, stack_file, request)
            return
        activate(stack_file, pipeline.name)
        session = _Session(pipeline, config, stack_file, request)
    except (StackFileError, RunConfigError, ManifestError) as err:
        fail(str(err))
    summary = session.run()
    console.print(
        f"watch: {summary.scored} scored, {summary.rejected} rejected, {summary.failed} failed, "
        f"{summary.pending} waiting at the last poll",
        markup=False,
    )
    if summary.failed:
        raise typer.Exit(1)


def _dry_runs(pipeline: Any, config: Any, stack_file: StackFile, request: dict[str, Any]) -> None:
    """Compile the scoring run of each ready checkpoint for the stack (on Kubernetes, write
    its Jobs); nothing is scored, nothing reaches the tracking store."""
    from deploy.runconfig import with_stack_options
    from sftcast.watch.folder import scan

    ready = [
        i for i in scan(request["folder"], settle_seconds=request["settle"]) if i.status == "ready"
    ]
    if not ready:
        console.print(f"dry run: no checkpoint of {request['folder']} is ready", markup=False)
    for found in ready:
        scoring = config.with_sections(watch=_watch_section(found, request, {}, "", Path()))
        dry_run(pipeline, with_stack_options(scoring, pipeline, stack_file), stack_file)


def _watch_section(
    found: Any, request: dict[str, Any], comparators: dict[str, str], run_id: str, lock_dir: Path
) -> dict[str, Any]:
    return {
        "checkpoint": str(found.path), "content_hash": found.content_hash, "step": found.step,
        "folder": str(request["folder"]), "folder_run_id": run_id, "tasks": request["tasks"],
        "comparators": comparators, "finetune_when": request["finetune_when"],
        "lock_dir": str(lock_dir),
    }  # fmt: skip


class _Session:
    """One watch: the comparators checked once, then a `Watcher` whose scoring callback runs
    the pipeline, in a worker thread so that the main thread keeps Ctrl-C: the first one
    lets the checkpoint in hand finish, the second stops at once (exit 130)."""

    def __init__(
        self, pipeline: Any, config: Any, stack_file: StackFile, request: dict[str, Any]
    ) -> None:
        from deploy.runconfig import STATE_DIR
        from deploy.stacks import tracking_uri
        from sftcast.watch.locks import locked
        from sftcast.watch.records import folder_run

        self.pipeline, self.config, self.stack_file, self.request = (
            pipeline, config, stack_file, request
        )  # fmt: skip
        self.tracking_uri = tracking_uri(stack_file)
        self._track()
        self.comparators = self._comparators()
        self.lock_dir = STATE_DIR / "watch"
        with locked(self.lock_dir / "folder-runs.lock"):  # two watchers, one folder run
            self.folder_run_id = folder_run(request["folder"])
        self.stop = threading.Event()

    def _track(self) -> None:
        """Point MLflow at the stack's store: ZenML's tracker resets it after each step."""
        import mlflow

        mlflow.set_tracking_uri(self.tracking_uri)

    def _comparators(self) -> dict[str, str]:
        """Each task's comparator in production, checked against how this configuration
        measures proxies; exit 2 naming the task otherwise."""
        from sftcast.selection.config import TAG_MEASUREMENT_KEY, measurement_key
        from sftcast.watch.pool import NoComparator, production_comparator

        run = self.config.parameters
        key = measurement_key(run.proxies, run.selection.finetuned_evaluation(run.evaluation))
        found = {}
        for task in self.request["tasks"]:
            try:
                version = production_comparator(task)
            except NoComparator as err:
                fail(str(err))
            theirs = version.tags.get(TAG_MEASUREMENT_KEY)
            if theirs is not None and theirs != key:
                fail(
                    f"{version.name} v{version.version} was trained on proxies measured with "
                    f"other settings (proxies and evaluation: {theirs}, {self.config.path}: "
                    f"{key}); watch with the configuration `select` ran with"
                )
            found[task] = str(version.version)
        return found

    def run(self) -> Any:
        from sftcast.watch.loop import Watcher

        watcher = Watcher(
            folder=self.request["folder"], tasks=self.request["tasks"], lock_dir=self.lock_dir,
            score=self._score, reject=self._reject, recorded=self._recorded, say=_say,
            settle_seconds=self.request["settle"],
            trust_remote_code=self.config.parameters.zoo.trust_remote_code,
        )  # fmt: skip
        result: dict[str, Any] = {}

        def work() -> None:
            result["summary"] = watcher.watch(
                self.request["interval"], self.request["once"], self.stop
            )

        _say(
            f"watching {self.request['folder']} for {', '.join(self.request['tasks'])} "
            f"(comparators {', '.join(f'{t} v{v}' for t, v in self.comparators.items())}); "
            + ("once" if self.request["once"] else "Ctrl-C stops after the checkpoint in hand")
        )
        worker = threading.Thread(target=work, name="watch", daemon=True)
        with _first_signal_stops(self.stop):
            worker.start()
            while worker.is_alive():
                worker.join(0.2)
        if "summary" not in result:
            fail("the watch stopped on an error (above)", code=1)
        return result["summary"]

    def _score(self, found: Any, tasks: list[str]) -> None:
        from deploy.runconfig import with_stack_options
        from sftcast.watch.loop import ScoringFailed

        request = {**self.request, "tasks": tasks}
        section = _watch_section(
            found, request, self.comparators, self.folder_run_id, self.lock_dir
        )
        scoring = self.config.with_sections(watch=section)
        try:
            path = with_stack_options(scoring, self.pipeline, self.stack_file)
            result = launch(self.pipeline, path, self.stack_file)
        except PipelineFailed as err:
            raise ScoringFailed(str(err)) from err
        _print_scores(result.id)

    def _reject(self, found: Any) -> None:
        from sftcast.watch.records import record_rejection

        self._track()
        record_rejection(
            self.request["folder"], found.path, found.content_hash, found.step, found.reason
        )

    def _recorded(self, content_hash: str) -> set[str]:
        from sftcast.watch.records import recorded

        self._track()
        return recorded(content_hash)


def _print_scores(run_id: object) -> None:
    """The scoring run's line per task (and, when fine-tuned, what came of it)."""
    from zenml.client import Client

    steps = Client().get_pipeline_run(run_id).steps
    for task in sorted(name.removeprefix("score_") for name in steps if name.startswith("score_")):
        _say(steps[f"score_{task}"].outputs["watch_score"][0].load().line())
        if f"finetune_{task}" in steps:
            _say(steps[f"finetune_{task}"].outputs["finetune"][0].load().line())


def _say(line: str) -> None:
    console.print(line, markup=False, highlight=False, soft_wrap=True)
    sys.stdout.flush()


@contextlib.contextmanager
def _first_signal_stops(stop: threading.Event) -> Any:
    """Ctrl-C or SIGTERM: the first sets `stop` (the checkpoint in hand finishes, exit 0);
    a second stops at once (exit 130)."""

    def handle(signum: int, frame: object) -> None:
        name = signal.Signals(signum).name
        if stop.is_set():
            raise KeyboardInterrupt(name)
        stop.set()
        _say(f"{name}: stopping after the checkpoint in hand ({name} again stops now)")

    previous = {sig: signal.signal(sig, handle) for sig in STOP_SIGNALS}
    try:
        yield
    except KeyboardInterrupt as err:
        fail(f"{err}: the watch stopped mid-checkpoint; a restart scores it again", code=130,
             prefix="interrupted")  # fmt: skip
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
