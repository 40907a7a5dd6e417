"""How each job looks in every chart of :mod:`ftlog.plots`: its colour, line style and marker,
and its label (id, base model when the jobs' models differ, main hyperparameters)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

import pandas as pd

from ftlog.export import compact_number

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
LineStyle = Literal["-", "--", ":", "-."]
COLOURS = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
)  # fmt: skip
"""matplotlib's ``tab10``: the jobs' colours, in order."""
DASHES: tuple[LineStyle, ...] = ("-", "--", ":", "-.")
"""A job's line style in the throughput chart: the first ten jobs solid, the next ten dashed..."""
MARKERS = ("o", "^", "s", "D")
"""...and its marker in the loss chart (where the line style tells the metric)."""
MAX_JOBS = len(COLOURS) * len(DASHES)
"""How many jobs a chart tells apart (each has its own colour and style)."""
_NOT_HYPERPARAMETERS = frozenset({"source", "job_id", "job_pk", "extra"})
Key = tuple[str, str]


@dataclass(frozen=True)
class JobLook:
    """How one job appears in every chart."""

    key: Key
    """``(source, job_id)``, as the frames name it."""
    name: str
    """Its job id, or ``source/job_id`` when another source holds the same id."""
    details: str
    """The base model (when the jobs' models differ) and the main hyperparameters."""
    status: str
    colour: str
    dash: LineStyle
    marker: str

    @property
    def label(self) -> str:
        return f"{self.name}  {self.details}".rstrip()


def job_looks(jobs: pd.DataFrame, hyperparameters: pd.DataFrame | None = None) -> list[JobLook]:
    """One look per row of ``jobs`` (a frame with ``source``, ``job_id``, ``model`` and
    ``status``, such as :func:`~ftlog.analysis.load_jobs` or the throughput summary), in its
    order. Labels show the hyperparameters of :data:`DEFAULT_LABEL_KEYS` and those that
    differ between the jobs."""
    hyper = empty_hyperparameters() if hyperparameters is None else hyperparameters
    keys = [*DEFAULT_LABEL_KEYS, *differing_hyperparameters(hyper)]
    return _looks(jobs, hyper, keys)


def _looks(jobs: pd.DataFrame, hyper: pd.DataFrame, keys: Sequence[str]) -> list[JobLook]:
    labels = {(str(r["source"]), str(r["job_id"])): _row_label(r, keys) for r in records(hyper)}
    ids = jobs["job_id"].astype(str)
    repeated = set(ids[ids.duplicated()])
    models_differ = jobs["model"].astype(str).nunique() > 1
    looks = []
    for index, row in enumerate(records(jobs)):
        key = (str(row["source"]), str(row["job_id"]))
        name = f"{key[0]}/{key[1]}" if key[1] in repeated else key[1]
        model = short_model(str(row["model"])) if models_differ else ""
        details = "  ".join(part for part in (model, labels.get(key, "")) if part)
        style = index // len(COLOURS) % len(DASHES)
        looks.append(
            JobLook(
                key=key,
                name=name,
                details=details,
                status=str(row["status"]),
                colour=COLOURS[index % len(COLOURS)],
                dash=DASHES[style],
                marker=MARKERS[style],
            )
        )
    return looks


def short_model(model: str) -> str:
    """``meta-llama/Llama-3.1-8B-Instruct`` as ``Llama-3.1-8B``."""
    return model.rpartition("/")[2].removesuffix("-Instruct")


def differing_hyperparameters(hyper: pd.DataFrame) -> list[str]:
    """The hyperparameter columns whose values are not all the same (nulls count as a value)."""
    columns = [c for c in hyper.columns if c not in _NOT_HYPERPARAMETERS]
    return [c for c in columns if hyper[c].astype(str).nunique(dropna=False) > 1]


def hyperparameter_labels(hyper: pd.DataFrame, keys: Sequence[str] | None = None) -> dict[str, str]:
    """A short label per job id, like ``lr=1e-5 bs=8 lora``; ``keys`` picks what to show
    (default: learning rate, batch size, epochs, LoRA), at most :data:`MAX_LABEL_KEYS`."""
    return {str(row["job_id"]): _row_label(row, keys) for row in records(hyper)}


def _row_label(row: dict[str, Any], keys: Sequence[str] | None) -> str:
    wanted = set(keys or DEFAULT_LABEL_KEYS)
    ordered = [k for k in LABEL_ORDER if k in wanted] + sorted(wanted - set(LABEL_ORDER))
    chosen = [k for k in ordered if k in row][:MAX_LABEL_KEYS]
    # LoRA's rank, alpha and dropout mean nothing for a full fine-tune.
    shown = [k for k in chosen if not (k.startswith("lora_") and row.get("lora") is False)]
    return " ".join(part for part in (_label_part(k, row.get(k)) for k in shown) if part)


def _label_part(key: str, value: Any) -> str:
    if value is None or (not isinstance(value, (str, bool)) and pd.isna(value)):
        return ""
    if key in ("lora", "packing"):
        return key if value else f"no-{key}"
    text = compact_number(value) if isinstance(value, float) else str(value)
    return f"{SHORT_NAMES.get(key, key)}={text}"


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    records = frame.astype(object).where(frame.notna(), None).to_dict(orient="records")
    return cast("list[dict[str, Any]]", records)


def empty_hyperparameters() -> pd.DataFrame:
    return pd.DataFrame({"source": pd.Series(dtype=str), "job_id": pd.Series(dtype=str)})
