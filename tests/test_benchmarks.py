"""The benchmarks, run at a tiny size so they cannot rot (their figures are checked to be
there, never their values), and the start-up property they measure as a plain test.

Postgres figures are included when ``FTLOG_TEST_POSTGRES_URL`` is set (as in CI).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

from benchmarks.__main__ import BENCHMARKS, main
from benchmarks.harness import Settings, format_table
from benchmarks.startup import FORBIDDEN, heavy_modules


@pytest.mark.parametrize("args", [["--help"], ["snapshot", "--help"]], ids=" ".join)
def test_help_imports_no_heavy_library(args: list[str]) -> None:
    """``ftlog --help`` runs from cron wrappers and shells: no pandas, matplotlib, alembic."""
    imported = heavy_modules(args)
    assert not set(imported) & set(FORBIDDEN), imported


def tiny(tmp_path: Path) -> Settings:
    return Settings(
        size="tiny", postgres_url=os.environ.get("FTLOG_TEST_POSTGRES_URL"), results_dir=tmp_path
    )


EXPECTED = {
    "sync": ["1 full sync", "2 incremental sync"],
    "network": ["6 first sync over a network"],
    "peer": ["7 ftlog vs dlt"],
    "polling": ["3 polling growth"],
    "analysis": ["4 analysis"],
    "startup": ["5 start-up"],
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_each_benchmark_produces_its_figures(name: str, tmp_path: Path) -> None:
    settings = tiny(tmp_path)
    figures = BENCHMARKS[name](settings)
    assert {f.benchmark for f in figures} == set(EXPECTED[name])
    for figure in figures:
        assert isinstance(figure.value, int | float) and not math.isnan(figure.value), figure
        if figure.target is not None:
            assert figure.ratio is not None and figure.met is not None, figure
    if name not in ("startup", "peer"):  # the peer loads into SQLite only
        for database in settings.databases:
            assert any(database in f.case for f in figures), database
    assert format_table(figures).count("\n") == len(figures) + 1


@pytest.mark.slow
def test_the_command_writes_the_table_and_the_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--size", "tiny", "--only", "startup", "--results", str(tmp_path)]
    assert main(argv) == 0
    table = capsys.readouterr().out
    assert table.startswith("| benchmark | case |") and "ftlog --help" in table
    record = json.loads((tmp_path / "latest.json").read_text())
    assert record["command"].startswith("python -m benchmarks --size tiny")
    assert {"cores", "memory", "python", "sqlite", "postgres"} <= set(record["machine"])
    assert record["figures"] and "| benchmark |" in (tmp_path / "latest.md").read_text()
