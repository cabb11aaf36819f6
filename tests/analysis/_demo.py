"""Test helper: the demo campaign (small synthetic world through the whole pipeline), built once."""

from __future__ import annotations

import pytest

from probes.workspace import Campaign


@pytest.fixture(scope="session")
def demo_campaign(tmp_path_factory: pytest.TempPathFactory) -> Campaign:
    """Campaign ``demo`` after :func:`analysis.demo.run_demo` (small clean world, seed 0).

    Built once per test session (about 15 s): the folder lives at a fixed place under the
    session's base temp directory and is reused when already analysed.
    """
    from analysis.demo import run_demo

    workspace = tmp_path_factory.getbasetemp() / "demo-campaign"
    campaign = Campaign("demo", workspace)
    if not campaign.exposure_json.is_file():
        run_demo(workspace=workspace, seed=0, size="small", artefacts=None)
    return campaign
