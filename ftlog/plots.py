"""Charts of the history (the ``plot`` extra: matplotlib).

Every chart is drawn from the frames of :mod:`ftlog.analysis` (the caller picks the jobs
with the usual filters), so a notebook can plot what it loaded:

>>> sel = {"model": "Qwen/*"}
>>> plot_loss(analysis.loss_curves(db, **sel), analysis.load_jobs(db, **sel), "loss.png",
...           hyperparameters=analysis.load_hyperparameters(db, **sel))

**Reading many jobs.** Each job keeps one look in every chart (:func:`job_looks`): a colour
and, from the eleventh job on, a second line style (throughput) or marker (loss), so up to
:data:`MAX_JOBS` jobs stay distinguishable. Its legend label is its id, the base model when
the jobs' models differ, and its main hyperparameters (``lr=1e-5 bs=8 lora``). Failed and
cancelled jobs end their curves with a marker and have hatched bars, all explained in a key
below the charts; legends sit outside the data. Numbers on axes are compact (``1.2M``).

Headless: figures are drawn with the Agg backend and written to a file; nothing is shown and
pyplot's global state is not used. Without matplotlib, :class:`FtlogError` says what to
install.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from ftlog.errors import FtlogError, UsageProblem
from ftlog.plot_looks import (
    COLOURS,
    MAX_JOBS,
    JobLook,
    Key,
    LineStyle,
    _looks,
    differing_hyperparameters,
    empty_hyperparameters,
    hyperparameter_labels,
    job_looks,
)

__all__ = [
    "COLOURS",
    "END_MARKERS",
    "HATCHES",
    "LOG_SPREAD",
    "MAX_JOBS",
    "UNFINISHED",
    "JobLook",
    "LossAxis",
    "compact",
    "compare_figure",
    "hyperparameter_labels",
    "job_looks",
    "loss_figure",
    "plot_compare",
    "plot_loss",
    "plot_throughput",
    "save",
    "throughput_figure",
]

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

LossAxis = Literal["step", "tokens", "both"]
END_MARKERS = {"failed": "X", "cancelled": "8"}
"""The marker that ends a failed or cancelled job's curves (an octagon: stopped)."""
HATCHES = {"failed": "xxx", "cancelled": "///"}
"""How a failed or cancelled job's bars are hatched."""
UNFINISHED = "still running"
LOG_SPREAD = 30.0
"""An axis turns logarithmic when the largest job's values exceed the smallest's this many times."""
LOSS_STYLES: dict[str, LineStyle] = {"train_loss": "-", "valid_loss": "--", "full_valid_loss": ":"}
"""How each metric of :func:`ftlog.analysis.loss_curves` is drawn (colour, marker: the job's)."""
_LOSS_NAMES = {
    "train_loss": "train loss",
    "valid_loss": "valid loss (a marker per evaluation)",
    "full_valid_loss": "full valid loss (a marker per evaluation)",
}
_TRAIN_MARKERS = 8
"""About this many markers on a train loss curve (one per point would blur into a line)."""
# --- the charts -------------------------------------------------------------------------------


def plot_throughput(
    intervals: pd.DataFrame,
    snapshots: pd.DataFrame,
    jobs: pd.DataFrame,
    path: str | Path,
    *,
    hyperparameters: pd.DataFrame | None = None,
    elapsed: bool = False,
) -> Path:
    """Write :func:`throughput_figure` to ``path`` (its suffix picks the format)."""
    figure = throughput_figure(
        intervals, snapshots, jobs, hyperparameters=hyperparameters, elapsed=elapsed
    )
    return save(figure, path)


