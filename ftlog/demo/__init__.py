"""``ftlog demo``: the whole product on a simulated API, in well under a minute.

:func:`run_demo` serves seven fine-tuning jobs from the built-in simulator on a free loopback
port, with time accelerated, and snapshots them with the real collector into a fresh SQLite
store until every job has finished. It then writes the CSV exports and the plots, and returns
a :class:`DemoResult`; :func:`render_report` and :func:`next_steps` turn that into text.

**The jobs tell a story.** Six fine-tune one model on the same training file with different
hyperparameters (learning rate, batch size, LoRA rank, epochs, context length); one of them,
a large batch of long contexts, runs out of memory, and another is cancelled halfway. A
seventh fine-tunes a larger model. They are created a few minutes apart and some wait in the
queue while others train.

**One clock.** The simulated API runs ``speed`` times faster than the wall clock (90 by
default: a simulated minute takes two thirds of a second), and ftlog stamps its observations
with the same simulated clock, so the store is consistent: the API's ``created_at`` and
``finished_at`` lie where ftlog saw the jobs appear and end, and the durations and speeds it
measures are those of the simulated hardware (an 8B model around 14,000 tokens/s, jobs of a
quarter of an hour). The simulated clock is set so that the last job ends about when the
demo sees it end: the stored times all lie in the past by then. When the snapshots fall
behind (a busy machine), simulated time waits for them (:class:`PacedClock`), so every status
change is still seen; the demo then takes longer, up to a limit.

**The output folder** is created if needed. A folder holding something else is refused; the
files of an earlier demo (recognized by the marker file ``.ftlog-demo``) are replaced, and
anything else in that folder is left alone.
"""

from ftlog.demo.report import next_steps, render_report
from ftlog.demo.run import DemoJob, DemoResult, demo_jobs, run_demo

__all__ = ["DemoJob", "DemoResult", "demo_jobs", "next_steps", "render_report", "run_demo"]
