"""``ftlog jobs``, ``show``, ``throughput`` and ``export``: reading the history.

Every command reads through :mod:`ftlog.analysis` and writes through :mod:`ftlog.export`.
Unknown job ids are bad input: a one-line error and exit code 2.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar, cast

import click

from ftlog.cli.options import TIME, TIME_EXAMPLES, chosen_prices, db_option, prices_option
from ftlog.formats import FORMATS

if TYPE_CHECKING:
    from pathlib import Path

    import pandas as pd
    from sqlalchemy import Engine

    from ftlog.analysis import CostGroup, Period
    from ftlog.formats import FileFormat
    from ftlog.pricing import PriceTable

F = TypeVar("F", bound=Callable[..., Any])

EXPORTS = {
    "jobs": "one row per job, its latest fields",
    "hyperparameters": "one row per job, one column per hyperparameter",
    "snapshots": "one row per distinct observed state of a job",
    "status-history": "one row per status change",
    "throughput": "one row per interval between two snapshots",
    "throughput-summary": "one row per job: speed, time queued and running, cost",
    "runs": "one row per job: model, status, hyperparameters, speed, losses, cost",
    "comparison": "one row per job: the hyperparameters that differ (--all: every one) and "
    "outcomes; --by HYPERPARAMETER: one row per value",
    "trends": "per day (--every week) and model: jobs, median and p90 of queued_s, running_s",
    "events": "one row per event of a job",
    "checkpoints": "one row per checkpoint, with its metrics",
    "loss-curves": "one row per job, step and loss, with the tokens trained by then",
    "cost": "estimated cost per model (--by source, day) and currency",
}
"""What ``ftlog export NAME`` writes, by NAME (its help and the README list them all)."""
JOB_TABLE_COLUMNS = (
    "job_id", "source", "model", "status", "created_at", "finished_at", "trained_tokens",
    "suffix", "error_code",
)  # fmt: skip
"""What ``ftlog jobs`` shows as a table; csv and json carry every column."""
SUMMARY_TABLE_COLUMNS = (
    "job_id", "source", "status", "trained_tokens", "queued_s", "running_s",
    "mean_tokens_per_s", "median_tokens_per_s", "peak_tokens_per_s", "mean_steps_per_s", "eta",
)  # fmt: skip
"""What ``ftlog throughput`` shows as a table (and the cost, when any job has a price); csv
and json carry every column."""
COST_TABLE_COLUMNS = ("estimated_cost", "currency")
FULL_WIDTH = 100_000
"""``ftlog show`` prints a job's fields in full: its error message is what one asks it for."""
RECENT_EVENTS = 10
"""How many of a job's events ``ftlog show`` lists, the most recent."""
EVENT_TABLE_COLUMNS = ("created_at", "level", "type", "message")
CHECKPOINT_TABLE_COLUMNS = (
    "step", "created_at", "train_loss", "valid_loss", "full_valid_loss",
    "train_mean_token_accuracy", "valid_mean_token_accuracy",
)  # fmt: skip
PRICED_EXPORTS = ("cost", "throughput-summary", "comparison", "runs")
"""The exports that carry estimated costs (and take --prices)."""
REPORT_FORMATS = ("table", "csv", "json", "jsonl")
"""The formats of the report commands (``ftlog export`` writes files: csv, json, jsonl,
parquet)."""