def throughput_figure(
    intervals: pd.DataFrame,
    snapshots: pd.DataFrame,
    jobs: pd.DataFrame,
    *,
    hyperparameters: pd.DataFrame | None = None,
    elapsed: bool = False,
) -> Figure:
    """Two panels, one line per job of ``jobs``: trained tokens over time (from
    :func:`~ftlog.analysis.load_snapshots`), and tokens/s per interval (from
    :func:`~ftlog.analysis.throughput`). When no job has token counts but some have steps
    (OpenAI jobs, whose progress is in their metrics events), the panels show the steps
    gained since each was first seen and steps/s instead.

    With ``elapsed`` the time axis is the time since each job was first seen running (else
    first seen), in seconds, minutes or hours, so jobs that ran at different times line up.
    """
    _require_matplotlib()
    looks = job_looks(jobs, hyperparameters)
    figure = _figure(_width(looks), 7.5, rows=2, sharex=True)
    tokens_ax, rate_ax = figure.axes
    snaps_by_job = _by_job(snapshots)
    intervals_by_job = _by_job(intervals)
    starts = _running_starts(snapshots)
    scale, unit = _time_unit(_longest_seen(snapshots, starts)) if elapsed else (1.0, "")
    in_steps = _steps_only(intervals, snapshots)
    handles = []
    for look in looks:
        snaps = snaps_by_job.get(look.key, snapshots.iloc[:0]).sort_values("first_observed_at")
        rows = intervals_by_job.get(look.key, intervals.iloc[:0]).sort_values("start")
        start = starts.get(look.key)
        style: dict[str, Any] = {"color": look.colour, "linestyle": look.dash, "linewidth": 1.6}
        if in_steps:
            times = pd.concat([rows["start"].iloc[:1], rows["end"]])
            gained = rows["steps"].astype("float64").cumsum().to_numpy()
            progress = np.concatenate([[0.0], gained]) if len(gained) else gained
        else:
            times = snaps["first_observed_at"]
            progress = snaps["trained_tokens"].astype("float64").to_numpy()
        label = look.label + ("  (no progress recorded)" if np.isnan(progress).all() else "")
        x = _x(times, start, elapsed, scale)
        # One point alone is a dot (a line needs two).
        tokens_ax.plot(x, progress, marker="o" if len(x) == 1 else "", **style)
        _mark_end(tokens_ax, look, x, progress)
        if not rows.empty:
            x = _x(pd.concat([rows["start"], rows["end"].iloc[-1:]]), start, elapsed, scale)
            rates = rows["steps_per_s" if in_steps else "tokens_per_s"].astype("float64")
            y = np.append(rates.to_numpy(), rates.to_numpy()[-1:])
            rate_ax.step(x, y, where="post", **style)
            _mark_end(rate_ax, look, x, y)
        handles.append(_line(look.colour, look.dash, label))
    what = "steps" if in_steps else "tokens"
    tokens_ax.set_title("Steps trained since first seen" if in_steps else "Trained tokens")
    rate_ax.set_title("Training speed per interval between snapshots")
    for ax, quantity in ((tokens_ax, what), (rate_ax, f"{what} / s")):
        ax.grid(True, alpha=0.3)
        _number_axis(ax, "y", quantity)
        _say_if_empty(ax)
    if elapsed:
        rate_ax.set_xlabel(f"{unit} since the job was first seen running")
    else:
        _date_axis(rate_ax)
        _widen_if_instant(tokens_ax)
    _legends(figure, handles, _end_keys(figure))
    figure.suptitle("Fine-tuning throughput", fontweight="bold")
    return figure


def _steps_only(intervals: pd.DataFrame, snapshots: pd.DataFrame) -> bool:
    """Whether the jobs' progress is in steps only: no token counts anywhere, steps/s known."""
    tokens_known = (
        intervals["tokens_per_s"].notna().any() or snapshots["trained_tokens"].notna().any()
    )
    return not tokens_known and bool(intervals["steps_per_s"].notna().any())


def _widen_if_instant(ax: Axes) -> None:
    """A time axis over one instant (one poll) spans an hour around it, not matplotlib's
    default of years."""
    from matplotlib.dates import date2num

    times = [np.atleast_1d(line.get_xdata()) for line in ax.get_lines()]
    days = np.asarray(date2num(np.concatenate(times)) if times else [], dtype="float64")  # type: ignore[no-untyped-call]
    if days.size and days.min() == days.max():  # matplotlib dates are days
        ax.set_xlim(days[0] - 1 / 48, days[0] + 1 / 48)


