"""``rollguard rollout list|show|start|approve|pause|resume|rollback`` and ``rollguard flags
kill|revive|reload|list``: the same transitions as the API (``gateway.rollout.service``), run
against the configured store (``store.redis_url``, or the embedded Valkey under
``store.data_dir`` that the gateway started). Whoever can reach the store is an operator: the
audit entry names ``cli:<user>@<host>``.

Exit codes: 0 done; 1 refused (409: the rollout is not in a state that allows it; 404: unknown
id); 2 bad input or config; 3 the store or the Unleash Admin API failed. Errors are one
``error: ...`` line on standard error.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

flags_app = typer.Typer(
    help="Flag kill switch (every process of every replica, < 1 s).",
    no_args_is_help=True,
    rich_markup_mode=None,
)

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="YAML config file (default: $ROLLGUARD_CONFIG or built-in)"),
]
T = TypeVar("T")


def _who() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"cli:{user}@{socket.gethostname()}"


def _run(config: Path | None, work: Callable[[Any], Awaitable[T]]) -> T:
    """Run ``work(service)`` against the configured store; maps errors to exit codes."""
    from gateway.defaults import with_embedded_defaults
    from gateway.rollout.runtime import build_service
    from gateway.store import Store
    from rollguard.errors import ClientError, ConfigError, Conflict, NotFound, StoreError
    from rollguard.settings import load_settings

    async def go() -> T:
        settings = with_embedded_defaults(load_settings(config))
        store = Store(settings.store, retention_check_s=0)
        await store.start()
        try:
            return await work(build_service(settings, store.redis))
        finally:
            await store.aclose()

    try:
        return asyncio.run(go())
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except (Conflict, NotFound) as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from None
    except ClientError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(2) from None
    except StoreError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(3) from None


def _print(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=2, sort_keys=True, default=str))


def _summary(state: Any) -> str:
    nxt = f", next {state.next_percent:g} %" if state.next_percent is not None else ""
    where = f"step {state.step} ({state.percent:g} %{nxt})"
    return f"{state.id}: {state.status.value}, {where}, revision {state.revision}"


def register(rollout_app: typer.Typer) -> None:
    """Add the controller commands to the ``rollguard rollout`` group."""

    @rollout_app.command("list")
    def list_cmd(config: ConfigOpt = None) -> None:
        """Every rollout's state, one line each."""
        for state in _run(config, lambda s: s.repo.all()):
            typer.echo(_summary(state))

    @rollout_app.command("show")
    def show_cmd(rollout_id: str, config: ConfigOpt = None) -> None:
        """One rollout as JSON: state, the newest judgments and audit entries."""

        async def work(s: Any) -> dict[str, Any]:
            state = await s.repo.get(rollout_id)
            return {
                **state.to_dict(),
                "judgments": await s.repo.judgments(rollout_id, 5),
                "audit": await s.repo.audit(rollout_id, 20),
            }

        _print(_run(config, work))

    @rollout_app.command("start")
    def start_cmd(rollout_id: str, config: ConfigOpt = None) -> None:
        """Start a pending rollout at its first step."""
        typer.echo(_summary(_run(config, lambda s: s.start(rollout_id, _who()))))

    @rollout_app.command("approve")
    def approve_cmd(
        rollout_id: str,
        step: Annotated[
            int | None, typer.Option(help="the step you approve (refused if it moved on)")
        ] = None,
        config: ConfigOpt = None,
    ) -> None:
        """Promote a rollout awaiting approval to its next step (exit 1 if it is not awaiting)."""
        typer.echo(_summary(_run(config, lambda s: s.approve(rollout_id, _who(), step=step))))

    @rollout_app.command("pause")
    def pause_cmd(rollout_id: str, reason: str = "paused by a person", config: ConfigOpt = None) -> None:
        """Pause a running or awaiting rollout (the canary keeps its share)."""
        typer.echo(_summary(_run(config, lambda s: s.pause(rollout_id, _who(), reason))))

    @rollout_app.command("resume")
    def resume_cmd(rollout_id: str, config: ConfigOpt = None) -> None:
        """Resume a paused rollout (its step starts again with fresh data)."""
        typer.echo(_summary(_run(config, lambda s: s.resume(rollout_id, _who()))))

    @rollout_app.command("rollback")
    def rollback_cmd(
        rollout_id: str, reason: str = "rolled back by a person", config: ConfigOpt = None
    ) -> None:
        """Roll back: canary to 0 % at once, in every process of every replica."""
        typer.echo(_summary(_run(config, lambda s: s.rollback(rollout_id, _who(), reason))))


@flags_app.command("kill")
def kill_cmd(flag: str, reason: str = "kill switch", config: ConfigOpt = None) -> None:
    """Turn FLAG off for everyone (every worker of every replica within 1 s)."""
    version = _run(config, lambda s: s.kill(flag, _who(), reason))
    typer.echo(f"{flag}: killed (override version {version})")


@flags_app.command("revive")
def revive_cmd(flag: str, reason: str = "revived", config: ConfigOpt = None) -> None:
    """Undo ``kill``: FLAG evaluates from its source (and any rollout percentage) again."""
    version = _run(config, lambda s: s.revive(flag, _who(), reason))
    typer.echo(f"{flag}: revived (override version {version})")


@flags_app.command("list")
def list_flags_cmd(config: ConfigOpt = None) -> None:
    """The store-backed overrides as JSON."""

    async def work(s: Any) -> dict[str, Any]:
        version, entries = await s.overrides.load()
        return {"version": version, "overrides": {k: v.to_dict() for k, v in sorted(entries.items())}}

    _print(_run(config, work))


@flags_app.command("reload")
def reload_cmd(config: ConfigOpt = None) -> None:
    """Ask every gateway process on the store to re-read its bootstrap flags file."""
    n = _run(config, lambda s: s.overrides.request_reload())
    typer.echo(f"reload requested ({n} process(es) listening)")
