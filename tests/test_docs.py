"""The README cannot drift: every command has help and a row of its command table, and every
``ftlog`` line of its shell examples runs, in order, against the simulated API."""

from __future__ import annotations

import re
import shlex
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from ftlog import settings
from ftlog.cli import main
from ftlog.simulator import ManualClock, SimulatedAPI, make_jobs
from ftlog.simulator.server import serve_in_thread
from tests.helpers import TOKEN

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
EXAMPLE_IDS = ("ftjob-abc123", "ftjob-a", "ftjob-b", "ftjob-c")
"""The job ids the README's examples name; the simulated API serves jobs with these ids."""


def commands(group: click.Group, prefix: str = "ftlog") -> list[tuple[str, click.Command]]:
    found = []
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None, name
        path = f"{prefix} {name}"
        found.append((path, command))
        if isinstance(command, click.Group):
            found.extend(commands(command, path))
    return found


def table_commands() -> set[str]:
    """The commands the README's command table names: ``ftlog plot throughput|compare|loss``
    names three, ``ftlog config show``, ``ftlog config path`` two."""
    named: set[str] = set()
    for row in re.findall(r"^\| (`ftlog .*?) \|", README, flags=re.MULTILINE):
        for code in re.findall(r"`(ftlog [^`]*)`", row):
            words = code.replace("\\|", "|").split()
            group = words[1]
            if len(words) > 2 and "|" in words[2]:
                named |= {f"ftlog {group} {sub}" for sub in words[2].split("|")}
            elif len(words) > 2 and re.fullmatch(r"[a-z][a-z-]*", words[2]):
                named.add(f"ftlog {group} {words[2]}")
            named.add(f"ftlog {group}")
    return named


@pytest.mark.parametrize(("path", "command"), commands(main), ids=str)
def test_command_has_help_and_a_row_in_the_readme(path: str, command: click.Command) -> None:
    assert command.help and len(command.help.strip()) > 20, f"{path} has no help text"
    for param in command.params:
        if isinstance(param, click.Option) and not param.hidden:
            assert param.help, f"{path} {param.opts[0]} has no help text"
    assert path in table_commands(), f"{path} has no row in the README's command table"


def test_the_table_names_only_real_commands() -> None:
    real = {path for path, _ in commands(main)}
    assert table_commands() - real == set()


def test_every_export_is_documented() -> None:
    from ftlog.cli.report import EXPORTS

    first = r"(?:source|model|name|period)"
    documented = re.findall(rf"^\| `([a-z-]+)` \| {first}", README, re.MULTILINE)
    assert sorted(documented) == sorted(EXPORTS)


def shell_examples() -> list[str]:
    """The ``ftlog`` lines of the README's ``sh`` blocks, in order, comments dropped."""
    lines = []
    for block in re.findall(r"```sh\n(.*?)```", README, flags=re.DOTALL):
        for line in block.splitlines():
            code = line.split(" #", 1)[0].strip()
            if code.startswith("ftlog "):
                lines.append(code)
    return lines


def toml_example(first_line: str) -> str:
    """The README's TOML block that starts with ``first_line``."""
    found = re.search(rf"```toml\n({re.escape(first_line)}\n.*?)```", README, flags=re.DOTALL)
    assert found is not None, f"the README's TOML example starting {first_line}"
    return found[1]


@pytest.fixture
def readme_world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A working directory holding the README's prices file; the README's config file in
    use (its default profile, nebius); the simulated API serving the README's job ids as
    the environment's API (FTLOG_BASE_URL and FTLOG_DATABASE_URL beat the profile's)."""
    now = time.time()
    specs = make_jobs(len(EXAMPLE_IDS), seed=11, start=int(now) - 3 * 3600, spacing=1800)
    jobs = [replace(spec, id=job_id) for spec, job_id in zip(specs, EXAMPLE_IDS, strict=True)]
    (tmp_path / "prices.toml").write_text(toml_example("[prices]"), encoding="utf-8")
    config = tmp_path / "config.toml"
    config.write_text(toml_example('default_profile = "nebius"'), encoding="utf-8")
    api = SimulatedAPI(jobs, clock=ManualClock(now), token=TOKEN)
    with serve_in_thread(api) as base_url:
        monkeypatch.chdir(tmp_path)
        monkeypatch.setenv(settings.CONFIG, str(config))
        monkeypatch.setenv(settings.BASE_URL, base_url)
        monkeypatch.setenv(settings.NEBIUS_API_KEY, TOKEN)  # the profile's api_key_env
        monkeypatch.setenv(settings.DATABASE_URL, str(tmp_path / "readme.db"))
        yield tmp_path


@pytest.mark.slow
def test_the_readme_shell_examples_run(readme_world: Path) -> None:
    examples = shell_examples()
    assert len(examples) >= 15 and examples[0].startswith("ftlog snapshot")
    runner = CliRunner()
    for line in examples:
        args = shlex.split(line)[1:]
        result = runner.invoke(main, args, prog_name="ftlog")
        assert result.exit_code == 0, f"{line}\n{result.output}"
        assert "Error" not in result.output and "Traceback" not in result.output, line
    written = {path.name for path in readme_world.iterdir()}
    assert {"snapshots.csv", "speed.png", "events.jsonl", "summary.json"} <= written


def test_commands_load_lazily() -> None:
    """ftlog snapshot builds the collect module's commands only (start-up is benchmarked)."""
    import subprocess
    import sys

    code = (
        "import sys; from ftlog.cli import main\n"
        "try: main(['snapshot', '--help'])\n"
        "except SystemExit: pass\n"
        "print(sorted(m for m in sys.modules if m.startswith('ftlog.cli.')))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.splitlines()[-1]
    assert loaded == str(["ftlog.cli.collect", "ftlog.cli.options"])
