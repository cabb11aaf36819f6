"""pathexp analysis: reference data, hop annotation, paths, graphs, metrics, charts.

Rooms:

* :mod:`analysis.datasets`, :mod:`analysis.registry` -- pinned reference-data snapshots
  and the flagged-carrier registry;
* :mod:`analysis.annotate`, :mod:`analysis.paths`, :mod:`analysis.graph`,
  :mod:`analysis.metrics`, :mod:`analysis.geo` -- the pure stages (tables in, tables out),
  with node ids in :mod:`analysis.nodes`;
* :mod:`analysis.campaign_io` -- the one module that reads and writes a campaign's
  analysis folders (annotate_campaign, analyze_campaign, load_campaign, write_report);
* :mod:`analysis.plots`, :mod:`analysis.report` -- charts and the HTML report;
* :mod:`analysis.demo` -- the offline demo and its accuracy scoring;
* :mod:`analysis.cli` -- the ``pathexp`` command (parses, calls the library, prints).
"""

__all__: list[str] = []
