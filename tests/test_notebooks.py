"""Every notebook in notebooks/ is executed top to bottom in quick mode (JAXNETS_QUICK=1) and must
finish without an error (after Optax's docs build, which runs its notebooks). The lesson notebooks read
the results of ``python -m experiments all --quick`` (JAXNETS_RESULTS) instead of recomputing them."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    assert NOTEBOOKS, "notebooks/ holds no notebooks"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_in_quick_mode(path, tmp_path, monkeypatch, quick_results):
    monkeypatch.setenv("JAXNETS_QUICK", "1")
    monkeypatch.setenv("JAXNETS_RESULTS", str(quick_results[0]))  # lessons read `experiments all --quick`'s results
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebook = nbformat.read(path, as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), \
        f"{path.name} is committed with outputs; clear them"
    NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs if o.output_type == "error"]
    assert not errors
