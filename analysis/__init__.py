"""pathexp analysis: reference data, hop annotation, paths, graphs, metrics, charts."""

__all__: list[str] = []
