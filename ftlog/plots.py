"""Charts of the history (the ``plot`` extra: matplotlib).

Headless: figures are drawn with the Agg backend and written to a file; nothing is shown and
pyplot's global state is not used. Without matplotlib, :class:`FtlogError` says what to
install.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd

from ftlog import analysis
from ftlog.errors import FtlogError, UsageProblem
from ftlog.export import compact_number

if TYPE_CHECKING:
    from sqlalchemy import Engine

SHORT_NAMES = {
    "learning_rate": "lr",
    "batch_size": "bs",
    "n_epochs": "ep",
    "warmup_ratio": "warmup",
    "weight_decay": "wd",
    "lora_r": "r",
    "lora_alpha": "alpha",
    "lora_dropout": "dropout",
    "max_grad_norm": "clip",
    "context_length": "ctx",
}
"""How hyperparameters are abbreviated in legends; ``lora`` and ``packing`` show as words."""
DEFAULT_LABEL_KEYS = ("learning_rate", "batch_size", "n_epochs", "lora")
"""What a legend shows of every job, beside the hyperparameters that differ between them."""
LABEL_ORDER = (*DEFAULT_LABEL_KEYS, *(k for k in SHORT_NAMES if k not in DEFAULT_LABEL_KEYS))
MAX_LABEL_KEYS = 5
LossAxis = Literal["step", "tokens", "both"]
LineStyle = Literal["-", "--", ":"]
LOSS_STYLES: dict[str, LineStyle] = {"train_loss": "-", "valid_loss": "--", "full_valid_loss": ":"}
"""How each metric of :func:`ftlog.analysis.loss_curves` is drawn; the colour is the job's."""
_LOSS_NAMES = {"train_loss": "train", "valid_loss": "valid", "full_valid_loss": "full valid"}
_MARKERS_UP_TO = 40
_NOT_HYPERPARAMETERS = frozenset({"source", "job_id", "job_pk", "extra"})


def plot_throughput(
    job_ids: Sequence[str],
    path: str | Path,
    store: str | Engine | None = None,
    *,
    source: str | None = None,
    elapsed: bool = False,
) -> Path:
    """Two panels, one line per job: trained tokens over time, and tokens/s per interval.

    With ``elapsed`` the time axis is hours since each job was first seen running (else
    first seen), so jobs that ran at different times line up. Returns the path written.
    """
    _require_matplotlib()
    ids = _known(job_ids, store, source)
    snapshots = analysis.load_snapshots(store, job_ids=ids, source=source)
    intervals = analysis.throughput(store, job_ids=ids, source=source)
    hyper = analysis.load_hyperparameters(store, job_ids=ids, source=source)
    keys = [*DEFAULT_LABEL_KEYS, *differing_hyperparameters(hyper)]
    labels = hyperparameter_labels(hyper, keys=keys)
    figure = _figure(figsize=(11, 7.5), rows=2, sharex=True)
    tokens_ax, rate_ax = figure.axes
    first_seen = snapshots.groupby("job_id")["first_observed_at"].min()
    running = snapshots[snapshots["status"] == "running"]
    starts = running.groupby("job_id")["first_observed_at"].min().combine_first(first_seen)
    for job_id in ids:
        snaps = snapshots[snapshots["job_id"] == job_id].sort_values("first_observed_at")
        tokens = snaps["trained_tokens"].astype("float64")
        label = f"{job_id}  {labels.get(job_id, '')}".rstrip()
        if tokens.isna().all():
            label += "  (no progress recorded)"
        start = starts.get(job_id)
        x = _x(snaps["first_observed_at"], start, elapsed)
        (line,) = tokens_ax.plot(x, tokens, marker="o", markersize=3, label=label)
        rows = intervals[intervals["job_id"] == job_id].sort_values("start")
        if not rows.empty:
            x = _x(pd.concat([rows["start"], rows["end"].iloc[-1:]]), start, elapsed)
            rates = rows["tokens_per_s"].astype("float64")
            y = pd.concat([rates, rates.iloc[-1:]])
            rate_ax.step(x, y, where="post", color=line.get_color(), label=label)
    tokens_ax.set_title("Trained tokens")
    tokens_ax.set_ylabel("tokens")
    rate_ax.set_title("Training speed per interval between snapshots")
    rate_ax.set_ylabel("tokens / s")
    for ax in figure.axes:
        ax.grid(True, alpha=0.3)
        ax.yaxis.set_major_formatter(_thousands())
        ax.set_ylim(bottom=0)
        if not ax.lines or all(pd.isna(line.get_ydata()).all() for line in ax.lines):
            ax.text(
                0.5,
                0.5,
                "nothing recorded yet",
                ha="center",
                va="center",
                transform=ax.transAxes,
                color="grey",
            )
    tokens_ax.legend(loc="upper left", fontsize="small")
    if elapsed:
        rate_ax.set_xlabel("hours since the job was first seen running")
    else:
        _date_axis(rate_ax)
    figure.suptitle("Fine-tuning throughput", fontweight="bold")
    return _save(figure, path)


