"""``python -m benchmarks [--quick] [--only NAME] [--postgres-url URL]``: run the benchmarks
and print their figures as a Markdown table (progress goes to stderr).

The figures, the command and the machine are also written to ``benchmarks/results/latest.json``
and ``latest.md``; copy the table into BENCHMARKS.md when it changes.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from benchmarks import analysis, network, peer, polling, startup, sync
from benchmarks.harness import (
    RESULTS_DIR,
    Figure,
    Settings,
    format_table,
    log,
    machine_description,
)

BENCHMARKS: dict[str, Callable[[Settings], list[Figure]]] = {
    "sync": sync.run,
    "network": network.run,
    "peer": peer.run,
    "polling": polling.run,
    "analysis": analysis.run,
    "startup": startup.run,
}
POSTGRES_ENV = ("FTLOG_BENCH_POSTGRES_URL", "FTLOG_TEST_POSTGRES_URL")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--quick", action="store_const", const="quick", dest="size", help="small sizes, one repeat"
    )
    parser.add_argument("--size", choices=["tiny", "quick", "full"], help="default: full")
    parser.set_defaults(size="full")
    parser.add_argument(
        "--only", choices=sorted(BENCHMARKS), action="append", help="run just this (repeatable)"
    )
    parser.add_argument(
        "--postgres-url",
        default=next((os.environ[n] for n in POSTGRES_ENV if os.environ.get(n)), None),
        help="Postgres for the Postgres figures (a schema is created and dropped). "
        "Default: $FTLOG_BENCH_POSTGRES_URL, else $FTLOG_TEST_POSTGRES_URL; none skips them.",
    )
    parser.add_argument("--repeats", type=int, default=3, help="repeats per figure (median)")
    parser.add_argument(
        "--results",
        type=Path,
        default=RESULTS_DIR,
        help=f"folder for cached stores and the latest figures (default: {RESULTS_DIR.name}/)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    settings = Settings(
        size=args.size,
        postgres_url=args.postgres_url,
        repeats=args.repeats,
        results_dir=args.results,
    )
    if not settings.postgres_url:
        log(f"no Postgres URL (--postgres-url, ${POSTGRES_ENV[0]}): Postgres figures skipped")
    machine = machine_description(settings.postgres_url)
    started = time.monotonic()
    figures: list[Figure] = []
    for name in args.only or list(BENCHMARKS):
        log(f"== {name}")
        figures += BENCHMARKS[name](settings)
    elapsed = time.monotonic() - started
    table = format_table(figures)
    print(table)
    command = shlex.join(["python", "-m", "benchmarks", *(argv or sys.argv[1:])])
    _save(args.results, command, machine, figures, table, elapsed)
    log(f"done in {elapsed:.0f} s; figures in {args.results / 'latest.md'}")
    return 0


def _save(
    folder: Path,
    command: str,
    machine: dict[str, str],
    figures: list[Figure],
    table: str,
    seconds: float,
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    record = {
        "command": command,
        "when": when,
        "seconds": round(seconds, 1),
        "machine": machine,
        "figures": [f.as_dict() for f in figures],
    }
    (folder / "latest.json").write_text(json.dumps(record, indent=2) + "\n")
    about = "\n".join(f"- {key}: {value}" for key, value in machine.items())
    text = f"`{command}` ({when}, {seconds:.0f} s)\n\n{about}\n\n{table}\n"
    (folder / "latest.md").write_text(text)


if __name__ == "__main__":
    sys.exit(main())
