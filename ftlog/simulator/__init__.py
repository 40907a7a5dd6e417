"""A simulated OpenAI-compatible fine-tuning API, served over HTTP on loopback.

Used by end-to-end tests, the demo and benchmarks. A job's state at simulated time ``t`` is a
pure function of its :class:`JobSpec` and ``t``; the clock is injectable (:class:`ManualClock`).

Endpoints (all GET, JSON):

* ``/v1/fine_tuning/jobs?limit=&after=`` - visible jobs newest first (``created_at``, then ``id``,
  both descending); ``after`` is the id of the last job of the previous page. ``ai_project_id``
  (Nebius) is accepted and ignored.
* ``/v1/fine_tuning/jobs/{job_id}`` - one job in Nebius shape (OpenAI's for ``flavor="openai"``:
  no step counts, ``trained_tokens`` null until the job ends; progress is in the metrics
  events, ``data.step`` and ``data.total_steps``).
* ``/v1/fine_tuning/jobs/{job_id}/events`` and ``.../checkpoints`` - newest first, as OpenAI lists
  them: ``after`` is the id of the last item of the previous page and returns the next *older*
  items.
* ``/_sim/stats`` - request counters; needs no token and is never faulted.
* ``POST /_sim/touch?n=N`` - change the ``N`` newest jobs (see ``SimulatedAPI.touch``), so that
  a benchmark in another process can make some jobs differ; answered to loopback clients only.

``limit`` defaults to 20 and may be at most 100. Faults: see :func:`parse_faults`.

Pieces: ``jobs`` (what a job is at time t), ``faults``, ``api`` (answers, transport-free),
``server`` (the HTTP socket).
"""

from ftlog.simulator.api import (
    Clock,
    ManualClock,
    Response,
    ScaledClock,
    SimulatedAPI,
    Stats,
)
from ftlog.simulator.faults import FAULT_KINDS, FaultRule, parse_faults, pick_fault
from ftlog.simulator.jobs import (
    Flavor,
    Hyperparameters,
    JobSpec,
    Outcome,
    job_checkpoints,
    job_events,
    make_jobs,
    render_job,
    step_metrics,
)
from ftlog.simulator.server import serve, serve_in_thread

__all__ = [
    "FAULT_KINDS",
    "Clock",
    "FaultRule",
    "Flavor",
    "Hyperparameters",
    "JobSpec",
    "ManualClock",
    "Outcome",
    "Response",
    "ScaledClock",
    "SimulatedAPI",
    "Stats",
    "job_checkpoints",
    "job_events",
    "make_jobs",
    "parse_faults",
    "pick_fault",
    "render_job",
    "serve",
    "serve_in_thread",
    "step_metrics",
]
