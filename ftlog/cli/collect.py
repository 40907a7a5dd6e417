"""``ftlog snapshot``, ``ftlog ingest`` and ``ftlog watch``: recording jobs."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import click

from ftlog.cli.config import current_profile, profile_options
from ftlog.cli.options import db_option, is_quiet, verbosity_options

if TYPE_CHECKING:
    from ftlog.client import FineTuningClient
    from ftlog.collector import RunSummary

F = TypeVar("F", bound=Callable[..., Any])

PROGRESS_AFTER_S = 1.0
"""A run shows its progress on a terminal once it has taken this long."""


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
        help="API token. Default: $FTLOG_API_KEY, else $NEBIUS_API_KEY. Prefer the variables: "
        "a token on the command line is visible to other users of the machine.",
    )(func)
    return click.option(
        "--base-url",
        envvar="FTLOG_BASE_URL",
        show_envvar=True,
        metavar="URL",
        help="API base URL. Default: https://api.studio.nebius.com/v1 (Nebius also serves "
        "https://api.tokenfactory.nebius.com/v1).",
    )(func)


def recording_options(func: F) -> F:
    """What else a snapshot records and who it tells: --no-events, --notify-command, ..."""
    func = click.option(
        "--notify-webhook",
        envvar="FTLOG_NOTIFY_WEBHOOK",
        show_envvar=True,
        metavar="URL",
        help="POST each status transition as JSON (Slack-compatible 'text') to URL. A webhook "
        "URL is a secret: prefer the variable.",
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
    from ftlog.client import FineTuningClient, resolve_api_key

    profile = current_profile()
    token = profile.resolve_api_key(api_key) if profile else resolve_api_key(api_key)
    with FineTuningClient(base_url, token, project_id) as client:
        yield client


def _source_id(engine: Any, source: str | None, base_url: str) -> int:
    from ftlog import store
    from ftlog.collector import default_source_name

    return store.ensure_source(engine, source or default_source_name(base_url), base_url)


def _report(summary: RunSummary, as_json: bool) -> None:
    """The summary: one line on stderr (unless -q), JSON on stdout with --json; exit code."""
    if as_json:
        import json

        click.echo(json.dumps(summary.as_dict(), indent=2))
    if not is_quiet(click.get_current_context()):
        click.echo(summary.line(), err=True)
    if summary.exit_code:
        sys.exit(summary.exit_code)


@contextmanager
def _progress() -> Iterator[Callable[[int], None] | None]:
    """A running count on a terminal (stderr) once the work has taken a second; nothing
    under cron. The total is not known in advance: the job list is paged until it is done."""
    if is_quiet(click.get_current_context()) or not sys.stderr.isatty():
        yield None
        return
    started, done = time.monotonic(), 0

    def update(jobs: int) -> None:
        nonlocal done
        done += jobs
        if time.monotonic() - started >= PROGRESS_AFTER_S:
            click.echo(f"\r  {done:,} jobs recorded…", err=True, nl=False)

    try:
        yield update
    finally:
        if time.monotonic() - started >= PROGRESS_AFTER_S:
            click.echo("\r\033[K", err=True, nl=False)  # clear the line for the summary


@click.command()
@click.argument("job_ids", nargs=-1, metavar="[JOB_ID]...")
@click.option("--active", is_flag=True, help="Re-fetch only the jobs recorded as unfinished.")
@click.option("--full", is_flag=True, help="Page through every job, not just the new ones.")
@recording_options
@api_options
@source_option
@db_option
@json_option
@profile_options
@verbosity_options
def snapshot(
    job_ids: tuple[str, ...],
    active: bool,
    full: bool,
    no_events: bool,
    no_checkpoints: bool,
    notify_command: str | None,
    notify_webhook: str | None,
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

    Exit codes: 0 everything recorded; 1 some job or request failed (the rest is recorded);
    2 bad usage, a refused token or a store at another schema revision.
    """
    if active and (full or job_ids):
        raise click.UsageError("--active cannot be combined with --full or JOB_IDs")
    if full and job_ids:
        raise click.UsageError("--full pages the whole list; it takes no JOB_IDs")
    from ftlog.collector import SnapshotPlan
    from ftlog.collector import snapshot as run_snapshot
    from ftlog.db import open_store

    extras = _plan_extras(no_events, no_checkpoints, notify_command, notify_webhook)
    plan = SnapshotPlan(job_ids=job_ids, active_only=active, full=full, **extras)
    with _client(base_url, api_key, project_id) as client, open_store(db_url) as engine:
        source_id = _source_id(engine, source, client.base_url)
        with _progress() as progress:
            summary = run_snapshot(engine, client, source_id, plan, progress=progress)
    _report(summary, as_json)


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.File("r"))
@click.option(
    "--observed-at",
    type=click.DateTime(
        ["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d"]
    ),
    help="When the objects were seen (ISO time, UTC unless it has an offset). Default: now.",
)
@click.option(
    "--base-url",
    envvar="FTLOG_BASE_URL",
    show_envvar=True,
    metavar="URL",
    help="The API the objects came from, for the default --source.",
)
@source_option
@db_option
@json_option
@profile_options
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
    lines. Objects that cannot be recorded are reported and skipped (exit code 1).
    """
    from ftlog.collector import ingest as run_ingest
    from ftlog.collector import read_job_objects
    from ftlog.db import open_store
    from ftlog.settings import DEFAULT_BASE_URL

    objects: list[Any] = []
    for file in files:
        objects.extend(read_job_objects(file.read(), file.name))
    with open_store(db_url) as engine:
        source_id = _source_id(engine, source, base_url or DEFAULT_BASE_URL)
        summary = run_ingest(engine, source_id, objects, observed_at)
    _report(summary, as_json)


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
@api_options
@source_option
@db_option
@profile_options
@verbosity_options
def watch(
    job_ids: tuple[str, ...],
    interval: float,
    no_events: bool,
    no_checkpoints: bool,
    notify_command: str | None,
    notify_webhook: str | None,
    base_url: str | None,
    api_key: str | None,
    project_id: str | None,
    source: str | None,
    db_url: str | None,
) -> None:
    """Snapshot repeatedly until the watched jobs finish (Ctrl-C stops it).

    With JOB_IDs it watches those; without, every job: each pass syncs the list (new jobs
    included) and it stops when none is unfinished.
    """
    from ftlog.collector import SnapshotPlan
    from ftlog.collector import watch as run_watch
    from ftlog.db import open_store

    extras = _plan_extras(no_events, no_checkpoints, notify_command, notify_webhook)
    plan = SnapshotPlan(job_ids=job_ids, **extras)
    quiet = is_quiet(click.get_current_context())
    with _client(base_url, api_key, project_id) as client, open_store(db_url) as engine:
        source_id = _source_id(engine, source, client.base_url)
        try:
            for summary in run_watch(engine, client, source_id, plan, interval):
                if not quiet:
                    click.echo(summary.line(), err=True)
        except KeyboardInterrupt:
            click.echo("ftlog watch: stopped", err=True)
            return
    if not quiet:
        click.echo("ftlog watch: every watched job has finished", err=True)
