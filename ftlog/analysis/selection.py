"""Choosing jobs by id: ids or unique id prefixes, narrowed by the usual filters.

The one place that turns what a user typed into jobs, for every command that names jobs
(``show``, ``compare``, ``throughput``, ``export``, the plots) and for the comparisons of
:mod:`ftlog.analysis.compare`. The loaders themselves take exact ids and give empty frames
for unknown ones.

**Rules.** Each id in ``job_ids`` names the job with exactly that id; failing that, the one
job whose id starts with it (``ftlog show ftjob-8f2`` for ``ftjob-8f2c…``). Matching is
case-sensitive, on SQLite as on Postgres, and only among the jobs the other filters select.
An id that names no job, a prefix that names several (the message lists them) and an id
recorded under several sources (unless ``source`` picks one) are :class:`UsageProblem`\\ s:
the CLI prints them as one line and exits with code 2.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Unpack

import pandas as pd
from sqlalchemy import ColumnElement, Connection, Select, select

from ftlog.analysis._read import (
    JOB_COLUMNS,
    Filters,
    StoreLike,
    checked_filters,
    conditions,
    connected,
    jobs_table,
    load_job_rows,
    public,
    sources_table,
)
from ftlog.errors import UsageProblem, shown

_LISTED = 5
"""How many candidates an ambiguous prefix's message lists."""


def select_jobs(store: StoreLike = None, **filters: Unpack[Filters]) -> pd.DataFrame:
    """The jobs ``filters`` select, as :func:`~ftlog.analysis.load_jobs` gives them
    (``JOB_COLUMNS``), where ``job_ids`` may hold unique prefixes (see the module docstring).

    With ``job_ids``: one row per job named, in the order named (an id named twice, or two
    prefixes of one job, give one row). Raises UsageProblem for an unknown id, an ambiguous
    prefix, or an id in several sources.
    """
    with selecting(store, filters) as (_, _, jobs):
        return public(jobs, JOB_COLUMNS)


def exact_filters(jobs: pd.DataFrame, filters: Filters) -> Filters:
    """``filters`` with ``job_ids`` (ids or prefixes) replaced by the exact ids of ``jobs``,
    which :func:`select_jobs` selected with them: for the loaders, which take exact ids."""
    if not _named(filters):
        return filters
    return {**filters, "job_ids": [str(job_id) for job_id in jobs["job_id"]]}


@contextmanager
def selecting(
    store: StoreLike, filters: Filters
) -> Iterator[tuple[Connection, list[ColumnElement[bool]], pd.DataFrame]]:
    """As :func:`~ftlog.analysis._read.reading`, but ``job_ids`` may be unique prefixes, the
    jobs come in the order named, and a name that selects no job, or several, raises."""
    checked = checked_filters(filters)
    named = _named(checked)
    with connected(store) as conn:
        if named:
            checked["job_ids"] = resolve_ids(conn, named, checked)
        conds = conditions(checked, conn)
        jobs = load_job_rows(conn, conds)
        if named:
            rank = {job_id: i for i, job_id in enumerate(checked["job_ids"] or ())}
            order = jobs["job_id"].map(rank).astype("int64").argsort(kind="stable")
            jobs = jobs.iloc[order].reset_index(drop=True)
        yield conn, conds, jobs


def resolve_ids(conn: Connection, named: Sequence[str], filters: Filters) -> list[str]:
    """The exact job id each of ``named`` stands for among the jobs ``filters`` (but their
    ``job_ids``) select, in order, without repeats; UsageProblem as the module says."""
    if any(not name.strip() for name in named):
        raise UsageProblem("an empty job id names no job; give an id or a unique prefix of one")
    narrowing: Filters = {**filters, "job_ids": None}
    base = conditions(narrowing, conn)
    query = select(sources_table.c.name, jobs_table.c.job_id).select_from(
        jobs_table.join(sources_table)
    )
    query = query.where(*base)
    exact: dict[str, list[str]] = {}
    for source, job_id in conn.execute(query.where(jobs_table.c.job_id.in_(named))):
        exact.setdefault(job_id, []).append(source)
    resolved: list[str] = []
    unknown: list[str] = []
    for name in named:
        job_id, sources = (name, exact[name]) if name in exact else _by_prefix(conn, query, name)
        if not sources:
            unknown.append(name)
            continue
        if len(sources) > 1:
            raise UsageProblem(
                f"job id {shown(job_id)} is recorded under several sources "
                f"({', '.join(map(shown, sorted(sources)))}); pick one with --source"
            )
        if job_id not in resolved:
            resolved.append(job_id)
    if unknown:
        raise UsageProblem(_unknown(conn, unknown, base, narrowing))
    return resolved


def _by_prefix(conn: Connection, query: Select[str, str], prefix: str) -> tuple[str, list[str]]:
    """The one job id starting with ``prefix`` and its sources; no sources for none;
    UsageProblem when several ids start with it."""
    # LIKE narrows (it ignores case on SQLite); startswith decides.
    like = jobs_table.c.job_id.startswith(prefix, autoescape=True)
    hits = [(s, j) for s, j in conn.execute(query.where(like)) if j.startswith(prefix)]
    ids = sorted({job_id for _, job_id in hits})
    if len(ids) > 1:
        raise UsageProblem(_ambiguous(prefix, ids))
    return (ids[0] if ids else prefix), [source for source, _ in hits]


def _named(filters: Filters) -> list[str]:
    job_ids = filters.get("job_ids")
    if job_ids is None:
        return []
    return list(dict.fromkeys([job_ids] if isinstance(job_ids, str) else job_ids))


def _ambiguous(name: str, ids: list[str]) -> str:
    listed = ", ".join(shown(job_id) for job_id in ids[:_LISTED])
    more = f" and {len(ids) - _LISTED} more" if len(ids) > _LISTED else ""
    return (
        f"job id prefix {shown(name)} matches {len(ids)} jobs ({listed}{more}); give more of the id"
    )


def _unknown(
    conn: Connection, unknown: list[str], base: list[ColumnElement[bool]], filters: Filters
) -> str:
    """The message for ids that name no job: which, where, and the closest recorded ids."""
    narrowed = [k for k, v in filters.items() if k != "job_ids" and v is not None]
    where = ""
    if narrowed == ["source"]:
        where = f" in source {shown(str(filters['source']))}"
    elif narrowed:
        where = f" among the jobs the filters select ({', '.join(sorted(narrowed))})"
    plural = "s" * (len(unknown) > 1)
    message = f"unknown job id{plural}{where}: {', '.join(map(shown, unknown))}"
    recorded = conn.execute(select(jobs_table.c.job_id).join(sources_table).where(*base))
    ids = sorted({job_id for (job_id,) in recorded})
    close = [match for name in unknown for match in difflib.get_close_matches(name, ids, n=1)]
    if close:
        return f"{message} (did you mean {' or '.join(map(shown, close))}?)"
    return f"{message} (ftlog jobs lists the recorded jobs)"
