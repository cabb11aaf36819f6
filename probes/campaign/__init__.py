"""RIPE Atlas measurement campaigns: plan, submit, status, fetch, import.

A campaign spec (TOML, see ``probes/campaign_example.toml``) names probe sources, targets,
the traceroute definition, a schedule and a credit budget. The steps are
:func:`plan` (reads only), :func:`submit`, :func:`status`, :func:`fetch` and
:func:`import_measurements`; every state change is a transaction in
``<campaign>/state.sqlite``, so a process can be killed at any point and the next run
resumes.

The room:

- :mod:`probes.campaign.spec`: the TOML spec, loaded and validated (errors name line
  and field).
- :mod:`probes.campaign.planner`: the pure planner (candidates + targets + rates ->
  probe x target matrix and cost).
- :mod:`probes.campaign.state`: the SQLite state (units, measurements, cursors, the
  credit ledger) and the one-process-per-campaign lock.
- :mod:`probes.campaign.run`: the steps that talk to the Atlas API and the state.
"""

from __future__ import annotations

from probes.campaign.planner import Plan
from probes.campaign.run import (
    FetchReport,
    Resolver,
    Sampler,
    SubmitReport,
    fetch,
    import_measurements,
    plan,
    render_plan,
    resolve_targets,
    status,
    submit,
    system_resolver,
)
from probes.campaign.spec import CampaignSpec, load_spec, parse_spec

__all__ = [
    "CampaignSpec",
    "FetchReport",
    "Plan",
    "Resolver",
    "Sampler",
    "SubmitReport",
    "fetch",
    "import_measurements",
    "load_spec",
    "parse_spec",
    "plan",
    "render_plan",
    "resolve_targets",
    "status",
    "submit",
    "system_resolver",
]
