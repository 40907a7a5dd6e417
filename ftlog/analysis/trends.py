"""How long jobs waited in queue and ran, per day or week and per model.

Providers publish no queue SLA; a history of polls is the one place that can show it. The
per-job figures are :func:`~ftlog.analysis.throughput_summary`'s ``queued_s`` and
``running_s``; this module only groups them.
"""

from __future__ import annotations

from typing import Literal, Unpack

import numpy as np
import pandas as pd

from ftlog.analysis._read import Filters, Kind, StoreLike, columns, public, reading
from ftlog.analysis.speed import summary

Period = Literal["day", "week"]
PERIODS: tuple[Period, ...] = ("day", "week")
TREND_COLUMNS = columns(
    "period model jobs:int median_queued_s:float p90_queued_s:float median_running_s:float"
    " p90_running_s:float"
)
"""The columns of :func:`trends` (``model`` only with ``by_model``)."""
P90 = 0.9


def trends(
    store: StoreLike = None,
    *,
    every: Period = "day",
    by_model: bool = True,
    **filters: Unpack[Filters],
) -> pd.DataFrame:
    """One row per period (and model, with ``by_model``) of the selected jobs' creation
    (``TREND_COLUMNS``).

    - ``period``: the UTC date (``YYYY-MM-DD`` text) of the day the jobs were *created*
      (the API's ``created_at``, the time ``since``/``until`` select on), or with
      ``every="week"`` of the Monday that starts its ISO week. NA for jobs without a
      creation time.
    - ``jobs``: how many jobs of the row there are.
    - ``median_*_s`` / ``p90_*_s``: the median and the 90th percentile (interpolated
      linearly between the two nearest jobs, numpy's default) of the jobs' ``queued_s`` and
      ``running_s`` (:func:`~ftlog.analysis.throughput_summary`), over the jobs that have
      one (a job never seen queued has no ``queued_s``); NA when none has. A job still
      queued or running counts with its time so far, a lower bound.

    Rows in period order, then by model (NA last).
    """
    if every not in PERIODS:
        raise ValueError(f"every must be one of {', '.join(PERIODS)}, not {every!r}")
    with reading(store, filters) as (conn, conds, jobs):
        timings = summary(conn, conds, jobs, None)
    day = timings["created_at"].dt.floor("D")
    if every == "week":
        day = day - pd.to_timedelta(day.dt.day_of_week, unit="D")
    rows = pd.DataFrame(
        {
            "period": day.dt.strftime("%Y-%m-%d").astype("string"),
            "model": timings["model"].astype("string"),
            "queued_s": timings["queued_s"].to_numpy(dtype="float64", na_value=np.nan),
            "running_s": timings["running_s"].to_numpy(dtype="float64", na_value=np.nan),
        }
    )
    keys = ["period", "model"] if by_model else ["period"]
    groups = rows.groupby(keys, dropna=False, sort=True)
    table = pd.DataFrame({"jobs": groups.size()})
    for name in ("queued_s", "running_s"):
        table[f"median_{name}"] = groups[name].median()
        table[f"p90_{name}"] = groups[name].quantile(P90)
    kinds: dict[str, Kind] = {k: v for k, v in TREND_COLUMNS.items() if by_model or k != "model"}
    return public(table.reset_index(), kinds)