def plot_compare(
    summary: pd.DataFrame,
    path: str | Path,
    *,
    hyperparameters: pd.DataFrame | None = None,
) -> Path:
    """Write :func:`compare_figure` to ``path`` (its suffix picks the format)."""
    return save(compare_figure(summary, hyperparameters=hyperparameters), path)


def compare_figure(summary: pd.DataFrame, *, hyperparameters: pd.DataFrame | None = None) -> Figure:
    """Bars per job of ``summary`` (:func:`~ftlog.analysis.throughput_summary`): mean
    tokens/s and time running, labelled by the base model when it differs and by the
    hyperparameters that differ. Failed and cancelled jobs' bars are hatched and say so."""
    _require_matplotlib()
    hyper = empty_hyperparameters() if hyperparameters is None else hyperparameters
    looks = _looks(summary, hyper, differing_hyperparameters(hyper))
    names = [f"{look.name}\n{look.details}".rstrip() for look in looks]
    rate = summary["mean_tokens_per_s"].astype("float64").to_numpy()
    seconds = summary["running_s"].astype("float64").to_numpy()
    scale, time_unit = _time_unit(np.nanmax(seconds, initial=0.0))
    notes = [_status_note(look.status) for look in looks]
    figure = _figure(12, 1.8 + 0.55 * max(len(looks), 2), columns=2, sharey=True)
    rate_ax, time_ax = figure.axes
    positions = np.arange(len(looks))
    panels = (
        (rate_ax, rate, [compact(v) for v in rate], "Mean training speed", "tokens / s"),
        (time_ax, seconds / scale, [_duration(v) for v in seconds], "Time running", time_unit),
    )
    for (ax, values, texts, title, unit), colour in zip(
        panels, ("#1f77b4", "#ff7f0e"), strict=True
    ):
        bars = ax.barh(positions, np.nan_to_num(values), color=colour, edgecolor="#333333")
        for bar, look in zip(bars, looks, strict=True):
            bar.set_hatch(HATCHES.get(look.status, ""))
            if look.status not in ("succeeded", *HATCHES):
                bar.set_alpha(0.45)
        shown = [f"{text}  {note}".rstrip() for text, note in zip(texts, notes, strict=True)]
        ax.bar_label(bars, labels=shown, padding=3, fontsize="small")
        ax.set_title(title)
        ax.grid(True, axis="x", alpha=0.3)
        ax.margins(x=0.4)
        # Durations stay linear: a short bar beside a long one is what there is to see.
        _number_axis(ax, "x", unit, peaks=values if ax is rate_ax else [])
    rate_ax.set_yticks(positions, names, fontsize="small")
    rate_ax.invert_yaxis()
    keys = [_patch(HATCHES[s], s) for s in HATCHES if any(look.status == s for look in looks)]
    if any(note == UNFINISHED for note in notes):
        keys.append(_patch("", f"{UNFINISHED} (so far)", alpha=0.45))
    _legends(figure, [], keys)
    figure.suptitle("Fine-tuning jobs compared", fontweight="bold")
    return figure


def plot_loss(
    curves: pd.DataFrame,
    jobs: pd.DataFrame,
    path: str | Path,
    *,
    hyperparameters: pd.DataFrame | None = None,
    x: LossAxis = "both",
) -> Path:
    """Write :func:`loss_figure` to ``path`` (its suffix picks the format)."""
    return save(loss_figure(curves, jobs, hyperparameters=hyperparameters, x=x), path)


