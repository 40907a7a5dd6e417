"""notebooks/ftlog-tour.ipynb: committed without outputs, and runs top to bottom on a kernel."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from ftlog.demo import demo_jobs, run_demo

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "ftlog-tour.ipynb"


def test_the_notebook_is_committed_without_outputs() -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)  # type: ignore[no-untyped-call]
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code
    for cell in code:
        assert cell.outputs == [], cell.source[:60]
        assert cell.execution_count is None, cell.source[:60]
    assert notebook.metadata.kernelspec.name == "python3"


@pytest.fixture
def this_python_kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A kernelspec that runs this interpreter (the venv's), first on JUPYTER_PATH: whatever
    "python3" kernels the machine has, the notebook runs with ftlog as installed here."""
    name = "ftlog-test-python"
    folder = tmp_path / "jupyter" / "kernels" / name
    folder.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "ftlog tests",
        "language": "python",
    }
    (folder / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    return name


def _texts(outputs: list[Any]) -> str:
    parts = []
    for output in outputs:
        if "text" in output:
            parts.append(output["text"])
        for kind in ("text/plain", "text/html"):
            parts.append(output.get("data", {}).get(kind, ""))
    return "\n".join(parts)


@pytest.mark.slow
def test_the_notebook_runs_on_a_demo_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, this_python_kernel: str
) -> None:
    pytest.importorskip("matplotlib")
    store = run_demo(tmp_path / "demo", quick=True).db_path
    monkeypatch.setenv("FTLOG_DATABASE_URL", str(store))
    notebook = nbformat.read(NOTEBOOK, as_version=4)  # type: ignore[no-untyped-call]
    client = NotebookClient(
        notebook,
        kernel_name=this_python_kernel,
        timeout=180,
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    )
    client.execute()  # raises CellExecutionError, with the traceback, if a cell fails

    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.execution_count for cell in code)
    outputs = [output for cell in code for output in cell.outputs]
    assert not [output for output in outputs if output.output_type == "error"]
    text = _texts(outputs)
    assert f"store: {store}" in text
    for job in demo_jobs():
        assert job.id in text
    assert "mean_tokens_per_s" in text and "out_of_memory" in text
    images = [output for output in outputs if "image/png" in output.get("data", {})]
    assert len(images) >= 3
