"""The ``rollguard`` command line (Typer). Heavy imports happen inside each command so that
``rollguard --help`` and ``rollguard config check`` stay quick.

Commands: ``serve``, ``demo``, ``config check``, ``keys hash``, ``train prompt-injection``,
``detect``, ``worker``, ``eval detectors``, ``review export``, ``rollout replay|list|show|start|
``approve|pause|resume|rollback``, ``flags kill|revive|list|reload``.
"""

from __future__ import annotations

import errno
import functools
import logging
import socket
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from gateway.cli_usage import use_click_usage
from gateway.eval_guardrails_cli import eval_guardrails
from gateway.rollout.cli import flags_app, register
from gateway.rollout_cli import rollout_app

if TYPE_CHECKING:
    from rollguard.settings import RollguardSettings

# Plain (Click-style) help: Typer's rich help prints a value placeholder for every option, flags
# included (``--help <bool>``, ``--quick --no-quick <bool>``), which reads as if they took a value.
# ``-h`` as well as ``--help`` on every command (Click inherits ``help_option_names`` from the
# parent context, so the root's setting reaches every group and command).
HELP = {"help_option_names": ["-h", "--help"]}
app = typer.Typer(
    name="rollguard",
    help="Staged-rollout guardrail gateway for LLMs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings=HELP,
)


def _group(help_text: str) -> typer.Typer:
    return typer.Typer(help=help_text, no_args_is_help=True, rich_markup_mode=None)


def version() -> str:
    """The installed ``rollguard`` distribution's version (``importlib.metadata``; the source
    tree's ``pyproject.toml`` when it is not installed)."""
    from importlib import metadata

    try:
        return metadata.version("rollguard")
    except metadata.PackageNotFoundError:
        import tomllib

        pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
        return str(tomllib.loads(pyproject.read_text())["project"]["version"])


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"rollguard {version()}")
        raise typer.Exit(0)


@app.callback()
def _root(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version", "-V", is_eager=True, callback=_print_version, help="print the version and exit"
        ),
    ] = False,
) -> None:
    """Staged-rollout guardrail gateway for LLMs."""


config_app = _group("Configuration tools.")
keys_app = _group("API key tools.")
train_app = _group("Rebuild shipped models from the shipped data.")
eval_app = _group("Rerunnable evaluations.")
review_app = _group("Human review queues.")
app.add_typer(config_app, name="config")
app.add_typer(keys_app, name="keys")
app.add_typer(train_app, name="train")
app.add_typer(eval_app, name="eval")
app.add_typer(review_app, name="review")
register(rollout_app)
app.add_typer(rollout_app, name="rollout")
app.add_typer(flags_app, name="flags")


class ExportFormat(StrEnum):
    """``review export --format`` choices (``gateway.review.export``)."""

    DPO = "dpo"
    KTO = "kto"
    JSONL = "jsonl"


class Scenario(StrEnum):
    """``demo --scenario`` choices."""

    TRAFFIC = "traffic"
    ROLLOUT = "rollout"


ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="YAML config file (default: $ROLLGUARD_CONFIG or built-in)"),
]


def _setup_logging(level: str = "info") -> None:
    """Log lines name the request they belong to (``[request id]``, ``-`` outside one)."""
    from gateway.request_id import install_log_field

    install_log_field()
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s",
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
    """Run the gateway (uvicorn). With no config: embedded store, bootstrap flags, local demo model.

    Exit codes: 0 stopped; 2 invalid config (the same one-line error as 'rollguard config check');
    3 startup failed (port in use, the embedded store or another part cannot start; a configured
    Redis that does not answer is not fatal: serve starts degraded, spooling to disk).
    """
    from rollguard.errors import ConfigError
    from rollguard.settings import config_source, load_settings

    cli = _cli_settings(host=host, port=port, workers=workers)
    source = config_source(config)
    try:
        settings = load_settings(config, cli)
        # Bound first, before the seconds of imports and model loading below: a busy port is
        # reported at once. The process exits (closing it) if the checks then fail.
        sock = _bind(settings.gateway.host, settings.gateway.port)
        _setup_logging(settings.gateway.log_level)
        if settings.gateway.workers > 1:
            from gateway.config_check import check_config

            check_config(settings, source)  # each worker runs it again in create_app
            app_obj: Any = functools.partial(worker_app, config, cli)
        else:
            from gateway.app import create_app

            app_obj = create_app(settings, source=source)  # runs check_config; nothing started yet
    except ConfigError as exc:
        _fail(str(exc))
    _run(settings, sock, app_obj)


def _cli_settings(**gateway: object) -> dict[str, Any]:
    """The command line's settings layer (the top source of ``load_settings``): the ``gateway``
    options that were given."""
    given = {key: value for key, value in gateway.items() if value is not None}
    return {"gateway": given} if given else {}


