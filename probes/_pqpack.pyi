"""Types of the Parquet page packer built from probes/_pqpack.c (see probes._parquet_gather)."""

from collections.abc import Sequence

from typing_extensions import Buffer

#: (tabs, widths, plain) for a scalar column, (tabs, widths, plain, offsets, defs, reps)
#: for a list column.
Spec = tuple[Buffer, Buffer, bool] | tuple[Buffer, Buffer, bool, Buffer, Buffer, Buffer]

def pack(keys: Buffer, bounds: Buffer, columns: Sequence[Spec], nkeys: int, /) -> list[list[tuple[bytes, int, int]]]: ...
def used(keys: Buffer, bounds: Buffer, nkeys: int, /) -> bytes: ...
