"""The global options (--stack, --config, --no-cache, --dry-run, --force): which commands take
them, and the parser that accepts them after the command too."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from typer.core import TyperGroup

from deploy.stacks import REPO_ROOT

DEFAULT_CONFIG = REPO_ROOT / "configs" / "demo.yaml"
DEFAULT_PIPELINE = "select"
PIPELINE_COMMANDS = ("data", "zoo", "sft", "study", "select", "watch")
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


@dataclass
class Options:
    stack: str
    config: Path
    no_cache: bool
    dry_run: bool
    force: bool = False
    variants: list[str] | None = None  # study: a chunk of the zoo
    overwrite: bool = False  # study: write over a table measured with other settings


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