def worker_app(config: Path | None, cli: dict[str, Any]) -> Any:
    """The app factory each ``serve --workers N`` process runs (uvicorn imports and calls it): the
    settings loaded again from the same sources (``cli``, the environment, ``config``)."""
    from gateway.app import create_app
    from rollguard.settings import config_source, load_settings

    settings = load_settings(config, cli)
    _setup_logging(settings.gateway.log_level)  # a spawned interpreter: no logging set up yet
    return create_app(settings, source=config_source(config))


def _bind(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (SO_REUSEADDR, as uvicorn binds), or exit 3 with one line:
    ``port 8080 on 127.0.0.1 is in use``. Binding before the lifespan runs means a busy port costs
    nothing: no store, demo upstream or model is started only to be stopped again."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            _fail(f"port {port} on {host} is in use (stop the other server or pass --port)", code=3)
        _fail(f"cannot bind {host}:{port}: {exc.strerror or exc}", code=3)
    sock.set_inheritable(True)
    return sock


def _run(settings: RollguardSettings, sock: socket.socket, app_obj: Any) -> None:
    """Serve on ``sock``: in this process (``app_obj`` is the app, one worker) or in ``workers``
    processes that each build the app (``app_obj`` is the factory, ``worker_app``). uvicorn exits 3
    when the lifespan fails; the lifespan has then stopped what it started."""
    import uvicorn

    gw = settings.gateway
    options: dict[str, Any] = {"log_level": gw.log_level, "access_log": False}
    logging.getLogger("rollguard").info("listening on http://%s:%d", gw.host, sock.getsockname()[1])
    if gw.workers > 1:
        from gateway.supervisor import ReloadingMultiprocess

        cfg = uvicorn.Config(app_obj, factory=True, workers=gw.workers, **options)
        ReloadingMultiprocess(cfg, sockets=[sock]).run()  # SIGHUP reloads flags in every worker
        return
    uvicorn.Server(uvicorn.Config(app_obj, **options)).run(sockets=[sock])


@app.command()
def demo(
    requests: Annotated[
        int, typer.Option("--requests", "-n", help="prompts to replay (>= 1000 for the demo)")
    ] = 1000,
    concurrency: Annotated[int, typer.Option(help="concurrent clients")] = 8,
    scenario: Annotated[Scenario, typer.Option(help="the demo to run")] = Scenario.TRAFFIC,
) -> None:
    """Start the embedded store, a local demo upstream and the gateway; replay real prompts; print
    a summary. ``--scenario rollout``: a regressed canary caught and rolled back (a report)."""
    _setup_logging("warning")
    if scenario is Scenario.ROLLOUT:
        from gateway.demo.rollout_scenario import run_rollout_demo

        raise typer.Exit(run_rollout_demo(Path("var")))
    from gateway.demo.run import run_demo

    raise typer.Exit(run_demo(n=requests, concurrency=concurrency, store_dir=Path("var")))


@config_app.command("check")
def config_check(file: Annotated[Path, typer.Argument(help="YAML config file")]) -> None:
    """Validate a config file without serving: exit 0 and a summary, or exit 2 naming file and field.
    Runs every check ``serve`` runs before it binds (``gateway.config_check.check_config``)."""
    from gateway.config_check import check_config, litellm_warning
    from rollguard.config_version import config_version
    from rollguard.errors import ConfigError
    from rollguard.settings import load_settings

    try:
        checked = check_config(load_settings(file), str(file))
    except ConfigError as exc:
        _fail(str(exc))
    settings, pipeline = checked.settings, checked.pipeline
    for where in settings.unresolved_secrets():
        typer.echo(f"warning: {file}: {where}: the environment variable is unset", err=True)
    ignored = litellm_warning(checked.ignored)
    if ignored:
        typer.echo(f"warning: {file}: {ignored}", err=True)
    typer.echo(
        f"{file}: ok — {_served_models(settings)}, "
        f"{len(pipeline.policies)} policies ({', '.join(p.id for p in pipeline.policies) or 'none'}), "
        f"{len(settings.gateway.api_keys)} API key(s), config version {config_version(settings)}"
    )


def _served_models(settings: RollguardSettings) -> str:
    """What ``serve`` will serve: the configured aliases, or with no ``model_list`` the local demo
    upstream's (``gateway.defaults.demo_model_entries``)."""
    if not settings.model_list:
        from gateway.defaults import demo_model_entries

        names = ", ".join(e.model_name for e in demo_model_entries("http://127.0.0.1/v1"))
        return f"serves the local demo model(s) {names} (no model_list)"
    return f"{len(settings.model_names())} model alias(es)"


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
    model: Annotated[
        str, typer.Option(help="hashed (the shipped model) or vocabulary (the previous one)")
    ] = "hashed",
) -> None:
    """Retrain the prompt-injection classifier and write its metrics."""
    from gateway.tools.train_injection import main as vocabulary_main
    from gateway.tools.train_injection_hashed import main as hashed_main

    if model not in ("hashed", "vocabulary"):
        typer.echo(f"error: --model must be hashed or vocabulary, got {model!r}", err=True)
        raise typer.Exit(2)
    train_main = hashed_main if model == "hashed" else vocabulary_main
    raise typer.Exit(train_main(["--data", str(data_dir), "--out", str(out_dir), "--seed", str(seed)]))


