"""The sync floor: a plain httpx script that fetches the pages ftlog fetches and writes nothing.

Run as a script (it imports no ftlog code):
``python floor_fetch.py BASE_URL [--details] [--concurrency N]``.
Pages through ``/fine_tuning/jobs`` 100 at a time; with ``--details`` it also pages through
every job's events, then every job's checkpoints, as ``ftlog snapshot`` does for jobs new to
the store, N jobs at a time (default 1) from threads sharing one client. Prints the number of
items fetched.
"""

from __future__ import annotations

import json
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx


def pages(client: httpx.Client, path: str) -> list[Any]:
    items: list[Any] = []
    params: dict[str, Any] = {"limit": 100}
    while True:
        body = json.loads(client.get(path, params=params).content)
        items.extend(body["data"])
        if not body["has_more"] or not body["data"]:
            return items
        params["after"] = body["data"][-1]["id"]


def main(argv: list[str]) -> None:
    base_url, details = argv[0], "--details" in argv
    concurrency = int(argv[argv.index("--concurrency") + 1]) if "--concurrency" in argv else 1
    headers = {"Authorization": "Bearer floor"}
    limits = httpx.Limits(max_connections=max(concurrency, 10))
    with httpx.Client(base_url=base_url, headers=headers, timeout=30.0, limits=limits) as client:
        jobs = pages(client, "/fine_tuning/jobs")
        fetched = len(jobs)
        if details:
            with ThreadPoolExecutor(concurrency) as pool:
                for kind in ("events", "checkpoints"):
                    paths = [f"/fine_tuning/jobs/{job['id']}/{kind}" for job in jobs]
                    fetched += sum(map(len, pool.map(lambda path: pages(client, path), paths)))
    print(fetched)


if __name__ == "__main__":
    main(sys.argv[1:])