def _complete_status(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[click.shell_completion.CompletionItem]:
    from ftlog.parse import KNOWN_STATUSES

    return [
        click.shell_completion.CompletionItem(status)
        for status in sorted(KNOWN_STATUSES)
        if status.startswith(incomplete)
    ]


def filter_options(func: F) -> F:
    """--status, --model, --source, --since, --until: which jobs to read."""
    func = click.option(
        "--until",
        type=TIME,
        metavar="TIME",
        help="Only jobs created before this time (as --since).",
    )(func)
    func = click.option(
        "--since",
        type=TIME,
        metavar="TIME",
        help=f"Only jobs created at or after this time: {TIME_EXAMPLES}, or a span back from "
        "now: 30m, 12h, 7d, 2w.",
    )(func)
    func = click.option(
        "--source",
        metavar="NAME",
        help="Only jobs from this source, or from those a pattern matches ('nebius-*'; '*' "
        "for all). Default: the profile's source.",
    )(func)
    func = click.option(
        "--model",
        metavar="MODEL",
        help="Only jobs fine-tuning this base model, or a model a pattern matches, as in the "
        "price table: 'Qwen/*', '*Llama-3.1-8B*' (case-sensitive).",
    )(func)
    return click.option(
        "--status",
        "statuses",
        multiple=True,
        metavar="STATUS",
        shell_complete=_complete_status,
        help="Only jobs whose latest status is this (repeat for several: --status failed "
        "--status cancelled).",
    )(func)


def format_option(*choices: str, default: str | None = "") -> Callable[[F], F]:
    """``--format``, offering ``choices`` of the one vocabulary (:data:`ftlog.formats.FORMATS`);
    the first is the default unless ``default`` says otherwise (None: no default)."""
    described = ", ".join(
        f"{name} ({FORMATS[name]})" if FORMATS[name] else name for name in choices
    )
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(choices),
        default=choices[0] if default == "" else default,
        show_default=default is not None,
        help=f"Output format: {described}.",
    )


@contextmanager
def _store(db_url: str | None) -> Iterator[Engine]:
    """The store, for reading: it must exist (a reader never creates one)."""
    from ftlog.db import open_store

    with open_store(db_url) as engine:
        yield engine


@contextmanager
def selecting_store(db_url: str | None, filters: dict[str, Any]) -> Iterator[Engine]:
    """The store, for reading the jobs ``filters`` select: a status that cannot be right is
    an error (exit code 2), a model or source no recorded job has gets a hint on stderr."""
    from ftlog.errors import UsageProblem
    from ftlog.filters import filter_hints

    with _store(db_url) as engine:
        if filters["status"] or filters["model"] or filters["source"]:
            with engine.connect() as conn:
                hints = filter_hints(
                    conn,
                    statuses=filters["status"] or (),
                    model=filters["model"],
                    source=filters["source"],
                )
            for hint in hints:
                if hint.typo:
                    raise UsageProblem(hint.message)
                click.echo(f"note: {hint.message}", err=True)
        yield engine


def selection_filters(
    statuses: Sequence[str],
    model: str | None,
    source: str | None,
    since: datetime | None,
    until: datetime | None,
    job_ids: Sequence[str] = (),
) -> dict[str, Any]:
    return {
        "job_ids": list(job_ids) or None,
        "status": list(statuses) or None,
        "model": model,
        "source": source,
        "since": since,
        "until": until,
    }


def _json_columns() -> set[str]:
    """The columns of ftlog.analysis's frames that hold JSON text (``extra``, an event's
    ``data``), which JSON output nests as objects."""
    from ftlog import analysis

    return {
        name
        for constant in analysis.__all__
        if constant.endswith("_COLUMNS")
        for name, kind in getattr(analysis, constant).items()
        if kind == "json"
    }


def emit(frame: pd.DataFrame, fmt: str, table_columns: Sequence[str] = ()) -> None:
    """Print ``frame``; a table keeps ``table_columns`` (if given) and drops a ``source``
    column that has one value only."""
    from ftlog import export

    if fmt != "table":
        export.write_frame(frame, "-", cast("FileFormat", fmt), json_columns=_json_columns())
    elif frame.empty:
        click.echo("(no jobs)")
    else:
        columns = [c for c in table_columns if c in frame.columns] or list(frame.columns)
        if "source" in columns and frame["source"].nunique() <= 1:
            columns.remove("source")
        click.echo(export.format_table(frame[columns]))


