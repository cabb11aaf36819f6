"""pathexp probes: producing raw traceroute results and owning the interchange format.

Atlas-format JSON is the one raw format; the hop table (:mod:`probes.schema`) is its
columnar form. This package never imports :mod:`analysis`.

Rooms:

* :mod:`probes.schema`, :mod:`probes.parse` -- the hop table and Atlas JSON -> hop table;
* :mod:`probes.inputs` -- turning files and stdin into records (decompression, framing);
* :mod:`probes.store` -- the campaign store (raw segments, dedup, recovery, scan/read);
* :mod:`probes.workspace` -- :class:`~probes.workspace.Campaign`, the folder layout;
* :mod:`probes.fileio`, :mod:`probes.engine` -- atomic writes, the local/Dask runner;
* :mod:`probes.metadata`, :mod:`probes.targets`, :mod:`probes.convert` -- probe metadata,
  target lists, foreign traceroute formats;
* :mod:`probes.atlas`, :mod:`probes.campaign` -- the RIPE Atlas API and campaigns;
* :mod:`probes.local` -- local Paris traceroute; :mod:`probes.world` -- the synthetic world.

Private modules (``_name``) are used only inside their own package.
"""

__all__: list[str] = []
