"""Jobs side by side: their hyperparameters and what came of them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pandas as pd

from ftlog.analysis._read import (
    StoreLike,
    child,
    hyper_table,
    json_object,
    plain,
    public,
    reading,
    sort_key,
)
from ftlog.analysis.history import HYPERPARAMETER_COLUMNS, HYPERPARAMETER_NAMES
from ftlog.analysis.speed import SUMMARY_COLUMNS, summary
from ftlog.analysis.training import LOSS_OUTCOMES, loss_outcomes
from ftlog.errors import UsageProblem
from ftlog.parse import canonical_json
from ftlog.pricing import PriceTable

_SUMMARY_OUTCOMES = (
    "model", "status", "trained_tokens", "trained_steps", "queued_s", "running_s",
    "mean_tokens_per_s", "median_tokens_per_s", "peak_tokens_per_s", "tokens_per_step",
    "finish_estimate_error_s",
)  # fmt: skip
COMPARE_OUTCOMES = (*_SUMMARY_OUTCOMES, *LOSS_OUTCOMES, "estimated_cost", "currency")
"""The rows below the hyperparameters in :func:`compare_hyperparameters`, always shown."""


def compare_hyperparameters(
    job_ids: Iterable[str],
    store: StoreLike = None,
    *,
    only_different: bool = True,
    source: str | None = None,
    prices: PriceTable | None = None,
) -> pd.DataFrame:
    """Jobs side by side: one column per job id (in the order given), one row per name.

    Rows: the 12 known hyperparameters, then every ``extra`` key (sorted); a known one whose
    value did not fit its type shows the value as given (``"auto"``); absent is NA; an object
    or array value is shown as canonical JSON. Then the rows ``COMPARE_OUTCOMES``: from
    :func:`load_jobs` and :func:`throughput_summary` (``estimated_cost`` and ``currency``
    priced by ``prices``, None for none: see :mod:`ftlog.analysis.cost`); and
    the losses of the job's checkpoints: ``final_*_loss`` is the value at the last
    checkpoint that has it, ``best_*_loss`` the lowest (``valid`` is the checkpoints'
    ``valid_loss``), NA without checkpoints. With ``only_different`` and two or more jobs,
    hyperparameter rows with the same value in every job are dropped; outcome rows always
    stay. The frame has object columns (each row has its own type).

    Raises UsageProblem for job ids not in the store, or in several sources unless
    ``source`` picks one.
    """
    ids = list(dict.fromkeys([job_ids] if isinstance(job_ids, str) else job_ids))
    if not ids:
        raise UsageProblem("compare needs at least one job id")
    with reading(store, {"job_ids": ids, "source": source}) as (conn, conds, jobs):
        missing = [i for i in ids if i not in set(jobs["job_id"])]
        if missing:
            where = f" in source {source}" if source else ""
            raise UsageProblem(
                f"unknown job id{'s' * (len(missing) > 1)}{where}: {', '.join(missing)}"
            )
        twice = jobs[jobs["job_id"].duplicated(keep=False)]
        if len(twice):
            names = ", ".join(sorted(set(twice["source"])))
            raise UsageProblem(
                f"job id {twice['job_id'].iloc[0]} is in several sources ({names}); pass source"
            )
        hyper = child(conn, jobs, hyper_table, conds, HYPERPARAMETER_COLUMNS)
        outcomes = public(summary(conn, conds, jobs, prices), SUMMARY_COLUMNS)
        losses = loss_outcomes(conn, conds, jobs)  # by job_pk, in the order of jobs
    outcomes = outcomes.set_index("job_id").join(losses.set_axis(jobs["job_id"].to_numpy()))
    hyper = hyper.set_index("job_id")
    extras = {j: json_object(hyper.at[j, "extra"]) if j in hyper.index else {} for j in ids}
    rows: dict[str, list[Any]] = {}
    for name in HYPERPARAMETER_NAMES:
        typed = [hyper.at[j, name] if j in hyper.index else pd.NA for j in ids]
        rows[name] = [
            plain(t) if t is not pd.NA else extras[j].get(name, pd.NA)
            for t, j in zip(typed, ids, strict=True)
        ]
    for key in sorted({k for e in extras.values() for k in e} - set(HYPERPARAMETER_NAMES)):
        rows[key] = [extras[j].get(key, pd.NA) for j in ids]
    rows = {
        k: [canonical_json(v) if isinstance(v, dict | list) else v for v in vs]
        for k, vs in rows.items()
    }
    if only_different and len(ids) > 1:
        rows = {k: vs for k, vs in rows.items() if len({sort_key(v) for v in vs}) > 1}
    for name in COMPARE_OUTCOMES:
        rows[name] = [plain(outcomes.at[j, name]) for j in ids]
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=ids, dtype=object)
    frame.index.name, frame.columns.name = "name", "job_id"
    return frame
