"""Types of the native decoder built from probes/_atlasjson.c (see probes.parse)."""

class Buffer:
    """Memory the decoder filled, exposed through the buffer protocol (read-only)."""

    def __buffer__(self, flags: int, /) -> memoryview: ...

Column = tuple[int, int, Buffer, Buffer, Buffer | None]

def decode(data: bytes, /) -> tuple[int, tuple[Column, ...], list[int]] | None: ...

def contains(data: bytes, word: bytes, /) -> bool: ...
