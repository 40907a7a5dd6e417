"""Cost estimates: totals against a hand-computed table, on SQLite and Postgres.

The price table (``PRICES``): Llama 3.1 8B at 0.40 USD, any ``Qwen/*`` at 0.30 EUR per
million trained tokens; nothing for ``mistral/x``. Six jobs:

=====  ======  ==========================  ==========  =====================  ============
job    source  model                       tokens      created (UTC)          cost
=====  ======  ==========================  ==========  =====================  ============
j1     alpha   Llama                       2,500,000   2026-01-01 10:00       1.00 USD
j2     alpha   Llama                       1,000,000   2026-01-02 23:30       0.40 USD
j3     alpha   Qwen/Qwen2.5-7B             2,000,000   2026-01-01 12:00       0.60 EUR
j4     beta    mistral/x                   5,000,000   2026-01-02 01:00       none: no price
j5     beta    Llama (running)             none yet    2026-01-02 02:00       none: no tokens
j6     beta    Llama                         750,000   2026-01-01 23:59:59    0.30 USD
=====  ======  ==========================  ==========  =====================  ============
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine

from ftlog import analysis
from ftlog.cli import main
from ftlog.parse import parse_job
from ftlog.pricing import Price, PriceTable
from ftlog.store import Observation, ensure_source, save_observations

LLAMA = "meta-llama/Llama-3.1-8B-Instruct"
PRICES = PriceTable({LLAMA: Price(0.40, "USD"), "Qwen/*": Price(0.30, "EUR")})
PRICES_TOML = f"""[prices]
"{LLAMA}" = {{ per_million_tokens = 0.40, currency = "USD" }}
"Qwen/*" = {{ per_million_tokens = 0.30, currency = "EUR" }}
"""
NA = pd.NA
JOBS = [
    ("j1", "alpha", LLAMA, 2_500_000, "2026-01-01T10:00:00"),
    ("j2", "alpha", LLAMA, 1_000_000, "2026-01-02T23:30:00"),
    ("j3", "alpha", "Qwen/Qwen2.5-7B", 2_000_000, "2026-01-01T12:00:00"),
    ("j4", "beta", "mistral/x", 5_000_000, "2026-01-02T01:00:00"),
    ("j5", "beta", LLAMA, None, "2026-01-02T02:00:00"),
    ("j6", "beta", LLAMA, 750_000, "2026-01-01T23:59:59"),
]


@pytest.fixture
def priced(engine: Engine) -> Engine:
    sources = {name: ensure_source(engine, name, f"https://{name}.example/v1") for name in
               ("alpha", "beta")}  # fmt: skip
    for job_id, source, model, tokens, created in JOBS:
        created_at = datetime.fromisoformat(created).replace(tzinfo=UTC)
        obj = {
            "id": job_id,
            "object": "fine_tuning.job",
            "model": model,
            "status": "running" if tokens is None else "succeeded",
            "created_at": int(created_at.timestamp()),
            "trained_tokens": tokens,
        }
        save_observations(engine, sources[source], [Observation(parse_job(obj), created_at)])
    return engine


def table_rows(frame: pd.DataFrame) -> list[tuple[Any, ...]]:
    """Rows as tuples, costs rounded to the cent (floats: 0.75 × 0.40 is 0.30000000000000004)."""
    out = frame.astype(object)
    out["estimated_cost"] = [c if c is NA else round(c, 10) for c in out["estimated_cost"]]
    return [tuple(row) for row in out.itertuples(index=False)]


COLUMNS = ["currency", "jobs", "priced_jobs", "unpriced_jobs", "trained_tokens", "estimated_cost"]


def test_cost_by_model(priced: Engine) -> None:
    totals = analysis.cost_totals(priced, prices=PRICES)
    assert list(totals.columns) == ["model", *COLUMNS]
    assert {n: str(t) for n, t in totals.dtypes.items()} == {
        "model": "string", "currency": "string", "jobs": "Int64", "priced_jobs": "Int64",
        "unpriced_jobs": "Int64", "trained_tokens": "Int64", "estimated_cost": "Float64",
    }  # fmt: skip
    assert table_rows(totals) == [
        ("Qwen/Qwen2.5-7B", "EUR", 1, 1, 0, 2_000_000, 0.60),
        # j5 has a price but no tokens yet: counted, not costed.
        (LLAMA, "USD", 4, 3, 1, 4_250_000, 1.70),
        ("mistral/x", NA, 1, 0, 1, 5_000_000, NA),  # no price: never a made-up cost
    ]


def test_cost_by_source_keeps_currencies_apart(priced: Engine) -> None:
    totals = analysis.cost_totals(priced, by="source", prices=PRICES)
    assert list(totals.columns) == ["source", *COLUMNS]
    assert table_rows(totals) == [
        ("alpha", "EUR", 1, 1, 0, 2_000_000, 0.60),
        ("alpha", "USD", 2, 2, 0, 3_500_000, 1.40),
        ("beta", "USD", 2, 1, 1, 750_000, 0.30),
        ("beta", NA, 1, 0, 1, 5_000_000, NA),
    ]


def test_cost_by_day_of_creation_in_utc(priced: Engine) -> None:
    totals = analysis.cost_totals(priced, by="day", prices=PRICES)
    assert table_rows(totals) == [
        ("2026-01-01", "EUR", 1, 1, 0, 2_000_000, 0.60),
        ("2026-01-01", "USD", 2, 2, 0, 3_250_000, 1.30),  # j1 and j6 (23:59:59 UTC)
        ("2026-01-02", "USD", 2, 1, 1, 1_000_000, 0.40),
        ("2026-01-02", NA, 1, 0, 1, 5_000_000, NA),
    ]
    since = analysis.cost_totals(priced, by="day", prices=PRICES, since="2026-01-02")
    assert since["day"].unique().tolist() == ["2026-01-02"]
    beta = analysis.cost_totals(priced, by="day", prices=PRICES, source="beta", until="2026-01-02")
    assert table_rows(beta) == [("2026-01-01", "USD", 1, 1, 0, 750_000, 0.30)]


def test_currency_totals_sum_each_currency_alone(priced: Engine) -> None:
    totals = analysis.currency_totals(analysis.cost_totals(priced, by="source", prices=PRICES))
    assert table_rows(totals) == [
        ("EUR", 1, 1, 0, 2_000_000, 0.60),
        ("USD", 4, 3, 1, 4_250_000, 1.70),
        (NA, 1, 0, 1, 5_000_000, NA),
    ]


def test_no_prices_no_costs(priced: Engine) -> None:
    totals = analysis.cost_totals(priced, prices=PriceTable())
    assert totals["currency"].isna().all() and totals["estimated_cost"].isna().all()
    assert totals["jobs"].sum() == 6 and totals["priced_jobs"].sum() == 0
    empty = analysis.cost_totals(priced, prices=PRICES, job_ids=["nope"])
    assert empty.empty and list(empty.columns) == ["model", *COLUMNS]
    with pytest.raises(ValueError, match="by must be one of"):
        analysis.cost_totals(priced, by="week", prices=PRICES)  # type: ignore[arg-type]


def test_summary_and_comparison_carry_the_estimate(priced: Engine) -> None:
    summary = analysis.throughput_summary(priced, prices=PRICES).set_index("job_id")
    assert summary.loc["j1", "estimated_cost"] == pytest.approx(1.00)
    assert summary.loc["j3", "currency"] == "EUR"
    assert summary.loc["j4", "estimated_cost"] is NA and summary.loc["j4", "currency"] is NA
    assert summary.loc["j5", "estimated_cost"] is NA and summary.loc["j5", "currency"] == "USD"
    table = analysis.compare_hyperparameters(["j2", "j4"], priced, prices=PRICES)
    assert table.loc["estimated_cost", "j2"] == pytest.approx(0.40)
    assert list(table.loc["currency"]) == ["USD", NA]
    assert table.loc["estimated_cost", "j4"] is NA


def write_config(tmp_path: Path, db_url: str) -> Path:
    """Top-level prices as PRICES; profile ``mistral`` also prices mistral/* and reads the
    store itself."""
    path = tmp_path / "config.toml"
    path.write_text(
        f"""{PRICES_TOML}
[profiles.mistral]
database_url = "{db_url}"

[profiles.mistral.prices]
"mistral/*" = {{ per_million_tokens = 1.00, currency = "USD" }}
""",
        encoding="utf-8",
    )
    path.chmod(0o600)  # a Postgres URL might be read as holding a password otherwise
    return path


def test_the_library_reads_no_config_file(
    priced: Engine, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FTLOG_CONFIG", str(write_config(tmp_path, db_url)))
    monkeypatch.setenv("FTLOG_PROFILE", "mistral")
    assert analysis.cost_totals(priced)["estimated_cost"].isna().all()  # prices=None: none
    assert analysis.throughput_summary(priced)["estimated_cost"].isna().all()
    monkeypatch.setenv("FTLOG_PROFILE", "nope")  # not read either
    assert len(analysis.compare_hyperparameters(["j1"], priced)) > 0


def test_every_command_prices_with_the_profile_in_use(
    priced: Engine, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FTLOG_CONFIG", str(write_config(tmp_path, db_url)))
    top = csv_rows(cli("cost", "--by", "source", "--db", db_url, "--format", "csv").output)
    assert tuple(top[0].values()) == ("alpha", "EUR", "1", "1", "0", "2000000", "0.6")
    monkeypatch.setenv("FTLOG_PROFILE", "mistral")  # its own prices first, then the top level
    by_model = {
        r["model"]: r["estimated_cost"] for r in csv_rows(cli("cost", "--format", "csv").output)
    }
    assert by_model["mistral/x"] == "5.0"
    assert float(by_model[LLAMA]) == pytest.approx(1.70)
    summary = csv_rows(cli("throughput", "--format", "csv").output)
    assert {r["model"]: r["estimated_cost"] for r in summary}["mistral/x"] == "5.0"
    compared = csv_rows(cli("compare", "j1", "--format", "csv").output)
    assert {r["job_id"]: r["estimated_cost"] for r in compared}["j1"] == "1.0"
    exported = csv_rows(cli("export", "throughput-summary").output)
    assert {r["model"]: r["estimated_cost"] for r in exported}["mistral/x"] == "5.0"
    monkeypatch.setenv("FTLOG_PROFILE", "nope")
    result = cli("throughput")
    assert result.exit_code == 2 and "no profile 'nope'" in result.output


# --- ftlog cost -----------------------------------------------------------------------------


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture
def prices_file(tmp_path: Path) -> Path:
    path = tmp_path / "prices.toml"
    path.write_text(PRICES_TOML, encoding="utf-8")
    return path


def csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text, newline="")))


def test_cost_command_csv_and_json(priced: Engine, db_url: str, prices_file: Path) -> None:
    result = cli("cost", "--db", db_url, "--prices", str(prices_file), "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = csv_rows(result.output)
    assert [(r["model"], r["currency"], r["jobs"], r["estimated_cost"]) for r in rows] == [
        ("Qwen/Qwen2.5-7B", "EUR", "1", "0.6"),
        (LLAMA, "USD", "4", "1.7"),  # 1.0 + 0.4 + 0.30000000000000004, to the cent
        ("mistral/x", "", "1", ""),
    ]
    by_day = cli("cost", "--by", "day", "--since", "2026-01-02", "--db", db_url, "--prices",
                 str(prices_file), "--format", "json")  # fmt: skip
    records = json.loads(by_day.output)
    assert [(r["day"], r["currency"], r["estimated_cost"]) for r in records] == [
        ("2026-01-02", "USD", 0.4),
        ("2026-01-02", None, None),
    ]


def test_cost_command_table_totals_each_currency(
    priced: Engine, db_url: str, prices_file: Path
) -> None:
    result = cli("cost", "--by", "source", "--db", db_url, "--prices", str(prices_file))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["source", *COLUMNS]
    assert lines[2].split() == ["alpha", "EUR", "1", "1", "0", "2,000,000", "0.60"]
    assert lines[5].split() == ["beta", "-", "1", "0", "1", "5,000,000", "-"]
    assert lines[-1] == (
        "total: 0.60 EUR, 1.70 USD (2 of 6 jobs without an estimate: no price for the model "
        "or no trained tokens yet)"
    )


def test_cost_command_uses_the_profile_and_its_store(
    priced: Engine, db_url: str, tmp_path: Path, prices_file: Path
) -> None:
    config = write_config(tmp_path, db_url)
    result = cli("cost", "--config", str(config), "--profile", "mistral", "--format", "csv")
    assert result.exit_code == 0, result.output
    costs = {r["model"]: r["estimated_cost"] for r in csv_rows(result.output)}
    assert costs["mistral/x"] == "5.0" and costs["Qwen/Qwen2.5-7B"] == "0.6"
    # --prices replaces the config's tables altogether.
    again = cli("cost", "--config", str(config), "--profile", "mistral", "--prices",
                str(prices_file), "--format", "csv")  # fmt: skip
    assert {r["model"]: r["estimated_cost"] for r in csv_rows(again.output)}["mistral/x"] == ""
    # Without a profile: the top-level prices (and --db).
    plain = cli("cost", "--config", str(config), "--db", db_url, "--format", "csv")
    assert {r["model"]: r["estimated_cost"] for r in csv_rows(plain.output)}["mistral/x"] == ""


def test_cost_command_without_prices_says_so(priced: Engine, db_url: str) -> None:
    result = cli("cost", "--db", db_url)
    assert result.exit_code == 0, result.output
    assert "6 of 6 jobs without an estimate: no prices" in result.output
    assert "ftlog config path" in result.output


def test_cost_command_errors(priced: Engine, db_url: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[prices]\nx = { per_million_tokens = -1, currency = "USD" }\n')
    result = cli("cost", "--db", db_url, "--prices", str(bad))
    assert result.exit_code == 2 and "per_million_tokens must be a number >= 0" in result.output
    assert cli("cost", "--db", db_url, "--by", "week").exit_code == 2


def test_throughput_compare_and_export_take_prices(
    priced: Engine, db_url: str, prices_file: Path, tmp_path: Path
) -> None:
    prices = ("--prices", str(prices_file))
    table = cli("throughput", "--db", db_url, *prices).output
    assert table.splitlines()[0].split()[-2:] == ["estimated_cost", "currency"]
    assert "estimated_cost" not in cli("throughput", "--db", db_url).output  # nothing priced
    summary = csv_rows(cli("throughput", "j1", "--db", db_url, "--format", "csv", *prices).output)
    assert (summary[0]["estimated_cost"], summary[0]["currency"]) == ("1.0", "USD")
    compared = csv_rows(cli("compare", "j1", "j3", "--db", db_url, "--format", "csv",
                            *prices).output)  # fmt: skip
    costs = {r["job_id"]: r["estimated_cost"] for r in compared}
    assert (costs["j1"], costs["j3"]) == ("1.0", "0.6")
    out = tmp_path / "cost.csv"
    assert cli("export", "cost", "--by", "source", "-o", str(out), "--db", db_url,
               *prices).exit_code == 0  # fmt: skip
    exported = csv_rows(out.read_text(encoding="utf-8"))
    assert list(exported[0]) == ["source", *COLUMNS] and len(exported) == 4
    usage = cli("export", "jobs", "--by", "day", "-o", str(out), "--db", db_url)
    assert (
        usage.exit_code == 2 and "--by applies to export cost and comparison only" in usage.output
    )
