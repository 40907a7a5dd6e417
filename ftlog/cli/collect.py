"""``ftlog snapshot``, ``ftlog ingest`` and ``ftlog watch``: recording jobs."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import click

from ftlog import settings
from ftlog.cli.options import (
    TIME,
    TIME_EXAMPLES,
    current_profile,
    db_option,
    is_quiet,
    is_verbose,
    verbosity_options,
)

if TYPE_CHECKING:
    from ftlog.cli.progress import TerminalProgress
    from ftlog.client import FineTuningClient
    from ftlog.collector import RunSummary

F = TypeVar("F", bound=Callable[..., Any])


def api_options(func: F) -> F:
    """--base-url, --api-key, --project-id: how to reach the API."""
    func = click.option(
        "--project-id",
        metavar="ID",
        help="Nebius AI Studio project (sent as ai_project_id).",
    )(func)
    func = click.option(
        "--api-key",
        metavar="TOKEN",
        help=f"API token. Default: the profile's, else ${settings.API_KEY}, else "
        f"${settings.NEBIUS_API_KEY}. Prefer the variables: a token on the command line is "
        "visible to other users of the machine.",
    )(func)
    return click.option(
        "--base-url",
        metavar="URL",
        help=f"API base URL. Default: ${settings.BASE_URL}, else the profile's base_url, else "
        f"{settings.DEFAULT_BASE_URL} (Nebius also serves "
        "https://api.tokenfactory.nebius.com/v1).",
    )(func)


def recording_options(func: F) -> F:
    """What else a snapshot records and who it tells: --no-events, --notify-command, ..."""
    func = click.option(
        "--notify-webhook",
        metavar="URL",
        help="POST each status transition as JSON (Slack-compatible 'text') to URL. Default: "
        f"${settings.NOTIFY_WEBHOOK}, else the profile's. A webhook URL is a secret: prefer "
        "the variable.",
    )(func)
    func = click.option(
        "--notify-command",
        metavar="CMD",
        help="Run CMD (a shell command line) once per status transition, with FTLOG_JOB_ID, "
        "FTLOG_OLD_STATUS, FTLOG_NEW_STATUS, FTLOG_MODEL, FTLOG_ERROR_MESSAGE in its "
        "environment.",
    )(func)
    func = click.option(
        "--no-checkpoints", is_flag=True, help="Do not fetch checkpoints (and their metrics)."
    )(func)
    return click.option("--no-events", is_flag=True, help="Do not fetch job events.")(func)


def _plan_extras(
    no_events: bool, no_checkpoints: bool, notify_command: str | None, notify_webhook: str | None
) -> dict[str, Any]:
    from ftlog.notify import Target

    details = [
        kind for kind, off in (("events", no_events), ("checkpoints", no_checkpoints)) if not off
    ]
    profile = current_profile()
    secret_env = (
        [name for name in (profile.api_key_env, profile.notify_webhook_env) if name]
        if profile
        else []
    )
    notify = []
    if notify_command:
        notify.append(Target("command", notify_command))
    if notify_webhook:
        if not notify_webhook.startswith(("http://", "https://")):
            raise click.BadParameter("must be an http(s) URL", param_hint="--notify-webhook")
        notify.append(Target("webhook", notify_webhook))
    return {"details": details, "notify": notify, "secret_env": secret_env}


source_option = click.option(
    "--source",
    metavar="NAME",
    help="Label for where the jobs come from. Default: the API host (from --base-url).",
)
json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print a machine-readable summary on stdout."
)


@contextmanager
def _client(
    base_url: str | None, api_key: str | None, project_id: str | None
) -> Iterator[FineTuningClient]:
    """A client for the API, its token from --api-key, the profile, or the environment."""
    from ftlog.client import FineTuningClient
    from ftlog.config import resolve_api_key

    token = resolve_api_key(current_profile(), api_key)
    with FineTuningClient(base_url, token, project_id) as client:
        yield client


def _source_id(engine: Any, source: str | None, base_url: str) -> int:
    from ftlog import store
    from ftlog.collector import default_source_name

    return store.ensure_source(engine, source or default_source_name(base_url), base_url)


def _finish(summary: RunSummary, as_json: bool) -> None:
    """Print the run (errors always; see :mod:`ftlog.cli.progress`), JSON on stdout with
    --json, and exit with the run's code."""
    from ftlog.cli.progress import print_run

    if as_json:
        import json

        click.echo(json.dumps(summary.as_dict(), indent=2))
    ctx = click.get_current_context()
    print_run(summary, quiet=is_quiet(ctx), verbose=is_verbose(ctx))
    if summary.exit_code:
        sys.exit(summary.exit_code)


