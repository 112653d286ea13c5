"""examples/quickstart.ipynb runs from top to bottom (nbclient), so it never rots."""

from __future__ import annotations

import nbformat
from nbclient import NotebookClient

from tests.conftest import REPO


def test_quickstart_notebook_runs_and_shows_its_results(mars_samples):
    notebook = nbformat.read(REPO / "examples" / "quickstart.ipynb", as_version=4)
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(REPO / "examples")}}
    ).execute()
    outputs = [
        "".join(o.get("text", "") for o in c.get("outputs", []))
        for c in notebook.cells
        if c.cell_type == "code"
    ]
    text = "\n".join(outputs)
    assert "images indexed, 40 people" in text
    assert "pairs called the same person" in text and "rank-1" in text
    pictures = sum("image/png" in o.get("data", {}) for c in notebook.cells for o in c.get("outputs", []))
    assert pictures == 2  # the similarity matrix and the CMC curve