def _resolved(engine: Engine, filters: dict[str, Any]) -> dict[str, Any]:
    """``filters`` with their JOB_IDs (ids or unique prefixes) replaced by the exact ids
    they name (:func:`ftlog.analysis.select_jobs`); UsageProblem for an unknown id or an
    ambiguous prefix."""
    from ftlog import analysis
    from ftlog.analysis.selection import exact_filters

    if not filters["job_ids"]:
        return filters
    return dict(exact_filters(analysis.select_jobs(engine, **filters), cast("Any", filters)))


@click.command()
@filter_options
@click.option(
    "-n",
    "--limit",
    type=click.IntRange(min=1),
    metavar="N",
    help="Only the N most recently created jobs.",
)
@format_option(*REPORT_FORMATS)
@db_option
def jobs(
    statuses: tuple[str, ...],
    model: str | None,
    source: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int | None,
    fmt: str,
    db_url: str | None,
) -> None:
    """List the recorded jobs, newest first, with their latest status.

    The table shows the main fields; the other formats carry every column.
    """
    from ftlog import analysis

    filters = selection_filters(statuses, model, source, since, until)
    with selecting_store(db_url, filters) as engine:
        frame = analysis.load_jobs(engine, **filters)
    newest_first = frame.iloc[::-1].reset_index(drop=True)
    emit(newest_first if limit is None else newest_first.head(limit), fmt, JOB_TABLE_COLUMNS)


@click.command()
@click.argument("job_id")
@click.option("--source", metavar="NAME", help="The job's source, when several hold JOB_ID.")
@format_option("table", "json")
@db_option
def show(job_id: str, source: str | None, fmt: str, db_url: str | None) -> None:
    """Everything recorded about one job: fields, hyperparameters, status timeline, throughput,
    recent events and the losses at its checkpoints.

    JOB_ID may be a unique prefix of the id. An unknown JOB_ID, an ambiguous prefix, or an
    id recorded under several sources without --source, is an error (exit code 2).
    """
    from ftlog import export

    with _store(db_url) as engine:
        report = _job_report(engine, job_id, source)
    if fmt == "json":
        click.echo(_json(_json_ready(report)))
        return
    job = report["job"]
    click.echo(f"Job {job['job_id']}\n")
    click.echo(export.format_fields(_present(job), max_width=FULL_WIDTH))
    click.echo("\nHyperparameters\n")
    click.echo(export.format_fields(_present(report["hyperparameters"])))
    click.echo("\nStatus timeline\n")
    click.echo(export.format_table(report["status_history"]))
    click.echo("\nThroughput\n")
    click.echo(export.format_fields(_present(report["throughput"])))
    click.echo(f"\nRecent events (the last {RECENT_EVENTS})\n")
    click.echo(_section_table(report["events"], EVENT_TABLE_COLUMNS, max_width=72))
    click.echo("\nCheckpoints\n")
    click.echo(_section_table(report["checkpoints"], CHECKPOINT_TABLE_COLUMNS))


def _section_table(frame: pd.DataFrame, columns: Sequence[str], max_width: int = 40) -> str:
    """The columns of a section that hold something, or a note that there is nothing."""
    from ftlog import export

    if frame.empty:
        return "(none recorded)"
    shown = [c for c in columns if c in frame.columns and frame[c].notna().any()]
    return export.format_table(frame[shown], max_width=max_width)


def _job_report(engine: Engine, job_id: str, source: str | None) -> dict[str, Any]:
    """The sections of ``ftlog show``, read through ftlog.analysis."""
    from ftlog import analysis
    from ftlog.analysis.training import checkpoint_step

    job = analysis.select_jobs(engine, job_ids=[job_id], source=source)
    filters: dict[str, Any] = {"job_ids": list(job["job_id"]), "source": job["source"].iloc[0]}
    hyper = analysis.load_hyperparameters(engine, **filters)
    history = analysis.load_status_history(engine, **filters).sort_values(
        "observed_at", kind="stable"
    )
    summary = analysis.throughput_summary(engine, **filters)
    events = analysis.load_events(engine, **filters).tail(RECENT_EVENTS)
    checkpoints = analysis.load_checkpoints(engine, **filters)
    checkpoints["step"] = checkpoint_step(checkpoints)
    named = ["source", "job_id"]
    return {
        "job": _first_row(job),
        "hyperparameters": _first_row(hyper.drop(columns=named, errors="ignore")),
        "status_history": history.drop(columns=named, errors="ignore"),
        "throughput": _first_row(summary.drop(columns=[*named, *job.columns], errors="ignore")),
        "events": events.drop(columns=named).reset_index(drop=True),
        "checkpoints": checkpoints.drop(columns=[*named, "step_number"]),
    }


