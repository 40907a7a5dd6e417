"""Every command has help text and is documented in the README."""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from ftlog.cli import main

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


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


@pytest.mark.parametrize(("path", "command"), commands(main), ids=str)
def test_command_has_help_and_is_in_the_readme(path: str, command: click.Command) -> None:
    assert command.help and len(command.help.strip()) > 20, f"{path} has no help text"
    for param in command.params:
        if isinstance(param, click.Option) and not param.hidden:
            assert param.help, f"{path} {param.opts[0]} has no help text"
    parent, _, name = path.rpartition(" ")
    assert path in README or (parent != "ftlog" and f"{parent} " in README and name in README), (
        f"{path} is not in README.md"
    )


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
    assert loaded == str(["ftlog.cli.collect", "ftlog.cli.config", "ftlog.cli.options"])
