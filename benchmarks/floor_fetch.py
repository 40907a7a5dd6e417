"""The sync floor: a plain httpx script that fetches the pages ftlog fetches and writes nothing.

Run as a script (it imports no ftlog code): ``python floor_fetch.py BASE_URL [--details]``.
Pages through ``/fine_tuning/jobs`` 100 at a time; with ``--details`` it also pages through
every job's events and checkpoints, as ``ftlog snapshot`` does for jobs new to the store.
Prints the number of items fetched.
"""

from __future__ import annotations

import json
import sys
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
    headers = {"Authorization": "Bearer floor"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=30.0) as client:
        jobs = pages(client, "/fine_tuning/jobs")
        fetched = len(jobs)
        if details:
            for job in jobs:
                fetched += len(pages(client, f"/fine_tuning/jobs/{job['id']}/events"))
                fetched += len(pages(client, f"/fine_tuning/jobs/{job['id']}/checkpoints"))
    print(fetched)


if __name__ == "__main__":
    main(sys.argv[1:])