def _present(fields: dict[str, Any]) -> dict[str, Any]:
    """The fields that hold something (the table leaves out nulls and an empty ``extra``)."""
    import pandas as pd

    return {
        k: v
        for k, v in fields.items()
        if not (isinstance(v, str) and v == "{}") and (isinstance(v, list | dict) or pd.notna(v))
    }


def _json_ready(report: dict[str, Any]) -> dict[str, Any]:
    from ftlog import export
    from ftlog.parse import load_json

    nested = _json_columns()
    return {
        name: load_json(export.to_json_records(section, nested))
        if not isinstance(section, dict)
        else {
            k: load_json(v) if k in nested and isinstance(v, str) else export.json_value(v)
            for k, v in section.items()
        }
        for name, section in report.items()
    }


def _first_row(frame: pd.DataFrame) -> dict[str, Any]:
    return {} if frame.empty else {str(k): v for k, v in frame.iloc[0].items()}


def _json(value: Any) -> str:
    import json

    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


@click.command()
@click.argument("job_ids", nargs=-1, metavar="[JOB_ID]...")
@click.option(
    "--intervals",
    is_flag=True,
    help="One row per interval between two snapshots instead of one summary row per job.",
)
@filter_options
@prices_option
@format_option(*REPORT_FORMATS)
@db_option
def throughput(
    job_ids: tuple[str, ...],
    intervals: bool,
    statuses: tuple[str, ...],
    model: str | None,
    source: str | None,
    since: datetime | None,
    until: datetime | None,
    prices_path: Path | None,
    fmt: str,
    db_url: str | None,
) -> None:
    """Training speed per job: tokens and steps per second, time queued and running, and
    the estimated cost (ftlog cost explains the prices).

    With no JOB_ID, every job matching the filters. A JOB_ID may be a unique prefix.
    """
    from ftlog import analysis

    if intervals and prices_path is not None:
        raise click.UsageError("--prices applies to the summary, not to --intervals")
    prices = chosen_prices(prices_path)
    filters = selection_filters(statuses, model, source, since, until, job_ids)
    with selecting_store(db_url, filters) as engine:
        filters = _resolved(engine, filters)
        if intervals:
            frame = analysis.throughput(engine, **filters)
        else:
            frame = analysis.throughput_summary(engine, prices=prices, **filters)
    table_columns: tuple[str, ...] = ()
    if not intervals:
        priced = frame["estimated_cost"].notna().any()
        table_columns = SUMMARY_TABLE_COLUMNS + (COST_TABLE_COLUMNS if priced else ())
    emit(frame, fmt, table_columns)


_EXPORT_HELP = "\n".join(
    [
        "Write a table of the history: to stdout, or to FILE (-o).",
        "",
        "\b",
        "NAME is one of:",
        *(f"  {name:<19} {what}" for name, what in EXPORTS.items()),
        "",
        "The format is --format, else the suffix of FILE (.csv, .json, .jsonl, .parquet), "
        "else CSV. JOB_IDs and the filters narrow any export. Times are ISO 8601 UTC "
        "(2026-01-31T12:00:00Z); nulls are empty cells (CSV) or null (JSON); JSON nests "
        "objects (hyperparameters' extra, an event's data).",
    ]
)


