"""The peer: dlt's ``rest_api`` source with an scd2 merge into a new SQLite store, against the
simulated API. Run as a script (it imports no ftlog code):
``python dlt_peer.py BASE_URL SQLITE_PATH``. Prints the number of jobs in the store.

dlt pages ``/fine_tuning/jobs`` as ftlog does (100 a page, the ``after`` cursor from the last
item's id, until ``has_more`` is false) and keeps every version of every job (scd2), the
closest a general loader comes to ftlog's history. Needs the ``bench`` extra.
"""

from __future__ import annotations

import os
import sys
import tempfile

os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
os.environ.setdefault("RUNTIME__LOG_LEVEL", "ERROR")

import dlt  # after the environment that configures it
from dlt.sources.rest_api import rest_api_source


def main(base_url: str, path: str) -> None:
    source = rest_api_source(
        {
            "client": {
                "base_url": base_url.rstrip("/") + "/",
                "auth": {"type": "bearer", "token": "peer"},
                "paginator": {
                    "type": "cursor",
                    "cursor_path": "data[-1].id",
                    "cursor_param": "after",
                    "has_more_path": "has_more",
                },
            },
            "resource_defaults": {
                "primary_key": "id",
                "write_disposition": {"disposition": "merge", "strategy": "scd2"},
                "endpoint": {"params": {"limit": 100}},
            },
            "resources": [
                {"name": "jobs", "endpoint": {"path": "fine_tuning/jobs", "data_selector": "data"}}
            ],
        }
    )
    with tempfile.TemporaryDirectory() as pipelines:
        pipeline = dlt.pipeline(
            pipeline_name="ftlog_peer",
            pipelines_dir=pipelines,
            destination=dlt.destinations.sqlalchemy(f"sqlite:///{path}"),
            dataset_name="peer",
        )
        pipeline.run(source)
        with pipeline.sql_client() as client:
            rows = client.execute_sql("SELECT COUNT(*) FROM jobs")
            print(rows[0][0] if rows else 0)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
