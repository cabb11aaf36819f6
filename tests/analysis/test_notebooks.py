"""The notebooks run top to bottom with a real Jupyter kernel on the demo campaign.

Each notebook runs through papermill with ``-p workspace DIR -p campaign NAME`` as a user
would run it against their own campaign (papermill inserts a cell tagged
``injected-parameters`` after the cell tagged ``parameters``). The kernel is ipykernel's
``python3`` spec; jupyter_client launches it with this interpreter (``sys.executable``),
which the test checks.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
import pytest

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


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_on_the_demo_campaign(path: Path, demo_campaign: Campaign, tmp_path: Path):  # noqa: F811
    import papermill

    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("import sys\nprint(sys.executable)"))
    src, out = tmp_path / path.name, tmp_path / f"out-{path.name}"
    nbformat.write(nb, src)
    params = {"workspace": str(demo_campaign.workspace), "campaign": demo_campaign.name}
    # raises PapermillExecutionError on the first failing cell
    papermill.execute_notebook(str(src), str(out), parameters=params, kernel_name="python3",
                               cwd=str(tmp_path), progress_bar=False, log_output=False)
    nb = nbformat.read(out, as_version=4)

    # papermill put the parameters right after the cell tagged "parameters"
    tags = [c.metadata.get("tags", []) for c in nb.cells]
    at = next(i for i, t in enumerate(tags) if "parameters" in t)
    assert "injected-parameters" in tags[at + 1] and sum("injected-parameters" in t for t in tags) == 1
    injected: dict = {}
    exec(nb.cells[at + 1].source, {}, injected)  # noqa: S102 - assignments papermill wrote
    assert injected == params
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