@click.command(help=_EXPORT_HELP)
@click.argument("name", type=click.Choice(list(EXPORTS)), metavar="NAME")
@click.argument("job_ids", nargs=-1, metavar="[JOB_ID]...")
@click.option(
    "-o",
    "--output",
    metavar="FILE",
    help="Where to write (default: stdout; - too). Its suffix picks the format.",
)
@format_option("csv", "json", "jsonl", "parquet", default=None)
@click.option(
    "--no-escape",
    is_flag=True,
    help="Write CSV text verbatim. By default a text cell starting with = + - @, a tab or a "
    "carriage return gets a ' prefixed so spreadsheets do not run it as a formula.",
)
@click.option(
    "--all",
    "show_all",
    is_flag=True,
    help="For comparison: every hyperparameter, not only those that differ.",
)
@click.option(
    "--by",
    metavar="GROUP",
    help="For cost: one row per base model (the default), source, or day (of creation, UTC). "
    "For comparison: one row per value of this hyperparameter (as compare --by).",
)
@click.option(
    "--every",
    type=click.Choice(["day", "week"]),
    help="For trends: one row per day (the default) or ISO week (from Monday, UTC).",
)
@prices_option
@filter_options
@db_option
def export(
    name: str,
    job_ids: tuple[str, ...],
    output: str | None,
    fmt: str | None,
    no_escape: bool,
    show_all: bool,
    by: str | None,
    every: str | None,
    prices_path: Path | None,
    statuses: tuple[str, ...],
    model: str | None,
    source: str | None,
    since: datetime | None,
    until: datetime | None,
    db_url: str | None,
) -> None:
    from ftlog import export as writer

    file_format = writer.infer_format(output, fmt)
    filters = selection_filters(statuses, model, source, since, until, job_ids)
    if show_all and name != "comparison":
        raise click.UsageError("--all applies to export comparison only")
    if by is not None and name not in ("cost", "comparison"):
        raise click.UsageError("--by applies to export cost and comparison only")
    if by is not None and name == "cost":
        from ftlog.analysis.cost import COST_GROUPS

        if by not in COST_GROUPS:
            raise click.UsageError(f"export cost --by takes {', '.join(COST_GROUPS)}, not {by!r}")
    if every is not None and name != "trends":
        raise click.UsageError("--every applies to export trends only")
    if prices_path is not None and name not in PRICED_EXPORTS:
        raise click.UsageError(f"--prices applies to export {', '.join(PRICED_EXPORTS)}")
    prices = chosen_prices(prices_path)
    with selecting_store(db_url, filters) as engine:
        filters = _resolved(engine, filters)
        frame = _export_frame(engine, name, filters, show_all, by, every, prices)
    writer.write_frame(
        frame, output, file_format, escape=not no_escape, json_columns=_json_columns()
    )


def _export_frame(
    engine: Engine,
    name: str,
    filters: dict[str, Any],
    show_all: bool,
    by: str | None,
    every: str | None,
    prices: PriceTable,
) -> pd.DataFrame:
    """The frame of ``ftlog export NAME``, read through ftlog.analysis (JOB_IDs resolved)."""
    from ftlog import analysis

    if name == "comparison" and by is not None:
        return analysis.compare_by(engine, by, prices=prices, **filters)
    if name == "comparison":
        return analysis.compare_jobs(engine, only_different=not show_all, prices=prices, **filters)
    if name == "cost":
        group = cast("CostGroup", by or "model")
        return analysis.cost_totals(engine, by=group, prices=prices, **filters)
    if name == "throughput-summary":
        return analysis.throughput_summary(engine, prices=prices, **filters)
    if name == "runs":
        return analysis.runs(engine, prices=prices, **filters)
    if name == "trends":
        return analysis.trends(engine, every=cast("Period", every or "day"), **filters)
    read = {
        "jobs": analysis.load_jobs,
        "hyperparameters": analysis.load_hyperparameters,
        "snapshots": analysis.load_snapshots,
        "status-history": analysis.load_status_history,
        "throughput": analysis.throughput,
        "events": analysis.load_events,
        "checkpoints": analysis.load_checkpoints,
        "loss-curves": analysis.loss_curves,
    }[name]
    return read(engine, **filters)
