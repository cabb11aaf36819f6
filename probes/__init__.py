"""pathexp probes: producing raw traceroute results and owning the interchange format.

Atlas-format JSON is the one raw format; the hop table (:mod:`probes.schema`) is its
columnar form. This package never imports :mod:`analysis`.
"""

__all__: list[str] = []