@app.command()
def detect(
    file: Annotated[
        Path, typer.Argument(help="JSON Lines: {'messages': [...], 'completion': '...'} per line")
    ],
    out: Annotated[Path | None, typer.Option("--out", help="write here instead of standard output")] = None,
) -> None:
    """Score offline records with every per-interaction detector; one JSON line per scored record,
    in order. A line that cannot be scored (bad JSON, wrong types) prints ``error: FILE: line N: ...``
    on standard error and is skipped; the other lines are still scored.

    Exit codes: 0 every line scored; 2 a file cannot be read or written, or a line was bad;
    141 standard output was closed early (``detect ... | head``), quietly."""
    from gateway.tools.offline import run_detect

    def report(message: str) -> None:
        typer.echo(f"error: {file}: {message}", err=True)

    try:
        errors = run_detect(file, out, on_error=report)
    except BrokenPipeError:
        _stdout_closed()
    except OSError as exc:
        _fail(f"{exc.strerror or exc}: {exc.filename or file}")
    raise typer.Exit(2 if errors else 0)


def _stdout_closed() -> None:
    """End quietly after the reader closed standard output (``| head``): point the descriptor at
    /dev/null so the interpreter's final flush cannot fail again, then exit 141 (128 + SIGPIPE, what
    a shell reports for a command killed by the signal; Python's documented recipe,
    docs.python.org/3/library/signal.html#note-on-sigpipe)."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    raise typer.Exit(141)


@app.command()
def worker(
    config: ConfigOpt = None,
    name: Annotated[
        str | None,
        typer.Option("--name", "--consumer", help="consumer name (default: unique per host, pid and start)"),
    ] = None,
    redis_url: Annotated[
        str | None, typer.Option(help="Redis URL (default: store.redis_url or embedded)")
    ] = None,
    idle_exit_s: Annotated[float | None, typer.Option(help="exit after this many idle seconds")] = None,
    claim_idle_ms: Annotated[int | None, typer.Option(help="reclaim entries idle this long (ms)")] = None,
    batch: Annotated[int | None, typer.Option(help="entries per read")] = None,
) -> None:
    """Run a detector worker (consumer group on the interactions stream); prints its counters as
    one JSON line when it stops."""
    import asyncio

    from gateway.defaults import with_embedded_defaults
    from gateway.store.keys import consumer_name
    from gateway.worker import run_worker, stats_json, worker_options
    from rollguard.settings import load_settings

    _setup_logging()
    settings = with_embedded_defaults(load_settings(config))
    opt = worker_options(settings)[1]
    opt.idle_exit_s = idle_exit_s
    opt.claim_idle_ms = claim_idle_ms if claim_idle_ms is not None else opt.claim_idle_ms
    opt.batch = batch if batch is not None else opt.batch
    stats = asyncio.run(run_worker(settings, name or consumer_name("worker"), opt, redis_url=redis_url))
    print(stats_json(stats), flush=True)


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


eval_app.command("guardrails")(eval_guardrails)


@review_app.command("export")
def review_export(
    fmt: Annotated[ExportFormat, typer.Option("--format", help="row shape (TRL)")] = ExportFormat.DPO,
    out: Annotated[Path, typer.Option("--out", help="output file")] = Path("review-export.jsonl"),
    config: ConfigOpt = None,
) -> None:
    """Export reviewer verdicts as preference data (TRL shapes). Reads the store a gateway wrote:
    an embedded store that does not exist in this directory, or a store with no rollguard data,
    is refused (exit 2) instead of exporting 0 rows.

    Exit codes: 0 written; 2 bad config or no such store; 3 the store failed."""
    import asyncio

    from gateway.defaults import with_embedded_defaults
    from gateway.review.export import export_from_settings
    from gateway.store.locate import check_embedded_dir
    from rollguard.errors import ConfigError, StoreError
    from rollguard.settings import load_settings

    try:
        settings = with_embedded_defaults(load_settings(config))
        check_embedded_dir(settings.store)
        res = asyncio.run(export_from_settings(settings, fmt.value, out))
    except ConfigError as exc:
        _fail(str(exc))
    except StoreError as exc:
        _fail(exc.message, 3)
    skipped = (
        f" ({res.skipped} decided item(s) skipped: their verdict did not judge the reply)"
        if res.skipped
        else ""
    )
    typer.echo(f"wrote {res.rows} rows to {out}{skipped}")


use_click_usage(app)  # after the last command: "config check [OPTIONS] FILE", not "{file}"


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