@contextmanager
def _progress() -> Iterator[TerminalProgress | None]:
    from ftlog.cli.progress import TerminalProgress

    display = TerminalProgress.for_terminal(is_quiet(click.get_current_context()))
    try:
        yield display
    finally:
        if display is not None:
            display.close()


@contextmanager
def _interruptible(command: str) -> Iterator[None]:
    """SIGTERM (systemd stop, ``timeout``, ``docker stop``) stops a run as Ctrl-C does: the
    batch in flight is finished or rolled back, the run is recorded as interrupted, and the
    exit code is 128 + the signal's number (130 for SIGINT, 143 for SIGTERM). A second
    signal while it winds down is ignored."""
    import signal

    from ftlog.errors import Interrupted

    def stop(signum: int, _frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise Interrupted(signum)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    except KeyboardInterrupt as err:
        number = getattr(err, "signal_number", signal.SIGINT)
        click.echo(
            f"ftlog {command}: interrupted by {signal.Signals(number).name}; what was recorded "
            "is kept, and the run is recorded as interrupted",
            err=True,
        )
        sys.exit(128 + number)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


concurrency_option = click.option(
    "--concurrency",
    type=click.IntRange(1, 64),
    default=settings.DEFAULT_CONCURRENCY,
    show_default=True,
    metavar="N",
    help="Per-job requests (refreshing unfinished jobs, events, checkpoints) in flight at "
    "once; a profile's concurrency key sets it too. The API's rate limits are honoured "
    "across all of them.",
)


@click.command()
@click.argument("job_ids", nargs=-1, metavar="[JOB_ID]...")
@click.option("--active", is_flag=True, help="Re-fetch only the jobs recorded as unfinished.")
@click.option("--full", is_flag=True, help="Page through every job, not just the new ones.")
@recording_options
@concurrency_option
@api_options
@source_option
@db_option
@json_option
@verbosity_options
def snapshot(
    job_ids: tuple[str, ...],
    active: bool,
    full: bool,
    no_events: bool,
    no_checkpoints: bool,
    notify_command: str | None,
    notify_webhook: str | None,
    concurrency: int,
    base_url: str | None,
    api_key: str | None,
    project_id: str | None,
    source: str | None,
    db_url: str | None,
    as_json: bool,
) -> None:
    """Record the current state of fine-tuning jobs (run it from cron).

    With no JOB_ID: pages through the job list until it reaches jobs already recorded as
    finished and unchanged, then re-fetches the unfinished ones; an up-to-date store costs
    one or two requests.

    Exit codes: 0 everything recorded; 1 some job or request failed (each is printed, the
    rest is recorded); 2 bad usage, a refused token or a store at another schema revision;
    75 the store was locked by another run for too long; 130/143 stopped by SIGINT/SIGTERM.
    """
    if active and (full or job_ids):
        raise click.UsageError("--active cannot be combined with --full or JOB_IDs")
    if full and job_ids:
        raise click.UsageError("--full pages the whole list; it takes no JOB_IDs")
    from ftlog.collector import SnapshotPlan
    from ftlog.collector import snapshot as run_snapshot
    from ftlog.db import open_store

    _check_job_ids(job_ids)
    extras = _plan_extras(no_events, no_checkpoints, notify_command, notify_webhook)
    plan = SnapshotPlan(
        job_ids=job_ids, active_only=active, full=full, concurrency=concurrency, **extras
    )
    with (
        _client(base_url, api_key, project_id) as client,
        open_store(db_url, create=True) as engine,
    ):
        source_id = _source_id(engine, source, client.base_url)
        with _interruptible("snapshot"), _progress() as progress:
            summary = run_snapshot(engine, client, source_id, plan, progress=progress)
    _finish(summary, as_json)


def _check_job_ids(job_ids: tuple[str, ...]) -> None:
    """Job ids given on the command line must be requestable (not ``.``, ``..``, ...)."""
    from ftlog.client import job_id_problem

    for job_id in job_ids:
        problem = job_id_problem(job_id)
        if problem:
            raise click.BadParameter(f"{problem}: {job_id!r}", param_hint="JOB_ID")


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.File("rb"))
@click.option(
    "--observed-at",
    type=TIME,
    metavar="TIME",
    help=f"When the objects were seen: {TIME_EXAMPLES}, or a span back from now (2h). "
    "Default: now.",
)
@click.option(
    "--base-url",
    metavar="URL",
    help="The API the objects came from, for the default --source. Default: as for snapshot.",
)
@source_option
@db_option
@json_option
@verbosity_options
def ingest(
    files: tuple[Any, ...],
    observed_at: datetime | None,
    base_url: str | None,
    source: str | None,
    db_url: str | None,
    as_json: bool,
) -> None:
    """Record job objects saved earlier (FILE, or - for stdin).

    Each FILE holds one job object, a list response ({"data": [...]}), a JSON array or JSON
    lines. Objects that cannot be recorded are reported and skipped (exit code 1). The same
    objects ingested again at the same --observed-at add nothing. The API token, when set,
    is scrubbed from the objects as from the API's answers.
    """
    from ftlog.collector import ingest as run_ingest
    from ftlog.collector import read_job_objects
    from ftlog.db import open_store
    from ftlog.settings import DEFAULT_BASE_URL

    objects: list[Any] = []
    for file in files:
        objects.extend(read_job_objects(file.read(), getattr(file, "name", "<stdin>")))
    secrets = [token] if (token := _known_token()) else []
    with open_store(db_url, create=True) as engine:
        source_id = _source_id(engine, source, base_url or DEFAULT_BASE_URL)
        with _interruptible("ingest"):
            summary = run_ingest(engine, source_id, objects, observed_at, secrets=secrets)
    _finish(summary, as_json)


