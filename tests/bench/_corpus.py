"""A large Atlas corpus for the scale benchmarks, built by replaying real results.

Real shapes, no invented hops: each replica of the real MENOG traceroutes keeps every
hop and reply as recorded and changes only the result's identity — ``msm_id`` shifted by
``replica * 10**8`` and ``timestamp`` by ``replica`` weeks — so deduplication keeps every
replica. Written once per size as zstd NDJSON under the bench work folder.
"""

from __future__ import annotations

import lzma
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

_MSM = re.compile(rb'"msm_id":(\d+)')
_TS = re.compile(rb'"timestamp":(\d+)')
_WEEK = 7 * 86400
_MSM_STEP = 10**7


def work_dir() -> Path:
    """Scratch folder of the benchmarks (``PATHEXP_BENCH_DIR``, default ``.bench/``; git-ignored)."""
    d = Path(os.environ.get("PATHEXP_BENCH_DIR", Path(__file__).resolve().parents[2] / ".bench"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def menog_lines(root: Path) -> list[bytes]:
    path = root / "ripe-atlas/traceroutes/menog_traceroutes_full.ndjson.xz"
    return [ln for ln in lzma.decompress(path.read_bytes()).split(b"\n") if ln.strip()]


def build_corpus(root: Path, n: int) -> Path:
    """``n`` results replayed from the real MENOG file, as one zstd NDJSON file."""
    out = work_dir() / f"corpus-{n}.ndjson.zst"
    if out.exists():
        return out
    lines = menog_lines(root)
    tmp = out.with_suffix(".part")
    with pa.CompressedOutputStream(str(tmp), "zstd") as f:
        written, replica = 0, 0
        while written < n:
            # Atlas keys are 32-bit (ingest sets larger ones aside as key_out_of_range): MENOG's
            # msm_ids span 21.4M-23.9M, so 10M per replica stays in range for 400 replicas
            shift_msm, shift_ts = replica * _MSM_STEP, replica * _WEEK
            if 24_000_000 + shift_msm >= 1 << 32:
                raise ValueError(f"{n:,} results need msm_ids beyond 32 bits at replica {replica}")
            take = lines[: n - written]
            if replica:
                take = [
                    _TS.sub(lambda m, s=shift_ts: b'"timestamp":%d' % (int(m.group(1)) + s),
                            _MSM.sub(lambda m, s=shift_msm: b'"msm_id":%d' % (int(m.group(1)) + s), ln, 1), 1)
                    for ln in take
                ]
            f.write(b"\n".join(take) + b"\n")
            written += len(take)
            replica += 1
    tmp.rename(out)
    return out


def split_corpus(corpus: Path, files: int) -> list[Path]:
    """The corpus cut into ``files`` contiguous zstd NDJSON files (written once).

    Cut by lines, every line kept (a blank one too: ingest skips it), so the parts put
    back together are the corpus byte for byte.
    """
    out_dir = corpus.parent / f"{corpus.name.split('.')[0]}-in-{files}"
    outs = [out_dir / f"part-{i:03d}.ndjson.zst" for i in range(files)]
    if all(p.exists() for p in outs):
        return outs
    out_dir.mkdir(parents=True, exist_ok=True)

    def pieces() -> Iterator[bytes]:  # streamed: a 10M corpus is some 20 GB of text
        with pa.CompressedInputStream(pa.OSFile(str(corpus)), "zstd") as f:
            while chunk := f.read(1 << 24):
                yield chunk

    total = sum(p.count(b"\n") for p in pieces())
    step = max(-(-total // files), 1)
    tmps = [p.with_suffix(".part") for p in outs]
    i, written, tail = 0, 0, b""
    out = pa.CompressedOutputStream(str(tmps[0]), "zstd")
    for chunk in pieces():
        lines = (tail + chunk).split(b"\n")
        tail = lines.pop()
        while lines:
            take = lines[: step - written]
            out.write(b"".join(ln + b"\n" for ln in take))
            written += len(take)
            del lines[: len(take)]
            if written == step and i + 1 < files:
                out.close()
                i, written = i + 1, 0
                out = pa.CompressedOutputStream(str(tmps[i]), "zstd")
    if tail:
        out.write(tail + b"\n")
    out.close()
    for path in outs[i + 1 :]:  # fewer lines than files
        pa.CompressedOutputStream(str(path.with_suffix(".part")), "zstd").close()
    for tmp, path in zip(tmps, outs, strict=True):
        tmp.rename(path)
    return outs