def plot_compare(
    job_ids: Sequence[str],
    path: str | Path,
    store: str | Engine | None = None,
    *,
    source: str | None = None,
) -> Path:
    """Bars per job: mean tokens/s and time running, labeled by the hyperparameters that differ."""
    _require_matplotlib()
    ids = _known(job_ids, store, source)
    summary = analysis.throughput_summary(store, job_ids=ids, source=source).set_index("job_id")
    hyper = analysis.load_hyperparameters(store, job_ids=ids, source=source)
    labels = hyperparameter_labels(hyper, keys=differing_hyperparameters(hyper) or None)
    names = [f"{job_id}\n{labels.get(job_id, '')}".rstrip() for job_id in ids]
    summary = summary.reindex(ids)
    rate = summary["mean_tokens_per_s"].astype("float64")
    seconds = summary["running_s"].astype("float64")
    scale, time_unit = _time_unit(seconds.max())
    figure = _figure(figsize=(11, 1.5 + 0.8 * len(ids)), columns=2, sharey=True)
    rate_ax, time_ax = figure.axes
    positions = list(range(len(ids)))
    for ax, values, texts, title, unit, color in (
        (rate_ax, rate, [_short(v) for v in rate], "Mean training speed", "tokens / s", "tab:blue"),
        (
            time_ax,
            seconds / scale,
            [_hours(v) for v in seconds],
            "Time running",
            time_unit,
            "tab:orange",
        ),
    ):
        bars = ax.barh(positions, values.fillna(0), color=color)
        ax.bar_label(bars, labels=texts, padding=3, fontsize="small")
        ax.set_title(title)
        ax.set_xlabel(unit)
        ax.grid(True, axis="x", alpha=0.3)
        ax.xaxis.set_major_formatter(_thousands())
        ax.margins(x=0.15)
    rate_ax.set_yticks(positions, names, fontsize="small")
    rate_ax.invert_yaxis()
    figure.suptitle("Fine-tuning jobs compared", fontweight="bold")
    return _save(figure, path)


