"""One settings resolution for every command: --config, --profile/FTLOG_PROFILE and
default_profile apply to every command that touches the store or the API, and
``ftlog config show`` prints what they use."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine

from ftlog import settings
from ftlog.cli import main
from ftlog.simulator import make_jobs
from tests.helpers import T0, TOKEN

ROOT = Path(__file__).resolve().parent.parent


def cli(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=env)


def write_config(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)
    return path


@pytest.fixture
def profiled(engine: Engine, db_url: str, tmp_path: Path, sim_factory: Any) -> dict[str, Any]:
    """A config whose default_profile records a simulated API into the test store, and a
    first snapshot through it (no --db, no --base-url: the profile gives both)."""
    jobs = make_jobs(3, seed=21, start=T0, spacing=60)
    sim = sim_factory(jobs, now=T0 + 10_000_000)
    config = write_config(
        tmp_path / "config.toml",
        f"""\
default_profile = "team"

[profiles.team]
base_url = "{sim.base_url}"
api_key_env = "TEAM_TOKEN"
database_url = "{db_url}"
source = "team-sim"

[profiles.empty]
database_url = "{tmp_path / "nowhere.db"}"

[prices]
"*" = {{ per_million_tokens = 1.0, currency = "USD" }}
""",
    )
    env = {settings.CONFIG: str(config), "TEAM_TOKEN": TOKEN}
    result = cli("snapshot", "--no-events", "--no-checkpoints", env=env)
    assert result.exit_code == 0, result.output
    return {"env": env, "ids": [job.id for job in jobs], "tmp": tmp_path, "config": config}


def test_every_reading_command_uses_the_profile_s_store(
    profiled: dict[str, Any], tmp_path: Path
) -> None:
    env, ids = profiled["env"], profiled["ids"]
    default_store = tmp_path / "xdg-data" / "ftlog" / "ftlog.db"
    commands: list[tuple[str, ...]] = [
        ("jobs",),
        ("show", ids[0]),
        ("throughput",),
        ("compare", ids[0], ids[1]),
        ("export", "jobs"),
        ("cost", "--by", "source"),
        ("db", "current"),
    ]
    for args in commands:
        result = cli(*args, env=env)
        assert result.exit_code == 0, (args, result.output)
        assert "(no jobs)" not in result.output, args
    assert ids[0] in cli("jobs", env=env).stdout
    assert "team-sim" in cli("cost", "--by", "source", env=env).stdout
    assert "(head)" in cli("db", "current", env=env).stdout
    assert not default_store.exists()  # nothing read, nothing created at the default place


def test_plot_uses_the_profile_s_store(profiled: dict[str, Any], tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    target = tmp_path / "t.png"
    result = cli("plot", "throughput", profiled["ids"][0], "-o", str(target), env=profiled["env"])
    assert result.exit_code == 0, result.output
    assert target.exists()


def test_the_profile_s_source_and_prices_apply(profiled: dict[str, Any]) -> None:
    env = profiled["env"]
    exported = json.loads(cli("export", "throughput-summary", "--format", "json", env=env).stdout)
    assert {row["source"] for row in exported} == {"team-sim"}
    assert {row["currency"] for row in exported} == {"USD"}  # the config's "*" price
    # --source '*' reaches past the profile's source; another source selects nothing.
    assert len(json.loads(cli("jobs", "--source", "*", "--format", "json", env=env).stdout)) == 3
    other = cli("jobs", "--source", "elsewhere", "--format", "json", env=env)
    assert json.loads(other.stdout) == []
    assert "(recorded: team-sim)" in other.stderr


def test_another_profile_by_option_variable_or_config(profiled: dict[str, Any]) -> None:
    env = profiled["env"]
    missing = str(profiled["tmp"] / "nowhere.db")
    for args, extra in (
        (("--profile", "empty"), {}),
        ((), {settings.PROFILE: "empty"}),
    ):
        result = cli("jobs", *args, env={**env, **extra})
        assert result.exit_code == 2, result.output
        assert f"no ftlog store at {missing}" in result.output
    # --db beats the profile; FTLOG_DATABASE_URL too.
    with_env = {**env, settings.PROFILE: "empty"}
    db = profiled_db(profiled)
    assert cli("jobs", "--db", db, env=with_env).exit_code == 0
    assert cli("jobs", env={**with_env, settings.DATABASE_URL: db}).exit_code == 0
    # --config names the file on every command.
    no_variable = {k: v for k, v in env.items() if k != settings.CONFIG}
    assert cli("jobs", "--config", str(profiled["config"]), env=no_variable).exit_code == 0
    unknown = cli("export", "jobs", "--profile", "ghost", env=env)
    assert unknown.exit_code == 2 and "no profile 'ghost'" in unknown.output


def profiled_db(profiled: dict[str, Any]) -> str:
    shown = cli("config", "show", env=profiled["env"]).stdout
    row = next(line for line in shown.splitlines() if line.startswith("database_url"))
    return row.split()[1]


def test_config_show_prints_what_the_commands_use(profiled: dict[str, Any], tmp_path: Path) -> None:
    env = profiled["env"]
    rows = {
        line.split()[0]: line.split()[1:]
        for line in cli("config", "show", env=env).stdout.splitlines()[1:]
    }
    assert rows["profile"] == ["team", "config", "default_profile"]
    assert rows["source"] == ["team-sim", "profile", "team"]
    assert rows["database_url"][1:] == ["profile", "team"]
    # Without a config file: the embedded store, which config show names in full.
    bare = cli("config", "show", env={settings.CONFIG: str(tmp_path / "none.toml")})
    assert bare.exit_code == 2  # a named file must exist
    plain = cli("config", "show").stdout.splitlines()
    row = next(line.split() for line in plain if line.startswith("database_url"))
    assert row[1:] == [f"sqlite:///{tmp_path / 'xdg-data' / 'ftlog' / 'ftlog.db'}", "default"]


def test_snapshot_records_under_the_profile_s_source(profiled: dict[str, Any]) -> None:
    listed = json.loads(cli("jobs", "--format", "json", env=profiled["env"]).stdout)
    assert {job["source"] for job in listed} == {"team-sim"}
    assert sorted(job["job_id"] for job in listed) == sorted(profiled["ids"])


def test_no_environment_variable_is_spelled_outside_settings() -> None:
    """Every variable ftlog reads is declared once, in ftlog/settings.py; the rest of the
    package (click's envvar= included) names it through the constant."""
    names = set(settings.VARIABLES)
    offenders = []
    for path in (ROOT / "ftlog").rglob("*.py"):
        if path.name == "settings.py" and path.parent.name == "ftlog":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and node.value in names:
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.value}")
    assert offenders == []


def test_every_store_command_takes_config_and_profile() -> None:
    """The commands that touch the store or the API all resolve their settings alike."""
    ctx = click.Context(main)
    for name in ("snapshot", "ingest", "watch", "jobs", "show", "throughput", "compare",
                 "export", "cost", "plot", "db"):  # fmt: skip
        command = main.get_command(ctx, name)
        assert command is not None
        leaves = (
            [c for c in command.commands.values() if c.name != "history"]
            if isinstance(command, click.Group)
            else [command]
        )
        for leaf in leaves:
            options = {opt for p in leaf.params for opt in getattr(p, "opts", [])}
            assert {"--db", "--config", "--profile"} <= options, (name, leaf.name)