def _known_token() -> str | None:
    """The token, if one is configured (ingest needs none, but scrubs it when known)."""
    from ftlog.config import resolve_api_key
    from ftlog.errors import AuthError

    try:
        return resolve_api_key(current_profile(), None)
    except AuthError:
        return None


@click.command()
@click.argument("job_ids", nargs=-1, metavar="[JOB_ID]...")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.1),
    default=60.0,
    show_default=True,
    help="Seconds between snapshots.",
)
@recording_options
@concurrency_option
@api_options
@source_option
@db_option
@verbosity_options
def watch(
    job_ids: tuple[str, ...],
    interval: float,
    no_events: bool,
    no_checkpoints: bool,
    notify_command: str | None,
    notify_webhook: str | None,
    concurrency: int,
    base_url: str | None,
    api_key: str | None,
    project_id: str | None,
    source: str | None,
    db_url: str | None,
) -> None:
    """Snapshot repeatedly until the watched jobs finish (Ctrl-C stops it).

    With JOB_IDs it watches those; without, every job: each pass syncs the list (new jobs
    included) and it stops when none is unfinished. Each pass prints its errors; the exit
    code is 1 when any pass had one, and a pass that cannot go on (the API unreachable)
    ends the watch.
    """
    from ftlog.collector import SnapshotPlan
    from ftlog.collector import watch as run_watch
    from ftlog.db import open_store

    _check_job_ids(job_ids)
    extras = _plan_extras(no_events, no_checkpoints, notify_command, notify_webhook)
    plan = SnapshotPlan(job_ids=job_ids, concurrency=concurrency, **extras)
    ctx = click.get_current_context()
    quiet, verbose = is_quiet(ctx), is_verbose(ctx)
    from ftlog.cli.progress import print_run

    failed_passes = 0
    with (
        _client(base_url, api_key, project_id) as client,
        open_store(db_url, create=True) as engine,
    ):
        source_id = _source_id(engine, source, client.base_url)
        with _interruptible("watch"), _progress() as progress:
            for summary in run_watch(engine, client, source_id, plan, interval, progress=progress):
                if progress is not None:
                    progress.close()
                print_run(summary, quiet=quiet, verbose=verbose)
                failed_passes += bool(summary.errors)
    if failed_passes:
        click.echo(
            f"ftlog watch: stopped; {failed_passes} pass{'es' * (failed_passes > 1)} had errors "
            "(printed above)",
            err=True,
        )
        sys.exit(1)
    if not quiet:
        click.echo("ftlog watch: every watched job has finished", err=True)