def plot_loss(
    job_ids: Sequence[str],
    path: str | Path,
    store: str | Engine | None = None,
    *,
    source: str | None = None,
    x: LossAxis = "both",
) -> Path:
    """Train (solid), validation (dashed) and full validation (dotted) loss of several jobs
    in one figure, one colour per job: against step, against trained tokens (estimated, see
    :func:`ftlog.analysis.loss_curves`), or ``both`` side by side. Returns the path written.
    """
    _require_matplotlib()
    if x not in ("step", "tokens", "both"):
        raise UsageProblem(f"x must be step, tokens or both, not {x!r}")
    ids = _known(job_ids, store, source)
    curves = analysis.loss_curves(store, job_ids=ids, source=source)
    hyper = analysis.load_hyperparameters(store, job_ids=ids, source=source)
    labels = hyperparameter_labels(
        hyper, keys=[*DEFAULT_LABEL_KEYS, *differing_hyperparameters(hyper)]
    )
    axes_x = (
        ["step", "trained_tokens"] if x == "both" else ["step" if x == "step" else "trained_tokens"]
    )
    figure = _figure(figsize=(6.5 * len(axes_x) + 1, 6), columns=len(axes_x), sharey=True)
    colours = _colours()
    job_lines: list[Any] = []
    drawn: set[str] = set()
    for index, job_id in enumerate(ids):
        colour = colours[index % len(colours)]
        rows = curves[curves["job_id"] == job_id]
        label = f"{job_id}  {labels.get(job_id, '')}".rstrip()
        if rows.empty:
            label += "  (no loss recorded)"
        elif rows["trained_tokens"].isna().all() and "trained_tokens" in axes_x:
            label += "  (trained tokens unknown)"
        for ax, column in zip(figure.axes, axes_x, strict=True):
            for metric, style in LOSS_STYLES.items():
                points = rows[rows["metric"] == metric].dropna(subset=[column])
                if points.empty:
                    continue
                ax.plot(
                    points[column].astype("float64"),
                    points["value"].astype("float64"),
                    linestyle=style,
                    color=colour,
                    marker="o" if len(points) <= _MARKERS_UP_TO else None,
                    markersize=3.5 if metric == "train_loss" else 4.5,
                    linewidth=1.8 if metric == "train_loss" else 1.5,
                )
                drawn.add(metric)
        job_lines.append(_legend_line(colour, "-", label))
    titles = {
        "step": ("Loss by step", "step"),
        "trained_tokens": ("Loss by trained tokens", "trained tokens (estimated)"),
    }
    for ax, column in zip(figure.axes, axes_x, strict=True):
        title, xlabel = titles[column]
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.grid(True, alpha=0.3)
        ax.set_xlim(left=0)
        ax.xaxis.set_major_formatter(_compact() if column == "trained_tokens" else _thousands())
        if not ax.lines:
            ax.text(
                0.5,
                0.5,
                "nothing recorded yet",
                ha="center",
                va="center",
                transform=ax.transAxes,
                color="grey",
            )
    figure.axes[0].set_ylabel("loss")
    styles = [
        _legend_line("black", LOSS_STYLES[m], _LOSS_NAMES[m]) for m in LOSS_STYLES if m in drawn
    ]
    figure.axes[0].add_artist(
        figure.axes[0].legend(handles=job_lines, loc="upper right", fontsize="small", title="job")
    )
    if styles:
        figure.axes[-1].legend(handles=styles, loc="center right", fontsize="small", title="loss")
    figure.suptitle("Fine-tuning loss", fontweight="bold")
    return _save(figure, path)


def differing_hyperparameters(hyper: pd.DataFrame) -> list[str]:
    """The hyperparameter columns whose values are not all the same (nulls count as a value)."""
    columns = [c for c in hyper.columns if c not in _NOT_HYPERPARAMETERS]
    return [c for c in columns if hyper[c].astype(str).nunique(dropna=False) > 1]


def hyperparameter_labels(hyper: pd.DataFrame, keys: Sequence[str] | None = None) -> dict[str, str]:
    """A short label per job id, like ``lr=1e-5 bs=8 lora``; ``keys`` picks what to show
    (default: learning rate, batch size, epochs, LoRA), at most four."""
    wanted = set(keys or DEFAULT_LABEL_KEYS)
    ordered = [k for k in LABEL_ORDER if k in wanted] + sorted(wanted - set(LABEL_ORDER))
    chosen = [k for k in ordered if k in hyper.columns][:MAX_LABEL_KEYS]
    labels: dict[str, str] = {}
    for row in hyper.to_dict(orient="records"):
        # LoRA's rank, alpha and dropout mean nothing for a full fine-tune.
        shown = [k for k in chosen if not (k.startswith("lora_") and row.get("lora") is False)]
        parts = [_label_part(key, row.get(key)) for key in shown]
        labels[str(row["job_id"])] = " ".join(part for part in parts if part)
    return labels


def _label_part(key: str, value: Any) -> str:
    if value is None or (not isinstance(value, (str, bool)) and pd.isna(value)):
        return ""
    if key in ("lora", "packing"):
        return key if value else f"no-{key}"
    text = compact_number(value) if isinstance(value, float) else str(value)
    return f"{SHORT_NAMES.get(key, key)}={text}"


