"""Jobs compared: their hyperparameters and what came of them, job by job or by group.

Every function here selects jobs as :func:`~ftlog.analysis.select_jobs` does: ``job_ids``
may be unique prefixes, and an unknown or ambiguous id raises UsageProblem.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any, Unpack

import pandas as pd

from ftlog.analysis._read import Filters, Kind, StoreLike, columns, json_object, plain, public
from ftlog.analysis._read import sort_key as canonical_key
from ftlog.analysis.history import HYPERPARAMETER_NAMES
from ftlog.analysis.runs import hyperparameter_rows, job_outcomes
from ftlog.analysis.selection import selecting
from ftlog.analysis.speed import SUMMARY_COLUMNS
from ftlog.analysis.training import LOSS_OUTCOMES
from ftlog.errors import UsageProblem
from ftlog.parse import canonical_json
from ftlog.pricing import PriceTable

_SUMMARY_OUTCOMES = (
    "model", "status", "trained_tokens", "trained_steps", "queued_s", "running_s",
    "mean_tokens_per_s", "median_tokens_per_s", "peak_tokens_per_s", "mean_steps_per_s",
    "tokens_per_step", "finish_estimate_error_s",
)  # fmt: skip
COMPARE_OUTCOMES = (*_SUMMARY_OUTCOMES, *LOSS_OUTCOMES, "estimated_cost", "currency")
"""The outcome columns of :func:`compare_jobs` (rows of :func:`compare_hyperparameters`),
after the hyperparameters, always there."""
COMPARE_BY_COLUMNS = columns(
    "jobs:int succeeded:int mean_tokens_per_s:float min_tokens_per_s:float"
    " max_tokens_per_s:float mean_final_valid_loss:float best_final_valid_loss:float"
    " estimated_cost:float currency"
)
"""The columns of :func:`compare_by` after the group's own (named as the hyperparameter)."""


def compare_jobs(
    store: StoreLike = None,
    *,
    only_different: bool = True,
    prices: PriceTable | None = None,
    **filters: Unpack[Filters],
) -> pd.DataFrame:
    """The selected jobs, one row per job (in the order of ``job_ids`` if given, else in job
    order): ``source``, ``job_id``, the hyperparameters, then ``COMPARE_OUTCOMES``.

    Hyperparameters: the 12 known ones, then every ``extra`` key (sorted), each an object
    column holding the value as the job gave it (a known one that did not fit its type
    shows as given: ``"auto"``; an object or array as canonical JSON; absent is NA). With
    ``only_different`` and two or more jobs, a hyperparameter with the same value in every
    job is left out. Outcomes, typed: from :func:`load_jobs` and :func:`throughput_summary`
    (``estimated_cost`` and ``currency`` priced by ``prices``, None for none), and the
    losses of the job's checkpoints (``final_*_loss``: at the last checkpoint that has it,
    ``best_*_loss``: the lowest; ``valid`` is the checkpoints' ``valid_loss``).
    """
    with selecting(store, filters) as (conn, conds, jobs):
        outcomes = job_outcomes(conn, conds, jobs, prices)
        hyper = hyperparameter_rows(conn, conds).reindex(outcomes.index)
    extras = [json_object(text) if pd.notna(text) else {} for text in hyper["extra"]]
    given: dict[str, list[Any]] = {}
    for name in HYPERPARAMETER_NAMES:
        given[name] = [
            plain(value) if pd.notna(value) else extra.get(name, pd.NA)
            for value, extra in zip(hyper[name], extras, strict=True)
        ]
    for key in sorted({k for e in extras for k in e} - set(HYPERPARAMETER_NAMES)):
        given[key] = [extra.get(key, pd.NA) for extra in extras]
    if only_different and len(jobs) > 1:
        given = {k: vs for k, vs in given.items() if len({canonical_key(v) for v in vs}) > 1}
    shown = {
        k: pd.Series([canonical_json(v) if isinstance(v, dict | list) else v for v in vs],
                     dtype=object)
        for k, vs in given.items()
    }  # fmt: skip
    typed_outcomes = public(outcomes.reset_index(), {**SUMMARY_COLUMNS, **_LOSS_KINDS})
    frame = pd.concat(
        [
            typed_outcomes[["source", "job_id"]],
            pd.DataFrame(shown, index=typed_outcomes.index),
            typed_outcomes[list(COMPARE_OUTCOMES)],
        ],
        axis=1,
    )
    return frame


_LOSS_KINDS: dict[str, Kind] = dict.fromkeys(LOSS_OUTCOMES, "float")


