"""A small hostile API for end-to-end tests: a real HTTP server on loopback whose answers
the test scripts path by path, and which records every path it was asked for."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from sqlalchemy import Engine

from ftlog import store
from ftlog.backoff import RetryPolicy
from ftlog.client import FineTuningClient
from ftlog.collector import RunSummary, SnapshotPlan, snapshot
from tests.helpers import TOKEN

LIST = "/fine_tuning/jobs"
JOBS_ONLY = SnapshotPlan(details=(), concurrency=1)
"""A run that records the job list only (no events or checkpoints), one request at a time."""

Answer = tuple[int, Any] | tuple[int, Any, dict[str, str]]
"""(status, JSON body) or (status, JSON body, headers); a body of bytes is sent as is."""
Route = Callable[[str, dict[str, str]], Answer]
"""Given the path (after /v1) and the query, the answer."""


@dataclass
class HostileAPI:
    routes: dict[str, Route] = field(default_factory=dict)
    """By path after ``/v1``; ``*`` answers any path no other route matches."""
    requests: list[str] = field(default_factory=list)
    """Every request's raw path and query, as received."""
    delays: dict[str, float] = field(default_factory=dict)
    """Seconds to wait before answering, by path."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, raw: str) -> Answer:
        with self.lock:
            self.requests.append(raw)
        url = urlsplit(raw)
        path = url.path.removeprefix("/v1")
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        time.sleep(self.delays.get(path, 0.0))
        route = self.routes.get(path) or self.routes.get("*")
        if route is None:
            return 404, {"error": {"message": f"no route {path}"}}
        return route(path, query)

    def paths(self) -> list[str]:
        with self.lock:
            return [urlsplit(r).path for r in self.requests]


def page(items: list[Any], has_more: bool) -> Answer:
    return 200, {"object": "list", "data": items, "has_more": has_more}


def job(
    job_id: str, status: str = "succeeded", created_at: int = 1_767_225_600, **extra: Any
) -> dict[str, Any]:
    return {
        "id": job_id,
        "object": "fine_tuning.job",
        "status": status,
        "created_at": created_at,
        **extra,
    }


@contextmanager
def serve(api: HostileAPI) -> Iterator[str]:
    """Serve ``api`` on a free loopback port; yields the base URL (``…/v1``)."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def do_GET(self) -> None:
            status, body, *rest = api.answer(self.path)
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (rest[0] if rest else {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def run(engine: Engine, base_url: str, plan: SnapshotPlan = JOBS_ONLY) -> RunSummary:
    """One ``snapshot`` against ``base_url`` (source "hostile"), with quick retries."""
    retry = RetryPolicy(max_attempts=2, base_delay=0.01, max_delay=0.02)
    with FineTuningClient(base_url, TOKEN, retry=retry) as client:
        source_id = store.ensure_source(engine, "hostile", base_url)
        return snapshot(engine, client, source_id, plan)
