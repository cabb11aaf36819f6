"""Types of the native decoder built from probes/_atlasjson.c (see probes.parse)."""

Column = tuple[int, int, bytes, bytes, bytes | None]

def decode(data: bytes, /) -> tuple[int, tuple[Column, ...]] | None: ...
