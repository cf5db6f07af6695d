"""Click's usage line for every ``rollguard`` command: ``Usage: rollguard config check [OPTIONS]
FILE`` (a required argument in capitals, an optional one as ``[NAME]``, several as ``NAME...``)
instead of Typer's ``{file}``, which reads as a placeholder to be filled in.

``use_click_usage(app)`` gives every command registered on ``app`` and its sub-apps (recursively)
the ``ClickUsageCommand`` class, unless a command chose a class of its own. Call it once, after the last
command is registered."""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperArgument, TyperCommand


class ClickUsageCommand(TyperCommand):
    """A Typer command whose usage line names its arguments the Click way."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if isinstance(param, TyperArgument):
                pieces.append(usage_name(param))
        return pieces


def usage_name(param: TyperArgument) -> str:
    """``FILE``, ``[FILE]`` (optional) or ``FILE...`` (several): the argument's ``metavar``, else its
    name in capitals."""
    name = param.metavar or (param.name or "").upper()
    if not param.required:
        name = f"[{name}]"
    return f"{name}..." if param.nargs != 1 else name


def use_click_usage(app: typer.Typer) -> None:
    """Set ``ClickUsageCommand`` on every command of ``app`` and of its sub-apps without a class."""
    for info in app.registered_commands:
        if info.cls in (None, TyperCommand):  # the default: no class of its own
            info.cls = ClickUsageCommand
    for group in app.registered_groups:
        if group.typer_instance is not None:
            use_click_usage(group.typer_instance)
