"""The typer app: the global options, and every command registered in the order `--help`
lists them.

Exit codes: 0 done; 1 a pipeline failed, or a dataset failed validation; 2 bad input or
environment (options, configuration, stack file, environment variables, kubeconfig, an MLflow
store that cannot be used or does not answer, a port in use), named in one line, `error: ...`;
130 a pipeline run stopped by Ctrl-C or SIGTERM.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import typer

from cli import environment, judge, pipelines, registry, validate, watch
from cli.options import (
    DEFAULT_CONFIG,
    DEFAULT_PIPELINE,
    GLOBAL_OPTION_COMMANDS,
    GLOBAL_OPTIONS_NOTE,
    GlobalOptionsGroup,
    Options,
)
from cli.render import fail
from cli.services import app as services_app
from deploy.stacks import available_stacks

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
with_globals = partial(app.command, epilog=GLOBAL_OPTIONS_NOTE)
for command in (pipelines.data, pipelines.zoo, pipelines.sft):
    with_globals()(command)
with_globals("study")(pipelines.study)
with_globals("select")(pipelines.select_)
with_globals()(watch.watch)
with_globals(help=validate.HELP)(validate.validate)
app.command()(judge.compare)
app.command()(judge.simulate)
with_globals()(registry.rollback)
with_globals()(registry.ui)


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
    environment.prepare()  # before any command imports ZenML, torch or MLflow
    command = ctx.invoked_subcommand or DEFAULT_PIPELINE
    defaults = {p.name: p.default for p in ctx.command.params}
    for name, commands in GLOBAL_OPTION_COMMANDS.items():
        if command not in commands and ctx.params[name] != defaults[name]:
            option = "--" + name.replace("_", "-")
            fail(f"{command} does not take {option}; it is for {', '.join(commands)}")
    ctx.obj = Options(stack, config.resolve(), no_cache, dry_run, force)
    if ctx.invoked_subcommand is None:
        pipelines.run(ctx.obj, DEFAULT_PIPELINE)


def main() -> None:
    """The `sftcast` console script (pyproject.toml's [project.scripts])."""
    app()
