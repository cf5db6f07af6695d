"""The ``rollguard`` command line (Typer). Heavy imports happen inside each command so that
``rollguard --help`` and ``rollguard config check`` stay quick.

Commands: ``serve``, ``demo``, ``config check``, ``keys hash``, ``train prompt-injection``,
``detect``, ``worker``, ``eval detectors``, ``review export``.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    name="rollguard",
    help="Staged-rollout guardrail gateway for LLMs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Configuration tools.", no_args_is_help=True)
keys_app = typer.Typer(help="API key tools.", no_args_is_help=True)
train_app = typer.Typer(help="Rebuild shipped models from the shipped data.", no_args_is_help=True)
eval_app = typer.Typer(help="Rerunnable evaluations.", no_args_is_help=True)
review_app = typer.Typer(help="Human review queues.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(keys_app, name="keys")
app.add_typer(train_app, name="train")
app.add_typer(eval_app, name="eval")
app.add_typer(review_app, name="review")

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="YAML config file (default: $ROLLGUARD_CONFIG or built-in)"),
]


def _setup_logging(level: str = "info") -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


@app.command()
def serve(
    config: ConfigOpt = None,
    host: Annotated[str | None, typer.Option(help="bind address (default from config: 127.0.0.1)")] = None,
    port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="port (default from config: 8080)")
    ] = None,
    workers: Annotated[
        int | None, typer.Option(min=1, max=64, help="worker processes (default from config: 1)")
    ] = None,
) -> None:
    """Run the gateway (uvicorn). With no config: embedded store, bootstrap flags, local demo model."""
    from rollguard.errors import ConfigError
    from rollguard.settings import load_settings

    if config is not None:
        os.environ["ROLLGUARD_CONFIG"] = str(config)
    if host is not None:
        os.environ["ROLLGUARD_GATEWAY__HOST"] = host
    try:
        settings = load_settings(config)
        if host is not None:
            settings.gateway.host = host
        from gateway.auth import check_bind
        from gateway.defaults import with_embedded_defaults

        settings = with_embedded_defaults(settings)
        check_bind(settings.gateway.host, settings.gateway.api_keys)
    except ConfigError as exc:
        _fail(str(exc))
    _setup_logging(settings.gateway.log_level)
    import uvicorn

    uvicorn.run(
        "gateway.app:create_app",
        factory=True,
        host=settings.gateway.host,
        port=port if port is not None else settings.gateway.port,
        workers=workers if workers is not None else settings.gateway.workers,
        log_level=settings.gateway.log_level,
        access_log=False,
    )


@app.command()
def demo(
    requests: Annotated[
        int, typer.Option("--requests", "-n", help="prompts to replay (>= 1000 for the demo)")
    ] = 1000,
    concurrency: Annotated[int, typer.Option(help="concurrent clients")] = 8,
) -> None:
    """Start the embedded store, a local demo upstream and the gateway; replay real prompts; print
    a summary."""
    _setup_logging("warning")
    from gateway.demo.run import run_demo

    raise typer.Exit(run_demo(n=requests, concurrency=concurrency, store_dir=Path("var")))


@config_app.command("check")
def config_check(file: Annotated[Path, typer.Argument(help="YAML config file")]) -> None:
    """Validate a config file without serving: exit 0 and a summary, or exit 2 naming file and field."""
    from policies.pipeline import build_pipeline
    from rollguard.errors import ConfigError
    from rollguard.settings import load_settings

    try:
        settings = load_settings(file)
        pipeline = build_pipeline(settings.policies)
    except ConfigError as exc:
        _fail(str(exc))
    except ValueError as exc:
        _fail(f"{file}: policies: {exc}")
    for where in settings.unresolved_secrets():
        typer.echo(f"warning: {file}: {where}: the environment variable is unset", err=True)
    typer.echo(
        f"{file}: ok — {len(settings.model_names())} model alias(es), "
        f"{len(pipeline.policies)} policies ({', '.join(p.id for p in pipeline.policies) or 'none'}), "
        f"{len(settings.gateway.api_keys)} API key(s)"
    )


@keys_app.command("hash")
def keys_hash(key: Annotated[str, typer.Argument(help="the API key to hash ('-' reads stdin)")]) -> None:
    """Print the ``key_hash`` to put in ``gateway.api_keys``."""
    from rollguard.settings import hash_api_key

    raw = sys.stdin.readline().strip() if key == "-" else key
    typer.echo(hash_api_key(raw))


@train_app.command("prompt-injection")
def train_prompt_injection(
    data_dir: Annotated[Path, typer.Option(help="shipped data folder")] = Path("data"),
    out_dir: Annotated[Path, typer.Option(help="where to write the model")] = Path("policies/data"),
    seed: int = 0,
) -> None:
    """Retrain the prompt-injection classifier and write its metrics."""
    from policies.training.prompt_injection import main as train_main

    raise typer.Exit(train_main(["--data", str(data_dir), "--out", str(out_dir), "--seed", str(seed)]))


@app.command()
def detect(
    file: Annotated[
        Path, typer.Argument(help="JSON Lines: {'messages': [...], 'completion': '...'} per line")
    ],
    out: Annotated[Path | None, typer.Option("--out", help="write here instead of standard output")] = None,
) -> None:
    """Score offline records with every per-interaction detector; one JSON line per record, in order."""
    from detectors.offline import run_detect

    try:
        errors = run_detect(file, out)
    except OSError as exc:
        _fail(f"{exc.strerror or exc}: {exc.filename or file}")
    raise typer.Exit(1 if errors else 0)


@app.command()
def worker(
    config: ConfigOpt = None,
    name: Annotated[str | None, typer.Option(help="consumer name (default: host-pid)")] = None,
) -> None:
    """Run a detector worker (consumer group on the interactions stream)."""
    import asyncio

    from gateway.defaults import with_embedded_defaults
    from gateway.worker import run_worker
    from rollguard.settings import load_settings

    _setup_logging()
    settings = with_embedded_defaults(load_settings(config))
    asyncio.run(run_worker(settings, name or f"{os.uname().nodename}-{os.getpid()}"))


@eval_app.command("detectors")
def eval_detectors(
    out_dir: Annotated[Path, typer.Option("--out", help="report folder (JSON + PNG plots)")] = Path(
        "var/eval_detectors"
    ),
    quick: Annotated[bool, typer.Option(help="smaller sizes (for tests)")] = False,
    docs: Annotated[bool, typer.Option(help="also update docs/detectors.md and docs/img/")] = False,
) -> None:
    """Replay shipped data through the detectors with injected faults; write the report and plots
    (runs ``bench/eval_detectors.py`` of a source checkout)."""
    import subprocess

    script = Path(__file__).resolve().parents[1] / "bench" / "eval_detectors.py"
    if not script.exists():
        _fail(f"{script} not found: the evaluation runs from a source checkout")
    args = [sys.executable, str(script), "--out", str(out_dir), *(["--quick"] if quick else [])]
    raise typer.Exit(subprocess.call([*args, *(["--docs"] if docs else [])]))  # noqa: S603


@review_app.command("export")
def review_export(
    fmt: Annotated[str, typer.Option("--format", help="dpo | kto | jsonl")] = "dpo",
    out: Annotated[Path, typer.Option("--out", help="output file")] = Path("review-export.jsonl"),
    config: ConfigOpt = None,
) -> None:
    """Export reviewer verdicts as preference data (TRL shapes)."""
    import asyncio

    from gateway.defaults import with_embedded_defaults
    from gateway.review.export import export_from_settings
    from rollguard.settings import load_settings

    if fmt not in ("dpo", "kto", "jsonl"):
        _fail("--format must be one of dpo, kto, jsonl")
    settings = with_embedded_defaults(load_settings(config))
    res = asyncio.run(export_from_settings(settings, fmt, out))
    skipped = (
        f" ({res.skipped} decided item(s) skipped: their verdict did not judge the reply)"
        if res.skipped
        else ""
    )
    typer.echo(f"wrote {res.rows} rows to {out}{skipped}")


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
