"""The demo's text: the tables, what they show, and what to try next."""

from __future__ import annotations

import math
import os
import shlex
import shutil
import sys
from pathlib import Path

import pandas as pd

from ftlog import export
from ftlog.demo.run import DB_NAME, DemoResult, display_path, learning_rate_text
from ftlog.plot_looks import short_model

_SUMMARY_COLUMNS = (
    "job_id", "status", "trained_tokens", "queued_s", "running_s",
    "mean_tokens_per_s", "peak_tokens_per_s",
)  # fmt: skip
_COMPARED = {
    "learning_rate": "lr",
    "batch_size": "bs",
    "n_epochs": "ep",
    "lora": "lora",
    "context_length": "ctx",
}
"""The hyperparameters the comparison table shows (when they differ), and their headings."""
_FILE_NOTES = {
    DB_NAME: "the SQLite store: every snapshot, status change, event and checkpoint",
    "jobs.csv": "one row per job, its latest fields",
    "hyperparameters.csv": "one row per job, one column per hyperparameter",
    "snapshots.csv": "each distinct observed state of each job",
    "status-history.csv": "each status change, with when ftlog saw it",
    "throughput.csv": "tokens/s between consecutive snapshots",
    "throughput-summary.csv": "one row per job: speed, time queued and running",
    "runs.csv": "one row per job: model, status, hyperparameters, speed, losses",
    "comparison.csv": "one row per job: every hyperparameter and outcome",
    "trends.csv": "per day and model: median and p90 of time queued and running",
    "events.csv": "each event the API reported for each job",
    "checkpoints.csv": "each checkpoint, with its metrics",
    "loss-curves.csv": "train and validation loss per job and step",
    "throughput.png": "trained tokens and tokens/s over time, one line per job",
    "compare.png": "mean tokens/s and time running, per job",
    "loss.png": "loss curves, against step and trained tokens",
}


def render_report(result: DemoResult) -> str:
    """The throughput summary and the hyperparameter comparison as terminal tables."""
    if result.summary is None or result.comparison is None or result.job_table is None:
        return "(nothing recorded)"
    compared = _comparison_view(result.comparison)
    sections = [
        "Throughput, as ftlog measured it between snapshots, in simulated time "
        f"(a simulated minute took {60 / result.speed:.2g} s)",
        "",
        export.format_table(result.summary[list(_SUMMARY_COLUMNS)]),
        "",
        "Hyperparameters that differ, and what came of them",
        "",
        export.format_table(compared),
    ]
    notes = _story(result)
    if notes:
        sections += ["", *notes]
    return "\n".join(sections)


def _comparison_view(comparison: pd.DataFrame) -> pd.DataFrame:
    """One row per job: the differing hyperparameters (short headings), status and speed."""
    by_job = comparison.T.infer_objects()
    hyper = [name for name in _COMPARED if name in by_job.columns]
    outcomes = [n for n in ("status", "mean_tokens_per_s", "final_valid_loss") if n in by_job]
    view = by_job[["model", *hyper, *outcomes]].copy()
    view["model"] = view["model"].map(short_model)
    if "final_valid_loss" in view.columns:
        view["final_valid_loss"] = [
            f"{v:.3f}" if isinstance(v, float) and math.isfinite(v) else None
            for v in view["final_valid_loss"]
        ]
    if "learning_rate" in view.columns:
        view["learning_rate"] = [
            learning_rate_text(v) if isinstance(v, float) else v for v in view["learning_rate"]
        ]
    if "lora" in view.columns and "lora_r" in by_job.columns:
        ranks = by_job["lora_r"].astype(object)
        view["lora"] = [
            f"r={rank}" if on is True else "no"
            for on, rank in zip(view["lora"], ranks, strict=True)
        ]
    view.index.name = "job_id"
    return view.rename(columns=_COMPARED)


