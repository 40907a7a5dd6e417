"""Start-up: ``ftlog --help`` and ``ftlog snapshot --help`` against ``python -c "import click"``.

Timed with hyperfine when it is installed (``-N``, warm-up runs, median), else by running
the three commands in turn in child processes. Also lists which heavy modules each command
imports: ``--help`` must not import pandas, matplotlib or alembic.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.harness import Figure, Settings, caching_environment, log, run_child

TARGET = 1.5
HEAVY = ("pandas", "matplotlib", "alembic", "sqlalchemy", "httpx", "numpy")
FORBIDDEN = ("pandas", "matplotlib", "alembic")
COMMANDS = {"ftlog --help": ["--help"], "ftlog snapshot --help": ["snapshot", "--help"]}


def ftlog_command() -> list[str]:
    """The installed ``ftlog`` script beside this Python, else ``python -m ftlog``."""
    script = Path(sys.executable).with_name("ftlog")
    return [str(script)] if script.exists() else [sys.executable, "-m", "ftlog"]


def heavy_modules(args: list[str]) -> list[str]:
    """The heavy modules that running ``ftlog ARGS`` imports."""
    code = (
        "import json, sys\n"
        "from ftlog.cli import main\n"
        "try:\n"
        f"    main({args!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
    )
    sample = run_child([sys.executable, "-c", code])
    modules: list[str] = json.loads(sample.stdout.strip().splitlines()[-1])
    return modules


def run(settings: Settings) -> list[Figure]:
    runs = settings.pick(2, 5, 40)
    commands = {"import click": [sys.executable, "-c", "import click"]}
    commands |= {name: ftlog_command() + args for name, args in COMMANDS.items()}
    medians = _hyperfine(commands, runs) if shutil.which("hyperfine") else None
    tool = "hyperfine"
    if medians is None:
        tool = "subprocess"
        medians = _loop(commands, runs)
    log(f"startup ({tool}): " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in medians.items()))
    figures = []
    for name, args in COMMANDS.items():
        modules = heavy_modules(args)
        bad = [m for m in modules if m in FORBIDDEN]
        figures.append(
            Figure(
                "5 start-up",
                f"`{name}` ({tool}, {runs} runs)",
                medians[name],
                "s",
                medians["import click"],
                "import click",
                TARGET,
                f"≤ {TARGET}x",
            )
        )
        figures.append(
            Figure(
                "5 start-up",
                f"`{name}` imports pandas/matplotlib/alembic",
                len(bad),
                "modules",
                target_text="none",
                note="heavy modules imported: " + (", ".join(modules) or "none"),
                met_override=not bad,
            )
        )
    return figures


def _hyperfine(commands: dict[str, list[str]], runs: int) -> dict[str, float] | None:
    with tempfile.TemporaryDirectory() as tmp:
        export = Path(tmp) / "startup.json"
        args = ["hyperfine", "-N", "--warmup", "3", "--runs", str(runs), "--style", "none"]
        args += ["--export-json", str(export)]
        args += [subprocess.list2cmdline(cmd) for cmd in commands.values()]
        done = subprocess.run(
            args, capture_output=True, text=True, check=False, env=caching_environment()
        )
        if done.returncode != 0:
            log(f"hyperfine failed ({done.stderr.strip()[:200]}); timing in a loop instead")
            return None
        results = json.loads(export.read_text())["results"]
    return {name: float(r["median"]) for name, r in zip(commands, results, strict=True)}


def _loop(commands: dict[str, list[str]], runs: int) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(3):  # warm-up
        for cmd in commands.values():
            run_child(cmd)
    for _ in range(runs):
        for name, cmd in commands.items():
            times[name].append(run_child(cmd).wall)
    return {name: statistics.median(t) for name, t in times.items()}