def _known(job_ids: Sequence[str], store: str | Engine | None, source: str | None) -> list[str]:
    ids = list(dict.fromkeys(job_ids))
    if not ids:
        raise UsageProblem("name at least one JOB_ID to plot")
    jobs = analysis.load_jobs(store, job_ids=ids, source=source)
    missing = [job_id for job_id in ids if job_id not in set(jobs["job_id"])]
    if missing:
        where = f" in source {source}" if source else ""
        raise UsageProblem(f"unknown job id{'s' * (len(missing) > 1)}{where}: {', '.join(missing)}")
    twice = jobs[jobs["job_id"].duplicated(keep=False)]
    if len(twice):
        names = ", ".join(sorted(set(twice["source"])))
        raise UsageProblem(
            f"job {twice['job_id'].iloc[0]} is recorded under several sources ({names}); "
            "use --source"
        )
    return ids


def _x(times: pd.Series, start: Any, elapsed: bool) -> Any:
    times = pd.to_datetime(times, utc=True)
    if elapsed:
        return ((times - pd.Timestamp(start)).dt.total_seconds() / 3600).to_numpy()
    return times.dt.tz_localize(None).to_numpy()


def _time_unit(longest: Any) -> tuple[float, str]:
    """Seconds per unit, and the unit, for an axis whose longest duration is ``longest`` s."""
    if longest is None or pd.isna(longest) or longest >= 7200:
        return 3600.0, "hours"
    return (60.0, "minutes") if longest >= 120 else (1.0, "seconds")


def _hours(seconds: Any) -> str:
    """A bar label for a duration: ``h:mm h``, or ``m:ss min`` under an hour."""
    if seconds is None or pd.isna(seconds):
        return "n/a"
    if seconds < 3600:
        whole = round(float(seconds))
        return f"{whole // 60}:{whole % 60:02d} min"
    minutes = round(float(seconds) / 60)
    return f"{minutes // 60}:{minutes % 60:02d} h"


def _short(value: Any) -> str:
    if value is None or pd.isna(value):
        return "n/a"
    return f"{value:,.1f}" if abs(value) < 1000 else f"{value:,.0f}"


def _require_matplotlib() -> None:
    """Select the headless backend, or say what to install."""
    try:
        import matplotlib
    except ImportError:
        raise FtlogError("plotting needs matplotlib: pip install 'ftlog[plot]'") from None
    matplotlib.use("Agg")


def _figure(
    figsize: tuple[float, float],
    rows: int = 1,
    columns: int = 1,
    *,
    sharex: bool = False,
    sharey: bool = False,
) -> Any:
    from matplotlib.figure import Figure

    figure = Figure(figsize=figsize, layout="constrained")
    figure.subplots(rows, columns, squeeze=False, sharex=sharex, sharey=sharey)
    return figure


def _colours() -> list[str]:
    from matplotlib import rcParams

    return list(rcParams["axes.prop_cycle"].by_key()["color"])


def _legend_line(colour: str, style: LineStyle, label: str) -> Any:
    from matplotlib.lines import Line2D

    return Line2D([], [], color=colour, linestyle=style, linewidth=1.8, label=label)


def _compact() -> Any:
    """Tick labels like 500, 20k, 1.5M, 2B."""
    from matplotlib.ticker import FuncFormatter

    def text(value: float, _pos: Any) -> str:
        for size, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
            if abs(value) >= size:
                return f"{value / size:g}{unit}"
        return f"{value:g}"

    return FuncFormatter(text)


def _thousands() -> Any:
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda value, _pos: f"{value:,.0f}" if abs(value) >= 10 else f"{value:g}")


def _date_axis(ax: Any) -> None:
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

    locator = AutoDateLocator()  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]
    ax.set_xlabel("time (UTC)")


def _save(figure: Any, path: str | Path) -> Path:
    target = Path(path)
    suffix = target.suffix.lower().lstrip(".")
    supported = figure.canvas.get_supported_filetypes()
    if suffix and suffix not in supported:
        kinds = ", ".join(sorted(supported))
        raise UsageProblem(f"cannot write a .{suffix} image; use one of: {kinds}")
    try:
        figure.savefig(target, dpi=150, format=suffix or "png")
    except OSError as err:
        raise UsageProblem(f"cannot write {target}: {err.strerror or err}") from None
    return target