def compare_hyperparameters(
    job_ids: Iterable[str],
    store: StoreLike = None,
    *,
    only_different: bool = True,
    source: str | None = None,
    prices: PriceTable | None = None,
) -> pd.DataFrame:
    """Jobs side by side: :func:`compare_jobs` of ``job_ids`` turned so that each job is a
    column (named by its id, in the order given) and each hyperparameter or outcome a row
    (index ``name``). Object columns, each cell a plain Python value or NA. Readable for a
    few jobs; :func:`compare_jobs` (one row per job) for many.
    """
    ids = list(dict.fromkeys([job_ids] if isinstance(job_ids, str) else job_ids))
    if not ids:
        raise UsageProblem("compare needs at least one job id")
    by_job = compare_jobs(
        store, only_different=only_different, prices=prices, job_ids=ids, source=source
    )
    turned = by_job.drop(columns="source").set_index("job_id").T.astype(object)
    frame = turned.map(plain)
    frame.index.name, frame.columns.name = "name", "job_id"
    return frame


def compare_by(
    store: StoreLike = None,
    by: str = "learning_rate",
    *,
    prices: PriceTable | None = None,
    **filters: Unpack[Filters],
) -> pd.DataFrame:
    """The selected jobs grouped by the value of the hyperparameter ``by`` (one of
    ``HYPERPARAMETER_NAMES``): a sweep at a glance, one row per value.

    The first column, named ``by``, holds the value as the jobs gave it (object: a number,
    a flag, or text such as ``"auto"``; NA for the jobs without it); rows are in the order
    of the values (flags, then numbers, then text, then NA). Then ``COMPARE_BY_COLUMNS``:
    ``jobs`` in the group and how many ``succeeded``; the mean, min and max over its jobs of
    each job's ``mean_tokens_per_s``; the mean and the lowest of their
    ``final_valid_loss``; ``estimated_cost``, the sum over its priced jobs in their
    ``currency``, NA when none is priced, or when they are priced in several currencies
    (never added together: ``currency`` then lists them, ``"EUR, USD"``). Statistics skip
    jobs without the figure; NA when none has it.

    Raises UsageProblem for an unknown ``by`` (naming the closest names).
    """
    if by not in HYPERPARAMETER_NAMES:
        raise UsageProblem(_unknown_hyperparameter(by))
    jobs = compare_jobs(store, only_different=False, prices=prices, **filters)
    keys = jobs[by].map(canonical_key) if len(jobs) else pd.Series(dtype=object)
    rows: list[dict[str, Any]] = []
    for _, group in jobs.groupby(keys, sort=False):
        speed = group["mean_tokens_per_s"].astype("Float64")
        loss = group["final_valid_loss"].astype("Float64")
        cost, currency = _group_cost(group)
        rows.append(
            {
                by: group[by].iloc[0],
                "jobs": len(group),
                "succeeded": int((group["status"] == "succeeded").sum()),
                "mean_tokens_per_s": speed.mean(),
                "min_tokens_per_s": speed.min(),
                "max_tokens_per_s": speed.max(),
                "mean_final_valid_loss": loss.mean(),
                "best_final_valid_loss": loss.min(),
                "estimated_cost": cost,
                "currency": currency,
            }
        )
    rows.sort(key=lambda row: _value_order(row[by]))
    stats = public(pd.DataFrame(rows, columns=[by, *COMPARE_BY_COLUMNS]), COMPARE_BY_COLUMNS)
    values = pd.Series([row[by] for row in rows], dtype=object, name=by)
    return pd.concat([values, stats], axis=1)


def _group_cost(group: pd.DataFrame) -> tuple[Any, Any]:
    """The summed estimate of a group's priced jobs and its currency (see compare_by)."""
    priced = group[group["estimated_cost"].notna()]
    currencies = sorted(set(priced["currency"].dropna()))
    if not currencies:
        return pd.NA, pd.NA
    if len(currencies) > 1:
        return pd.NA, ", ".join(currencies)
    return float(priced["estimated_cost"].sum()), currencies[0]


def _value_order(value: Any) -> tuple[int, Any]:
    if value is pd.NA or value is None:
        return (3, "")
    if isinstance(value, bool):
        return (0, int(value))
    if isinstance(value, int | float):
        return (1, float(value))
    return (2, str(value))


def _unknown_hyperparameter(name: str) -> str:
    close = difflib.get_close_matches(name, HYPERPARAMETER_NAMES, n=2)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    return (
        f"unknown hyperparameter {name!r} to compare by ({hint}known: "
        f"{', '.join(HYPERPARAMETER_NAMES)})"
    )