def _story(result: DemoResult) -> list[str]:
    """What the tables show, from what was measured of particular demo jobs."""
    if result.summary is None or result.job_table is None or result.comparison is None:
        return []
    ids = {job.suffix: job.id for job in result.jobs}
    by_job = result.comparison.T
    speeds = pd.to_numeric(by_job["mean_tokens_per_s"], errors="coerce")
    losses = pd.to_numeric(by_job.get("final_valid_loss", pd.Series()), errors="coerce")

    def measured(values: pd.Series, suffix: str) -> float:
        value = values.get(ids[suffix])
        return math.nan if value is None or pd.isna(value) else float(value)

    def faster(a: str, b: str, text: str) -> str | None:
        fast, slow = measured(speeds, a), measured(speeds, b)
        if math.isnan(fast) or math.isnan(slow):
            return None
        return f"  - {text} ({fast:,.0f} vs {slow:,.0f} tokens/s, {fast / slow:.2f}x)"

    high, low = measured(losses, "lr-3e-5"), measured(losses, "baseline")
    big = measured(speeds, "qwen32b-lora")
    found = [
        faster("lr-3e-5", "baseline", "the learning rate leaves the speed alone: 3e-5 vs 1e-5"),
        None
        if math.isnan(high) or math.isnan(low)
        else f"  - but 3e-5 ends at a lower validation loss than 1e-5 ({high:.3f} vs {low:.3f})",
        faster("lora-r16", "baseline", "LoRA r=16 trains faster than a full fine-tune"),
        faster("lora-bs32", "lora-r16", "a batch of 32 beats a batch of 16"),
        None
        if math.isnan(big)
        else f"  - the 32B model is the slowest by far ({big:,.0f} tokens/s, with LoRA)",
    ]
    lines = [line for line in found if line]
    jobs = result.job_table.set_index("job_id")
    labels = {job.id: job.label for job in result.jobs}
    for job_id, row in jobs[jobs["status"] == "failed"].iterrows():
        code = row["error_code"] if pd.notna(row["error_code"]) else "no error code"
        lines.append(f"  - {job_id} ({labels.get(str(job_id), '')}) failed: {code}")
    for job_id, row in jobs[jobs["status"] == "cancelled"].iterrows():
        done, total = row["trained_steps"], row["total_steps"]
        part = f" at step {done} of {total}" if pd.notna(done) and pd.notna(total) else ""
        lines.append(f"  - {job_id} ({labels.get(str(job_id), '')}) was cancelled{part}")
    return ["What the tables show", *lines] if lines else []


def next_steps(result: DemoResult) -> str:
    """The folder, its files, and commands to try against the demo store."""
    lines = [f"Wrote {display_path(result.output)}{os.sep}"]
    names = [DB_NAME, *(path.name for path in result.files)]
    width = max(len(name) for name in names)
    lines += [f"  {name.ljust(width)}  {_FILE_NOTES.get(name, '')}".rstrip() for name in names]
    if result.plot_note:
        lines.append(f"  ({result.plot_note})")
    db = shlex.quote(display_path(result.db_path))
    by_suffix = {job.suffix: job.id for job in result.jobs}
    failed = next((job.id for job in result.jobs if job.outcome == "failed"), result.jobs[0].id)
    compared = " ".join(by_suffix[s] for s in ("baseline", "lora-r16", "lora-bs32"))
    ftlog = _ftlog_command()
    lines += [
        "",
        "What next",
        f"  {ftlog} jobs --db {db}",
        f"  {ftlog} show {failed} --db {db}",
        f"  {ftlog} compare {compared} --db {db}",
    ]
    notebook = Path(__file__).resolve().parent.parent / "notebooks" / "ftlog-tour.ipynb"
    if notebook.exists():
        store = shlex.quote(str(result.db_path.resolve()))
        lines.append(
            f"  FTLOG_DATABASE_URL={store} jupyter lab {shlex.quote(display_path(notebook))}"
            "   (pip install jupyterlab)"
        )
    return "\n".join(lines)


def _ftlog_command() -> str:
    """``ftlog`` when it is on the PATH, else the script beside this Python (``make demo``
    runs it from the project's virtualenv, which the shell may not have activated)."""
    script = Path(sys.executable).with_name("ftlog")
    if shutil.which("ftlog") or not script.exists():
        return "ftlog"
    return shlex.quote(display_path(script))
