"""Helpers shared by the end-to-end tests: the simulated API on a real socket."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, func, select

from ftlog import store
from ftlog.client import FineTuningClient, RetryPolicy
from ftlog.collector import RunSummary, SnapshotPlan, snapshot
from ftlog.simulator import JobSpec, ManualClock, SimulatedAPI

TOKEN = "sk-test-7f3a9c0e-secret"
T0 = 1_767_225_600  # 2026-01-01T00:00:00Z


@dataclass
class Sim:
    api: SimulatedAPI
    clock: ManualClock
    base_url: str

    def client(self, **kwargs: Any) -> FineTuningClient:
        kwargs.setdefault("retry", RetryPolicy(base_delay=0.01, max_delay=0.05))
        return FineTuningClient(self.base_url, TOKEN, **kwargs)

    def requests(self) -> int:
        return int(self.api.stats_snapshot()["requests"])


def one_job(**kwargs: Any) -> JobSpec:
    return JobSpec(id=kwargs.pop("id", "ftjob-life"), created_at=T0, **kwargs)


def run(
    engine: Engine, sim: Sim, plan: SnapshotPlan | None = None, **client_kwargs: Any
) -> RunSummary:
    with sim.client(**client_kwargs) as client:
        source_id = store.ensure_source(engine, "sim", sim.base_url)
        return snapshot(engine, client, source_id, plan or SnapshotPlan())


def count(engine: Engine, model: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(model)).scalar_one())
