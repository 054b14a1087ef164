"""The notebooks run from top to bottom on MovieLens-100K (nbclient, a fresh kernel each), so they never
rot; each must finish well within two minutes on a loaded CI machine (the timeout is per cell)."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import ROOT, data_dir, unavailable

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_both_notebooks_are_there() -> None:
    assert {p.name for p in NOTEBOOKS} >= {"exploration.ipynb", "experiments.ipynb"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_on_movielens_100k(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        import nbclient
        import nbformat
    except ImportError as exc:
        unavailable("nbclient", f"{exc}: install the dev extra")
    data = data_dir()
    if not (data / "movielens-100k" / "u.data").exists():
        unavailable("MovieLens-100K", f"no {data}/movielens-100k/u.data")
    monkeypatch.setenv("RECSTACK_DATA_DIR", str(data))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    book = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        book, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    errors = [o for cell in book.cells for o in cell.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    images = [o for cell in book.cells for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
    assert images, "the notebook should show its plots"
