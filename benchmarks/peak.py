"""Run a Python module or script and report its peak RSS: ``python peak.py -m MODULE ARGS``
or ``python peak.py FILE ARGS``.

The peak is the process's own ``VmHWM`` (Linux), written to stderr at exit as
``peak-rss-kb: N``. ``ru_maxrss`` from ``wait4`` will not do: a child inherits its parent's
high-water mark across fork and exec, so every child of a big benchmark process would
report at least the benchmark's own size.
"""

from __future__ import annotations

import atexit
import runpy
import sys
from pathlib import Path

MARKER = "peak-rss-kb:"


def peak_kb() -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _report() -> None:
    peak = peak_kb()
    if peak is not None:
        sys.stderr.write(f"\n{MARKER} {peak}\n")
        sys.stderr.flush()


def main() -> None:
    del sys.path[0]  # this folder: its modules must not shadow anything the target imports
    atexit.register(_report)
    if sys.argv[1] == "-m":
        module = sys.argv[2]
        sys.argv = [module, *sys.argv[3:]]
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    else:
        sys.argv = sys.argv[1:]
        runpy.run_path(sys.argv[0], run_name="__main__")


if __name__ == "__main__":
    main()
