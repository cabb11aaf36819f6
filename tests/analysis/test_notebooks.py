"""The notebooks run top to bottom with a real Jupyter kernel on the demo campaign.

Parameters are injected papermill-style: a cell tagged ``injected-parameters`` is inserted
right after the cell tagged ``parameters``. The kernel is ipykernel's ``python3`` spec;
jupyter_client launches it with this interpreter (``sys.executable``), which the test checks.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from probes.workspace import Campaign
from tests.analysis._demo import demo_campaign  # noqa: F401 - session fixture

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_there_are_the_three_notebooks():
    assert [p.name for p in NOTEBOOKS] == [
        "01_campaign_overview.ipynb", "02_transit_exposure.ipynb", "03_pop_deep_dive.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebook_has_no_outputs_and_a_parameters_cell(path: Path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name}: a cell has stored outputs"
            assert cell.execution_count is None, f"{path.name}: a cell has an execution count"
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: exactly one cell must be tagged 'parameters'"
    names: dict = {}
    exec(tagged[0].source, {}, names)  # noqa: S102 - plain assignments, our own file
    assert {"workspace", "campaign"} <= set(names)
    assert nb.metadata["kernelspec"]["name"] == "python3"


def _inject(nb: nbformat.NotebookNode, params: dict) -> None:
    idx = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    src = "# Injected parameters\n" + "\n".join(f"{k} = {v!r}" for k, v in params.items())
    cell = nbformat.v4.new_code_cell(src)
    cell.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(idx + 1, cell)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_on_the_demo_campaign(path: Path, demo_campaign: Campaign, tmp_path: Path):  # noqa: F811
    nb = nbformat.read(path, as_version=4)
    _inject(nb, {"workspace": str(demo_campaign.workspace), "campaign": demo_campaign.name})
    nb.cells.append(nbformat.v4.new_code_cell("import sys\nprint(sys.executable)"))
    client = NotebookClient(nb, kernel_name="python3", timeout=180, allow_errors=False,
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError on the first failing cell

    # the kernel is this interpreter (the venv's), not whatever `python` is on PATH
    exe = "".join(o.get("text", "") for o in nb.cells[-1].outputs).strip()
    assert Path(exe).resolve() == Path(sys.executable).resolve()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    pngs = [o for o in outputs if o.output_type == "display_data" and "image/png" in o.get("data", {})]
    n_plots = sum(c.source.count("plt.show()") for c in nb.cells if c.cell_type == "code")
    assert len(pngs) == n_plots > 0, "every figure shown must come out as a PNG"
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert f"campaign {demo_campaign.name}: " in text