def loss_figure(
    curves: pd.DataFrame,
    jobs: pd.DataFrame,
    *,
    hyperparameters: pd.DataFrame | None = None,
    x: LossAxis = "both",
) -> Figure:
    """Train (solid), validation (dashed) and full validation (dotted) loss of the jobs of
    ``jobs`` in one figure, from :func:`~ftlog.analysis.loss_curves`: against step, against
    trained tokens (estimated), or ``both`` side by side. Each job has its colour and marker.
    """
    _require_matplotlib()
    if x not in ("step", "tokens", "both"):
        raise UsageProblem(f"x must be step, tokens or both, not {x!r}")
    looks = job_looks(jobs, hyperparameters)
    columns = {"step": ["step"], "tokens": ["trained_tokens"]}.get(x, ["step", "trained_tokens"])
    figure = _figure(_width(looks, 6.0 * len(columns)), 6, columns=len(columns), sharey=True)
    by_job = _by_job(curves)
    handles = []
    drawn: set[str] = set()
    for look in looks:
        rows = by_job.get(look.key, curves.iloc[:0])
        label = look.label
        if rows.empty:
            label += "  (no loss recorded)"
        elif rows["trained_tokens"].isna().all() and "trained_tokens" in columns:
            label += "  (trained tokens unknown)"
        for ax, column in zip(figure.axes, columns, strict=True):
            for metric, style in LOSS_STYLES.items():
                points = rows[rows["metric"] == metric].dropna(subset=[column])
                if points.empty:
                    continue
                xs = points[column].astype("float64").to_numpy()
                ys = points["value"].astype("float64").to_numpy()
                train = metric == "train_loss"
                ax.plot(
                    xs,
                    ys,
                    linestyle=style,
                    color=look.colour,
                    marker=look.marker,
                    markevery=max(1, len(xs) // _TRAIN_MARKERS) if train else None,
                    markersize=4 if train else 5,
                    linewidth=1.6 if train else 1.3,
                )
                _mark_end(ax, look, xs, ys)
                drawn.add(metric)
        handles.append(_line(look.colour, "-", label, marker=look.marker))
    titles = {
        "step": ("Loss by step", "step"),
        "trained_tokens": ("Loss by trained tokens", "trained tokens, estimated"),
    }
    for ax, column in zip(figure.axes, columns, strict=True):
        title, xlabel = titles[column]
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        _number_axis(ax, "x", xlabel)
        _say_if_empty(ax)
    figure.axes[0].set_ylabel("loss")
    keys = [
        _line("#555555", style, _LOSS_NAMES[m], marker="" if m == "train_loss" else "o")
        for m, style in LOSS_STYLES.items()
        if m in drawn
    ]
    _legends(figure, handles, keys + _end_keys(figure))
    figure.suptitle("Fine-tuning loss", fontweight="bold")
    return figure


def save(figure: Figure, path: str | Path) -> Path:
    """Write ``figure`` to ``path``, its suffix (default png) picking the format."""
    target = Path(path)
    suffix = target.suffix.lower().lstrip(".")
    supported = figure.canvas.get_supported_filetypes()
    if suffix and suffix not in supported:
        kinds = ", ".join(sorted(supported))
        raise UsageProblem(f"cannot write a .{suffix} image; use one of: {kinds}")
    try:
        figure.savefig(target, dpi=120, format=suffix or "png")
    except OSError as err:
        raise UsageProblem(f"cannot write {target}: {err.strerror or err}") from None
    return target


# --- numbers and times ------------------------------------------------------------------------


def compact(value: Any) -> str:
    """A number in at most four characters and a unit: ``950``, ``12.5k``, ``1.2M``, ``3B``;
    ``n/a`` for a missing one."""
    if value is None or pd.isna(value):
        return "n/a"
    number = float(value)
    for size, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(number) >= size * 0.9995:
            return f"{_significant(number / size)}{unit}"
    return _significant(number)


def _significant(number: float) -> str:
    """Three significant digits at most, no trailing zeros, five characters at most below
    one: 1.25, 12.5, 125, 0.5, 0.062."""
    if number == 0:
        return "0"
    digits = min(3, max(0, 2 - int(np.floor(np.log10(abs(number))))))
    return f"{number:.{digits}f}".rstrip("0").rstrip(".") if digits else f"{number:.0f}"


def _duration(seconds: Any) -> str:
    """A bar label for a duration: ``1 h 05 min``, ``12 min 30 s``, ``45 s``."""
    if seconds is None or pd.isna(seconds):
        return "n/a"
    whole = round(float(seconds))
    if whole >= 3600:
        minutes = round(whole / 60)
        return f"{minutes // 60} h {minutes % 60:02d} min"
    if whole >= 600:
        return f"{round(whole / 60)} min"
    return f"{whole // 60} min {whole % 60:02d} s" if whole >= 60 else f"{whole} s"


def _time_unit(longest: Any) -> tuple[float, str]:
    """Seconds per unit, and the unit, for an axis whose longest duration is ``longest`` s."""
    if longest is None or pd.isna(longest) or longest >= 3 * 3600:
        return 3600.0, "hours"
    return (60.0, "minutes") if longest >= 180 else (1.0, "seconds")


def _running_starts(snapshots: pd.DataFrame) -> dict[Key, pd.Timestamp]:
    """Per job: when it was first seen running, else first seen."""
    keys = ["source", "job_id"]
    first_seen = snapshots.groupby(keys)["first_observed_at"].min()
    running = snapshots[snapshots["status"] == "running"]
    started = running.groupby(keys)["first_observed_at"].min().combine_first(first_seen)
    return {_as_key(index): t for index, t in started.items()}


def _longest_seen(snapshots: pd.DataFrame, starts: dict[Key, pd.Timestamp]) -> float:
    last = snapshots.groupby(["source", "job_id"])["first_observed_at"].max()
    spans = [(t - starts[_as_key(index)]).total_seconds() for index, t in last.items()]
    return max(spans, default=0.0)


def _x(times: pd.Series, start: Any, elapsed: bool, scale: float) -> Any:
    times = pd.to_datetime(times, utc=True)
    if elapsed:
        return ((times - pd.Timestamp(start)).dt.total_seconds() / scale).to_numpy()
    return times.dt.tz_localize(None).to_numpy()


# --- drawing ----------------------------------------------------------------------------------


def _require_matplotlib() -> None:
    """Select the headless backend, or say what to install."""
    try:
        import matplotlib
    except ImportError:
        raise FtlogError("plotting needs matplotlib: pip install 'ftlog[plot]'") from None
    matplotlib.use("Agg")


def _figure(
    width: float,
    height: float,
    rows: int = 1,
    columns: int = 1,
    *,
    sharex: bool = False,
    sharey: bool = False,
) -> Figure:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    figure.subplots(rows, columns, squeeze=False, sharex=sharex, sharey=sharey)
    return figure


def _width(looks: Sequence[JobLook], data: float = 8.0) -> float:
    """The figure's width: the data, and the legend of job labels beside it."""
    longest = max((len(look.label) for look in looks), default=0)
    return data + 1.0 + min(longest, 80) * 0.075


def _legends(figure: Figure, jobs: list[Any], keys: list[Any]) -> None:
    """The jobs' legend to the right of the charts, the key to symbols below them."""
    if jobs:
        figure.legend(
            handles=jobs, loc="outside right upper", fontsize="small", title="job", frameon=False
        )
    if keys:
        figure.legend(
            handles=keys, loc="outside lower center", ncols=min(len(keys), 4), fontsize="small"
        )


def _end_keys(figure: Figure) -> list[Any]:
    """Legend entries for the end markers the charts hold (markers drawn without a line)."""
    drawn = {
        line.get_marker()
        for ax in figure.axes
        for line in ax.lines
        if line.get_linestyle() == "None"
    }
    return [
        _line("#555555", "", f"{status}: where the job ended", marker=marker, size=9)
        for status, marker in END_MARKERS.items()
        if marker in drawn
    ]


def _mark_end(ax: Axes, look: JobLook, x: Any, y: Any) -> None:
    """A failed or cancelled job's marker at the last point of its curve."""
    marker = END_MARKERS.get(look.status)
    finite = ~np.isnan(np.asarray(y, dtype="float64"))
    if marker is None or not finite.any():
        return
    last = np.flatnonzero(finite)[-1]
    ax.plot(
        [x[last]],
        [y[last]],
        marker=marker,
        markersize=10,
        color=look.colour,
        markeredgecolor="black",
        linestyle="none",
        zorder=5,
    )


def _line(
    colour: str, style: LineStyle | Literal[""], label: str, *, marker: str = "", size: float = 5
) -> Any:
    from matplotlib.lines import Line2D

    return Line2D(
        [],
        [],
        color=colour,
        linestyle=style or "none",
        linewidth=1.6,
        marker=marker or None,
        markersize=size,
        markeredgecolor="black" if not style else colour,
        label=label,
    )


def _patch(hatch: str, label: str, alpha: float = 1.0) -> Any:
    from matplotlib.patches import Patch

    return Patch(facecolor="#bbbbbb", edgecolor="#333333", hatch=hatch, alpha=alpha, label=label)


def _status_note(status: str) -> str:
    if status in HATCHES:
        return status
    return "" if status == "succeeded" else UNFINISHED


def _number_axis(ax: Axes, which: Literal["x", "y"], label: str, peaks: Any = None) -> None:
    """Compact tick labels from zero; a log scale, said in the label, when the jobs' values
    (``peaks``, default: each line's largest) span more than :data:`LOG_SPREAD` times, so
    that a 15k tokens/s job still shows beside a 1.5M one."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    if peaks is None:
        data = [ln.get_xdata() if which == "x" else ln.get_ydata() for ln in ax.lines]
        values = [np.asarray(d, "float64") for d in data]
        peaks = [np.max(v, initial=0.0, where=~np.isnan(v)) for v in values]
    positive = np.asarray(peaks, "float64")
    positive = positive[positive > 0]
    axis = ax.xaxis if which == "x" else ax.yaxis
    if len(positive) > 1 and positive.max() > LOG_SPREAD * positive.min():
        (ax.set_xscale if which == "x" else ax.set_yscale)("log")
        axis.set_minor_formatter(NullFormatter())
        label += " (log scale)"
    else:
        (ax.set_xlim if which == "x" else ax.set_ylim)(0, None)
    axis.set_major_formatter(FuncFormatter(lambda value, _pos: compact(value)))
    axis.set_label_text(label)


def _date_axis(ax: Axes) -> None:
    """Clock times that say what they are: ``21:50``, or ``21:49:55`` when seconds matter,
    never a bare ``55``; the date in the corner."""
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

    locator = AutoDateLocator()  # type: ignore[no-untyped-call]
    formats = ["%Y", "%b", "%d %b", "%H:%M", "%H:%M", "%H:%M:%S"]
    zero = ["", "%Y", "%b", "%d %b", "%H:%M", "%H:%M:%S"]
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(
        ConciseDateFormatter(locator, formats=formats, zero_formats=zero)  # type: ignore[no-untyped-call]
    )
    ax.set_xlabel("time (UTC)")


def _say_if_empty(ax: Axes) -> None:
    if not ax.lines or all(
        np.isnan(np.asarray(line.get_ydata(), "float64")).all() for line in ax.lines
    ):
        ax.text(0.5, 0.5, "nothing recorded yet", ha="center", va="center", transform=ax.transAxes)


def _by_job(frame: pd.DataFrame) -> dict[Key, pd.DataFrame]:
    groups = frame.groupby(["source", "job_id"], sort=False)
    return {_as_key(index): rows for index, rows in groups}


def _as_key(index: Any) -> Key:
    """A ``(source, job_id)`` group key as strings."""
    source, job_id = index
    return str(source), str(job_id)
