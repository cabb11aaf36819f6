"""Per-kind readers: public reference-data files -> Arrow tables ready to store.

Each reader takes the raw bytes of the files of one kind (already decompressed), their
names (for error messages and type detection), and a :class:`collections.Counter` into
which it counts every record it sets aside, by reason. It returns ``{table_name: Table}``.
A file that is not of the declared kind raises :class:`~analysis.errors.DatasetFormatError`
naming the file and line.
"""

from __future__ import annotations

import bz2
import gzip
import io
import ipaddress
import lzma
import re
from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from analysis import _lpm
from analysis.errors import DatasetFormatError

__all__ = ["READERS", "decompress", "KINDS"]

Reader = Callable[[Sequence[tuple[str, bytes]], Counter], dict[str, pa.Table]]


def decompress(data: bytes) -> bytes:
    """Undo gzip / bz2 / xz compression, recognised by magic bytes."""
    if data[:2] == b"\x1f\x8b":
        return gzip.decompress(data)
    if data[:3] == b"BZh":
        return bz2.decompress(data)
    if data[:6] == b"\xfd7zXZ\x00":
        return lzma.decompress(data)
    return data


def _prefix_words(
    addr: pa.Array, plen: np.ndarray, *, name: str, counts: Counter, reason: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Parse prefix network addresses; return (af, hi, lo, plen, ok) with host bits masked."""
    af, hi, lo, ok = _lpm.parse_addresses(addr)
    width = np.where(af == 4, 32, 128)
    ok &= (plen >= 0) & (plen <= width)
    bad = int((~ok).sum())
    if bad:
        counts[f"{reason}"] += bad
    plen = np.where(ok, plen, 0)
    for v, w in ((4, 32), (6, 128)):
        sel = ok & (af == v)
        if sel.any():
            mhi, mlo = _mask_rows(hi[sel], lo[sel], plen[sel] + (128 - w))
            hi[sel], lo[sel] = mhi, mlo
    return af, hi, lo, plen.astype(np.int16), ok


def _mask_rows(hi: np.ndarray, lo: np.ndarray, bits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    bits = bits.astype(np.int64)
    all1 = np.uint64(0xFFFFFFFFFFFFFFFF)
    hb = np.clip(bits, 0, 64)
    lb = np.clip(bits - 64, 0, 64)
    with np.errstate(over="ignore"):
        hmask = np.where(hb == 0, np.uint64(0), all1 << (64 - hb).astype(np.uint64) % np.uint64(64))
        hmask = np.where(hb == 64, all1, hmask)
        lmask = np.where(lb == 0, np.uint64(0), all1 << (64 - lb).astype(np.uint64) % np.uint64(64))
        lmask = np.where(lb == 64, all1, lmask)
    return hi & hmask, lo & lmask


def utf8_lines_only(data: bytes, counts: Counter, reason: str = "bad-line") -> bytes:
    """``data`` without the lines that are not UTF-8 text (or hold a NUL byte), each counted.

    The CSV readers and their invalid-row handlers need text; one binary line must cost only
    itself. The common case (a clean file) is one decode and no copy.
    """
    try:
        data.decode("utf-8")
        if b"\x00" not in data:
            return data
    except UnicodeDecodeError:
        pass
    kept = []
    for line in data.split(b"\n"):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            counts[reason] += 1
            continue
        if b"\x00" in line:
            counts[reason] += 1
            continue
        kept.append(line)
    return b"\n".join(kept)


def _lines(name: str, data: bytes) -> list[str]:
    try:
        return data.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        return data.decode("latin-1").splitlines()


# ---------------------------------------------------------------- CAIDA prefix2as

#: ASNs that never originate a route: AS0 (RFC 7607), AS_TRANS (RFC 6793), the last
#: 16-bit and 32-bit ASNs (RFC 7300).
_NOT_AN_ORIGIN = np.array([0, 23456, 65535, 4294967295], np.int64)


def _coordinate(value: object, limit: float, counts: Counter, reason: str) -> float | None:
    """A latitude (limit 90) or longitude (limit 180) as float, or None (counted) when unusable."""
    if value is None or value == "":
        return None
    try:
        f = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        counts[reason] += 1
        return None
    if not (-limit <= f <= limit):  # also NaN
        counts[reason] += 1
        return None
    return f


_COMMENT_LINE = re.compile(rb"^[;#][^\n]*(?:\n|$)", re.M)
_CIDR_FIRST = re.compile(rb"^([^\t/\n]+)/([0-9]+)\t", re.M)


def _as_caida_pfx2as(name: str, data: bytes) -> bytes:
    """A prefix-to-AS file in CAIDA's three-column form.

    Accepts CAIDA prefix2as (``prefix<TAB>len<TAB>origins``), pyasn IPASN .dat files
    (``; `` comment header, ``prefix/len<TAB>asn``) and ``prefix/len<TAB>asn`` tables such
    as the AS-Prefix TSV (``#`` header); comment lines are dropped.
    """
    data = _COMMENT_LINE.sub(b"", data)
    first = data.lstrip(b"\n").split(b"\n", 1)[0]
    if first.count(b"\t") == 1 and b"/" in first.split(b"\t", 1)[0]:
        return _CIDR_FIRST.sub(rb"\1\t\2\t", data)
    if first.count(b"\t") != 2:
        raise DatasetFormatError(
            f"{name}:1: not a prefix-to-AS file (want CAIDA 'prefix<TAB>len<TAB>asn' or pyasn "
            f"'prefix/len<TAB>asn', got {first[:80]!r})"
        )
    return data


def read_pfx2as(files: Sequence[tuple[str, bytes]], counts: Counter) -> dict[str, pa.Table]:
    """Prefix-to-origin-AS tables, v4 and v6: CAIDA RouteViews prefix2as
    (``prefix<TAB>length<TAB>origins``), pyasn IPASN .dat files and ``prefix/len<TAB>asn``
    tables (see :func:`_as_caida_pfx2as`).

    ``origins`` keeps multi-origin prefixes (``a_b``) and AS sets (``a,b``); the primary
    origin ``asn`` is the first AS listed.
    """
    parts = []
    for name, data in files:
        if not data.strip():
            raise DatasetFormatError(f"{name}: empty pfx2as file")
        data = _as_caida_pfx2as(name, data)
        data = utf8_lines_only(data, counts)
        try:
            t = pacsv.read_csv(
                io.BytesIO(data),
                read_options=pacsv.ReadOptions(column_names=["net", "len", "origins"]),
                parse_options=pacsv.ParseOptions(delimiter="\t", quote_char=False,
                                                 invalid_row_handler=_skip_counter(counts, "bad-line")),
                convert_options=pacsv.ConvertOptions(
                    column_types={"net": pa.string(), "len": pa.string(), "origins": pa.string()}
                ),
            )
        except pa.ArrowInvalid as exc:
            raise DatasetFormatError(f"{name}: not a CAIDA prefix2as file: {exc}") from exc
        parts.append(t)
    t = pa.concat_tables(parts)
    plen_arr = pc.cast(pc.utf8_is_digit(t["len"]), pa.bool_())
    plen = np.where(
        plen_arr.to_numpy(zero_copy_only=False),
        pc.cast(pc.if_else(plen_arr, t["len"], "-1"), pa.int64()).to_numpy(),
        -1,
    )
    af, hi, lo, plen, ok = _prefix_words(
        t["net"].combine_chunks(), plen, name="pfx2as", counts=counts, reason="bad-prefix"
    )
    default = ok & (plen == 0)  # 0.0.0.0/0 or ::/0 is no origin of anything
    counts["default-route"] += int(default.sum())
    ok &= ~default
    origins = t["origins"].combine_chunks()
    # one to ten digits per AS (no integer overflow), then each in range and not a reserved value
    valid_origin = pc.fill_null(pc.match_substring_regex(origins, r"^[0-9]{1,10}([_,][0-9]{1,10})*$"), False)
    vo = valid_origin.to_numpy(zero_copy_only=False)
    if vo.any():
        parsed = pc.cast(pc.split_pattern_regex(pc.if_else(valid_origin, origins, "1"), r"[_,]"),
                         pa.list_(pa.int64()))
        flat = pc.list_flatten(parsed).to_numpy(zero_copy_only=False)
        bad = (flat >= 1 << 32) | np.isin(flat, _NOT_AN_ORIGIN)
        if bad.any():
            # a reserved ASN next to real origins (real RouteViews lines such as 9583_65535) is
            # removed from the list; a prefix left with no origin is set aside
            rows_hit = np.unique(pc.list_parent_indices(parsed).to_numpy(zero_copy_only=False)[bad])
            text = origins.to_pylist()
            for r in rows_hit.tolist():
                if not (ok[r] and vo[r]):
                    continue
                kept = [a for a in re.split(r"([_,])", text[r])
                        if not a.isdigit() or not (int(a) >= 1 << 32 or int(a) in _NOT_AN_ORIGIN)]
                while kept and not kept[0].isdigit():
                    kept.pop(0)
                joined = re.sub(r"[_,]+(?=[_,]|$)", "", "".join(kept))
                if joined:
                    counts["reserved-origin-removed"] += 1
                    text[r] = joined
                else:
                    vo[r] = False
            origins = pa.array(text, pa.string())
    counts["bad-origin"] += int((ok & ~vo).sum())
    ok &= vo
    keep = pa.array(ok)
    t = t.filter(keep)
    origins = origins.filter(keep)
    asns = pc.cast(pc.split_pattern_regex(origins, r"[_,]"), pa.list_(pa.int64()))
    af, hi, lo, plen = af[ok], hi[ok], lo[ok], plen[ok]
    prefix = pc.binary_join_element_wise(t["net"], pc.cast(pa.array(plen), pa.string()), "/")
    table = pa.table(
        {
            "af": pa.array(af, pa.int8()),
            "hi": pa.array(hi, pa.uint64()),
            "lo": pa.array(lo, pa.uint64()),
            "plen": pa.array(plen, pa.int16()),
            "prefix": prefix,
            "asn": pc.list_element(asns, 0),
            "asns": asns,
            "moas": pc.greater(pc.list_value_length(asns), 1),
            "as_set": pc.match_substring(origins, ","),
        }
    )
    # stable order: by family then address then length (makes the stored bytes canonical)
    order = np.lexsort((plen, lo, hi, af))
    table = table.take(pa.array(order))
    dup = _dup_mask(table)
    if dup.any():
        # one prefix on several lines (tables listing each origin of a MOAS prefix on its own
        # line): one row whose origins are all of them, in the order first seen
        head = np.maximum.accumulate(np.where(~dup, np.arange(len(dup)), 0))
        merged = table.column("asns").to_pylist()
        for i in np.flatnonzero(dup).tolist():
            h = int(head[i])
            merged[h] = merged[h] + [a for a in merged[i] if a not in merged[h]]
        counts["moas-lines-merged"] += int(dup.sum())
        asns = pa.array(merged, pa.list_(pa.int64()))
        table = table.set_column(table.column_names.index("asns"), "asns", asns)
        table = table.set_column(table.column_names.index("moas"), "moas", pc.greater(pc.list_value_length(asns), 1))
        table = table.filter(pa.array(~dup))
    return {"prefixes": table}


def _dup_mask(table: pa.Table) -> np.ndarray:
    af = table["af"].to_numpy()
    hi = table["hi"].to_numpy()
    lo = table["lo"].to_numpy()
    plen = table["plen"].to_numpy()
    dup = np.zeros(len(af), dtype=bool)
    if len(af) > 1:
        dup[1:] = (af[1:] == af[:-1]) & (hi[1:] == hi[:-1]) & (lo[1:] == lo[:-1]) & (plen[1:] == plen[:-1])
    return dup


# ---------------------------------------------------------------- RIR delegated


def read_rir(files: Sequence[tuple[str, bytes]], counts: Counter) -> dict[str, pa.Table]:
    """RIR statistics exchange format (``delegated-*`` and ``delegated-*-extended``).

    IPv4 ranges (a start and a count of addresses, not always a power of two) are split
    into CIDR blocks; ``asn`` ranges are kept as ranges.
    """
    pfx: dict[str, list] = {k: [] for k in ("prefix", "registry", "cc", "status", "date", "opaque_id")}
    asn: dict[str, list] = {k: [] for k in ("asn_start", "asn_count", "registry", "cc", "status")}
    for name, data in files:
        seen_header = False
        for lineno, line in enumerate(_lines(name, data), 1):
            if not line.strip() or line.startswith("#"):
                continue
            f = line.rstrip("\n").split("|")
            if not seen_header:
                if not re.match(r"^\d+(\.\d+)?$", f[0]) or len(f) < 6:
                    raise DatasetFormatError(
                        f"{name}:{lineno}: not an RIR delegated file (want a version line "
                        f"'2|registry|serial|...', got {line[:80]!r})"
                    )
                seen_header = True
                continue
            if len(f) >= 6 and f[5] == "summary":
                continue
            if len(f) < 7:
                counts["short-line"] += 1
                continue
            registry, cc, kind, start, value, date, status = f[:7]
            opaque = f[7] if len(f) > 7 else ""
            if status in ("available", "reserved"):
                counts[f"status-{status}"] += 1
                continue
            try:
                if kind == "ipv4":
                    first = ipaddress.IPv4Address(start)
                    last = first + int(value) - 1
                    nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = list(
                        ipaddress.summarize_address_range(first, last))
                elif kind == "ipv6":
                    nets = [ipaddress.IPv6Network(f"{start}/{int(value)}")]
                elif kind == "asn":
                    asn["asn_start"].append(int(start))
                    asn["asn_count"].append(int(value))
                    asn["registry"].append(registry)
                    asn["cc"].append(cc or None)
                    asn["status"].append(status)
                    continue
                else:
                    counts["unknown-type"] += 1
                    continue
            except ValueError:
                counts["bad-range"] += 1
                continue
            for n in nets:
                pfx["prefix"].append(str(n))
                pfx["registry"].append(registry)
                pfx["cc"].append(cc if cc and cc != "ZZ" else None)
                pfx["status"].append(status)
                pfx["date"].append(date or None)
                pfx["opaque_id"].append(opaque or None)
        if not seen_header:
            raise DatasetFormatError(f"{name}: not an RIR delegated file (no version line)")
    prefixes = _with_words(pa.table({k: pa.array(v, pa.string()) for k, v in pfx.items()}), counts)
    asns = pa.table(
        {
            "asn_start": pa.array(asn["asn_start"], pa.int64()),
            "asn_count": pa.array(asn["asn_count"], pa.int64()),
            "registry": pa.array(asn["registry"], pa.string()),
            "cc": pa.array(asn["cc"], pa.string()),
            "status": pa.array(asn["status"], pa.string()),
        }
    )
    asns = asns.sort_by([("asn_start", "ascending"), ("registry", "ascending")])
    return {"prefixes": prefixes, "asns": asns}


def _with_words(table: pa.Table, counts: Counter, column: str = "prefix") -> pa.Table:
    """Add af/hi/lo/plen columns parsed from a CIDR string column; sort canonically."""
    if table.num_rows == 0:
        return table.append_column("af", pa.array([], pa.int8())).append_column(
            "hi", pa.array([], pa.uint64())
        ).append_column("lo", pa.array([], pa.uint64())).append_column("plen", pa.array([], pa.int16()))
    col = table[column].combine_chunks()
    parts = pc.extract_regex(pc.utf8_trim_whitespace(col), r"^(?P<net>[^/]+)/(?P<len>[0-9]{1,3})$")
    net = pc.struct_field(parts, "net")
    plen = pc.fill_null(pc.cast(pc.struct_field(parts, "len"), pa.int64()), -1).to_numpy()
    net = pc.fill_null(net, "")
    af, hi, lo, plen, ok = _prefix_words(net, plen, name=column, counts=counts, reason="bad-prefix")
    # canonical CIDR text (lower case, compressed v6) is rebuilt from the words
    t = table.append_column("af", pa.array(af, pa.int8()))
    t = t.append_column("hi", pa.array(hi, pa.uint64()))
    t = t.append_column("lo", pa.array(lo, pa.uint64()))
    t = t.append_column("plen", pa.array(plen, pa.int16()))
    t = t.filter(pa.array(ok))
    canon = [
        _lpm.format_prefix(a, h, l_, p)
        for a, h, l_, p in zip(
            t["af"].to_pylist(), t["hi"].to_pylist(), t["lo"].to_pylist(), t["plen"].to_pylist(), strict=True
        )
    ]
    t = t.set_column(t.schema.get_field_index(column), column, pa.array(canon, pa.string()))
    return t


# ---------------------------------------------------------------- CAIDA as2org


def read_as2org(files: Sequence[tuple[str, bytes]], counts: Counter) -> dict[str, pa.Table]:
    """CAIDA AS-to-organisation: the pipe format (``# format:aut|...`` / ``# format:org_id|...``
    sections) or the JSONL format (``{"type": "ASN" | "Organization", ...}``)."""
    asn_rows: dict[int, tuple[str | None, str]] = {}
    org_rows: dict[str, tuple[str | None, str | None]] = {}
    for name, data in files:
        section = None
        recognised = False
        for lineno, line in enumerate(_lines(name, data), 1):
            if not line.strip():
                continue
            if line.startswith("#"):
                low = line.replace(" ", "")
                if low.startswith("#format:aut|"):
                    section, recognised = "aut", True
                elif low.startswith("#format:org_id|"):
                    section, recognised = "org", True
                continue
            if line.lstrip().startswith("{"):
                try:
                    obj = orjson.loads(line)
                except orjson.JSONDecodeError as exc:
                    raise DatasetFormatError(f"{name}:{lineno}: invalid JSON: {exc}") from exc
                recognised = True
                typ = obj.get("type")
                if typ == "ASN":
                    try:
                        asn_rows[int(obj["asn"])] = (obj.get("name"), str(obj["organizationId"]))
                    except (KeyError, ValueError, TypeError):
                        counts["bad-asn-record"] += 1
                elif typ == "Organization":
                    try:
                        org_rows[str(obj["organizationId"])] = (obj.get("name"), obj.get("country"))
                    except KeyError:
                        counts["bad-org-record"] += 1
                else:
                    counts["unknown-record-type"] += 1
                continue
            if section is None:
                raise DatasetFormatError(
                    f"{name}:{lineno}: not a CAIDA as2org file (no '# format:' header before data)"
                )
            f = line.split("|")
            if section == "aut":
                if len(f) < 4 or not f[0].strip().isdigit():
                    counts["bad-asn-record"] += 1
                    continue
                asn_rows[int(f[0])] = (f[2] or None, f[3])
            else:
                if len(f) < 4:
                    counts["bad-org-record"] += 1
                    continue
                org_rows[f[0]] = (f[2] or None, f[3] or None)
        if not recognised:
            raise DatasetFormatError(f"{name}: not a CAIDA as2org file (no format header or JSON records)")
    asn_sorted = sorted(asn_rows)
    asns = pa.table(
        {
            "asn": pa.array(asn_sorted, pa.int64()),
            "aut_name": pa.array([asn_rows[a][0] for a in asn_sorted], pa.string()),
            "org_id": pa.array([asn_rows[a][1] for a in asn_sorted], pa.string()),
        }
    )
    org_sorted = sorted(org_rows)
    orgs = pa.table(
        {
            "org_id": pa.array(org_sorted, pa.string()),
            "org_name": pa.array([org_rows[o][0] for o in org_sorted], pa.string()),
            "country": pa.array([org_rows[o][1] for o in org_sorted], pa.string()),
        }
    )
    missing = set(asn_rows[a][1] for a in asn_sorted) - set(org_rows)
    if missing:
        counts["asn-with-unknown-org"] += sum(1 for a in asn_sorted if asn_rows[a][1] in missing)
    return {"asns": asns, "orgs": orgs}


# ---------------------------------------------------------------- PeeringDB

#: The PeeringDB object types kept, and the fields kept of each.
PDB_FIELDS: dict[str, dict[str, pa.DataType]] = {
    "ix": {"id": pa.int64(), "org_id": pa.int64(), "name": pa.string(), "name_long": pa.string(),
           "city": pa.string(), "country": pa.string(), "region_continent": pa.string()},
    "ixlan": {"id": pa.int64(), "ix_id": pa.int64(), "name": pa.string()},
    "ixpfx": {"id": pa.int64(), "ixlan_id": pa.int64(), "protocol": pa.string(), "prefix": pa.string()},
    "netixlan": {"id": pa.int64(), "net_id": pa.int64(), "ix_id": pa.int64(), "ixlan_id": pa.int64(),
                 "asn": pa.int64(), "ipaddr4": pa.string(), "ipaddr6": pa.string()},
    "net": {"id": pa.int64(), "org_id": pa.int64(), "asn": pa.int64(), "name": pa.string()},
    "org": {"id": pa.int64(), "name": pa.string(), "country": pa.string(), "city": pa.string()},
    "fac": {"id": pa.int64(), "org_id": pa.int64(), "name": pa.string(), "city": pa.string(),
            "country": pa.string(), "latitude": pa.float64(), "longitude": pa.float64()},
    "ixfac": {"id": pa.int64(), "ix_id": pa.int64(), "fac_id": pa.int64()},
    "netfac": {"id": pa.int64(), "net_id": pa.int64(), "fac_id": pa.int64(), "local_asn": pa.int64()},
}

#: Field sets that identify an object type when the file name does not.
_PDB_SIGNATURE = [
    ("ixpfx", {"ixlan_id", "prefix"}),
    ("netixlan", {"ipaddr4", "net_id"}),
    ("ixfac", {"ix_id", "fac_id"}),
    ("netfac", {"net_id", "fac_id"}),
    ("ixlan", {"ix_id", "mtu"}),
    ("net", {"asn", "info_type"}),
    ("fac", {"clli"}),
    ("ix", {"proto_unicast"}),
    ("org", {"address1"}),
]


_PDB_OTHER_TYPES = {"carrier", "carrierfac", "campus", "poc", "as_set"}


def _pdb_type(name: str, rows: list) -> str | None:
    base = re.sub(r".*/", "", name).lower()
    stem = re.split(r"[-_.]", base.removeprefix("prod-").removeprefix("peeringdb_"))[0]
    if stem in PDB_FIELDS or stem in _PDB_OTHER_TYPES:
        return stem
    for row in rows[:5]:
        if isinstance(row, dict):
            keys = set(row)
            for typ, sig in _PDB_SIGNATURE:
                if sig <= keys:
                    return typ
    return None


def json_object(name: str, data: bytes, what: str) -> dict:
    """The JSON object a file holds, else one error naming the file and what it should be."""
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise DatasetFormatError(f"{name}: not {what} (not JSON: {exc})") from exc
    if not isinstance(doc, dict):
        raise DatasetFormatError(f"{name}: not {what} (the top level is not a JSON object)")
    return doc


def read_peeringdb(files: Sequence[tuple[str, bytes]], counts: Counter) -> dict[str, pa.Table]:
    """PeeringDB API v2 responses (``{"data": [...]}``, one object type per file, type from
    the file name such as ``ixpfx-page-1.json`` or from the fields) or a dump
    (``{"ix": {"data": [...]}, "ixpfx": {...}, ...}``). Rows with ``status`` other than
    ``ok`` are set aside; duplicate ids keep the latest ``updated``."""
    objs: dict[str, dict[int, dict]] = {k: {} for k in PDB_FIELDS}
    for name, data in files:
        doc = json_object(name, data, "a PeeringDB API response")
        if "data" in doc:
            if not isinstance(doc["data"], list):
                raise DatasetFormatError(f"{name}: PeeringDB 'data' is not a list")
            typ = _pdb_type(name, doc["data"])
            if typ not in PDB_FIELDS:
                # other object types (carrier, campus, poc...) are not used by pathexp
                counts[f"unused-object-type-{typ or 'unknown'}"] += len(doc["data"])
                continue
            groups = [(typ, doc["data"])]
        else:
            groups = [
                (k, v["data"]) for k, v in doc.items()
                if k in PDB_FIELDS and isinstance(v, dict) and isinstance(v.get("data"), list)
            ]
            if not groups:
                raise DatasetFormatError(
                    f"{name}: not a PeeringDB API response or dump (no 'data' list, no object types)"
                )
        for typ, rows in groups:
            store = objs[typ]
            for row in rows:
                if not isinstance(row, dict) or not isinstance(row.get("id"), int):
                    counts[f"{typ}-bad-row"] += 1
                    continue
                if row.get("status", "ok") != "ok":
                    counts[f"{typ}-status-{row.get('status')}"] += 1
                    continue
                old = store.get(row["id"])
                if old is not None:
                    counts[f"{typ}-duplicate-id"] += 1
                    if str(old.get("updated", "")) > str(row.get("updated", "")):
                        continue
                store[row["id"]] = row
    out = {}
    for typ, fields in PDB_FIELDS.items():
        rows = [objs[typ][i] for i in sorted(objs[typ])]
        cols = {}
        for f, dt in fields.items():
            vals = [r.get(f) for r in rows]
            if pa.types.is_string(dt):
                vals = [None if v in (None, "") else str(v) for v in vals]
            elif pa.types.is_floating(dt):
                limit = 90.0 if f == "latitude" else 180.0
                vals = [_coordinate(v, limit, counts, f"{typ}-bad-coordinates") for v in vals]
            else:
                ints = [v if isinstance(v, int) and not isinstance(v, bool) else None for v in vals]
                counts[f"{typ}-bad-{f}"] += sum(1 for v, i in zip(vals, ints, strict=True)
                                                if v is not None and i is None)
                if f in ("asn", "local_asn"):
                    out_of_range = [i is not None and not 0 < i < 1 << 32 for i in ints]
                    counts[f"{typ}-bad-{f}"] += sum(out_of_range)
                    ints = [None if o else i for i, o in zip(ints, out_of_range, strict=True)]
                elif f == "id" or f.endswith("_id"):
                    ints = [i if i is None or -(1 << 63) <= i < 1 << 63 else None for i in ints]
                vals = ints
            cols[f] = pa.array(vals, dt)
        out[typ] = pa.table(cols, schema=pa.schema([pa.field(f, dt) for f, dt in fields.items()]))
    return out


# ---------------------------------------------------------------- CAIDA IXP dataset


def read_caida_ixp(files: Sequence[tuple[str, bytes]], counts: Counter) -> dict[str, pa.Table]:
    """CAIDA IXP dataset ``ixs_YYYYMM.jsonl`` (``#`` header lines, one IXP per line)."""
    ixs: dict[str, list] = {k: [] for k in ("ix_id", "pdb_id", "pch_id", "name", "city", "country", "latitude", "longitude")}
    pfx: dict[str, list] = {"ix_id": [], "prefix": []}
    for name, data in files:
        any_row = False
        for lineno, line in enumerate(_lines(name, data), 1):
            if not line.strip() or line.startswith("#"):
                continue
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise DatasetFormatError(f"{name}:{lineno}: not CAIDA IXP jsonl: {exc}") from exc
            if not isinstance(obj, dict) or "ix_id" not in obj or "prefixes" not in obj:
                raise DatasetFormatError(
                    f"{name}:{lineno}: not a CAIDA IXP record (no 'ix_id'/'prefixes')"
                )
            any_row = True
            ix_id = int(obj["ix_id"])
            for k in ixs:
                v = obj.get(k)
                if isinstance(v, list):  # some records list several cities / coordinates
                    v = v[0] if v else None
                ixs[k].append(v)
            prefixes = obj.get("prefixes") or {}
            for fam in ("ipv4", "ipv6"):
                for p in prefixes.get(fam) or []:
                    pfx["ix_id"].append(ix_id)
                    pfx["prefix"].append(p)
        if not any_row:
            raise DatasetFormatError(f"{name}: no CAIDA IXP records")
    ixt = pa.table(
        {
            "ix_id": pa.array(ixs["ix_id"], pa.int64()),
            "pdb_id": pa.array(ixs["pdb_id"], pa.int64()),
            "pch_id": pa.array(ixs["pch_id"], pa.int64()),
            "name": pa.array(ixs["name"], pa.string()),
            "city": pa.array(ixs["city"], pa.string()),
            "country": pa.array(ixs["country"], pa.string()),
            "latitude": pa.array([_coordinate(v, 90.0, counts, "bad-coordinates") for v in ixs["latitude"]],
                                 pa.float64()),
            "longitude": pa.array([_coordinate(v, 180.0, counts, "bad-coordinates") for v in ixs["longitude"]],
                                  pa.float64()),
        }
    ).sort_by("ix_id")
    pt = _with_words(pa.table({"ix_id": pa.array(pfx["ix_id"], pa.int64()),
                               "prefix": pa.array(pfx["prefix"], pa.string())}), counts)
    pt = pt.sort_by([("ix_id", "ascending"), ("prefix", "ascending")])
    return {"ixs": ixt, "prefixes": pt}


# ---------------------------------------------------------------- PCH


def _csv_rows(name: str, data: bytes) -> tuple[list[str], list[list[str]]]:
    import csv

    text = data.decode("utf-8", errors="replace")
    rows = list(csv.reader(io.StringIO(text), skipinitialspace=True))
    rows = [r for r in rows if r]
    if not rows:
        raise DatasetFormatError(f"{name}: empty CSV file")
    return [h.strip().lower() for h in rows[0]], rows[1:]


def read_pch_subnets(files: Sequence[tuple[str, bytes]], counts: Counter) -> dict[str, pa.Table]:
    """PCH IXP peering LANs. Accepts the PCH directory exports ``ixp_subnets.csv``
    (``exchange_point_id, short_name, status, version, ..., subnet, ...``) with the optional
    ``ixp_exchange.csv`` (``exchange_point_id, region, country, city, long_name, ...``) in
    the same import, and the ``Prefix,Name`` lists of the PCH API (``ix_ip4.csv``)."""
    sub: dict[str, list] = {"pch_id": [], "name": [], "prefix": []}
    exch: dict[int, tuple[str | None, str | None, str | None]] = {}
    for name, data in files:
        header, rows = _csv_rows(name, data)
        if "subnet" in header and "exchange_point_id" in header:
            i_id, i_nm, i_sub = header.index("exchange_point_id"), header.index("short_name"), header.index("subnet")
            i_st = header.index("status") if "status" in header else None
            for r in rows:
                if len(r) <= max(i_id, i_nm, i_sub):
                    counts["short-row"] += 1
                    continue
                if i_st is not None and r[i_st].strip().lower() not in ("active", ""):
                    counts["inactive"] += 1
                    continue
                sub["pch_id"].append(int(r[i_id]) if r[i_id].strip().isdigit() else None)
                sub["name"].append(r[i_nm].strip() or None)
                sub["prefix"].append(r[i_sub].strip())
        elif "exchange_point_id" in header and "city" in header:
            i_id, i_cc, i_city = header.index("exchange_point_id"), header.index("country"), header.index("city")
            i_ln = header.index("long_name") if "long_name" in header else None
            for r in rows:
                if len(r) <= max(i_id, i_cc, i_city) or not r[i_id].strip().isdigit():
                    counts["short-row"] += 1
                    continue
                exch[int(r[i_id])] = (
                    r[i_city].strip() or None, r[i_cc].strip() or None,
                    (r[i_ln].strip() or None) if i_ln is not None and len(r) > i_ln else None,
                )
        elif header[:2] == ["prefix", "name"]:
            for r in rows:
                if len(r) < 2:
                    counts["short-row"] += 1
                    continue
                sub["pch_id"].append(None)
                sub["name"].append(r[1].strip() or None)
                sub["prefix"].append(r[0].strip())
        else:
            raise DatasetFormatError(
                f"{name}:1: not a PCH subnet file (want 'exchange_point_id,...,subnet' or 'Prefix,Name' header, got {header[:4]})"
            )
    t = pa.table({"pch_id": pa.array(sub["pch_id"], pa.int64()), "name": pa.array(sub["name"], pa.string()),
                  "prefix": pa.array(sub["prefix"], pa.string())})
    city = [exch.get(i, (None, None, None))[0] if i is not None else None for i in sub["pch_id"]]
    country = [exch.get(i, (None, None, None))[1] if i is not None else None for i in sub["pch_id"]]
    country = [_country_code(c) for c in country]
    t = t.append_column("city", pa.array(city, pa.string())).append_column("country", pa.array(country, pa.string()))
    t = _with_words(t, counts)
    t = t.sort_by([("af", "ascending"), ("hi", "ascending"), ("lo", "ascending"), ("plen", "ascending"), ("name", "ascending")])
    return {"prefixes": t}


def _country_code(c: str | None) -> str | None:
    """PCH exports spell countries out; keep two-letter codes, map the common long names."""
    if c is None:
        return None
    if len(c) == 2 and c.isalpha():
        return c.upper()
    return _COUNTRY_NAMES.get(c.strip().lower())


#: A few long country names used by PCH exports (the IXP country is also taken from
#: PeeringDB / CAIDA when those know the IXP).
_COUNTRY_NAMES = {
    "united states": "US", "united states of america": "US", "china": "CN", "hong kong": "HK",
    "united kingdom": "GB", "germany": "DE", "netherlands": "NL", "france": "FR", "japan": "JP",
    "singapore": "SG", "united arab emirates": "AE", "russia": "RU", "russian federation": "RU",
    "canada": "CA", "brazil": "BR", "south africa": "ZA", "kenya": "KE", "egypt": "EG",
    "lebanon": "LB", "jordan": "JO", "saudi arabia": "SA", "qatar": "QA", "kuwait": "KW",
    "bahrain": "BH", "oman": "OM", "iraq": "IQ", "iran": "IR", "turkey": "TR", "italy": "IT",
    "spain": "ES", "sweden": "SE", "switzerland": "CH", "austria": "AT", "australia": "AU",
    "india": "IN", "korea": "KR", "south korea": "KR", "taiwan": "TW", "nigeria": "NG",
}


def read_pch_membership(files: Sequence[tuple[str, bytes]], counts: Counter) -> dict[str, pa.Table]:
    """PCH IXP member interfaces ``subnet, ip, fqdn, asn, organization``."""
    rows_out: dict[str, list] = {"subnet": [], "ip": [], "asn": [], "organization": []}
    for name, data in files:
        header, rows = _csv_rows(name, data)
        if "ip" not in header or "asn" not in header:
            raise DatasetFormatError(
                f"{name}:1: not a PCH membership file (want 'subnet, ip, fqdn, asn, organization', got {header[:5]})"
            )
        i_ip, i_asn = header.index("ip"), header.index("asn")
        i_sub = header.index("subnet") if "subnet" in header else None
        i_org = header.index("organization") if "organization" in header else None
        for r in rows:
            if len(r) <= max(i_ip, i_asn):
                counts["short-row"] += 1
                continue
            a = r[i_asn].strip()
            if not a.isdigit():
                counts["no-asn"] += 1
                continue
            rows_out["subnet"].append(r[i_sub].strip() if i_sub is not None else None)
            rows_out["ip"].append(r[i_ip].strip())
            rows_out["asn"].append(int(a))
            rows_out["organization"].append((r[i_org].strip() or None) if i_org is not None and len(r) > i_org else None)
    t = pa.table({"subnet": pa.array(rows_out["subnet"], pa.string()), "ip": pa.array(rows_out["ip"], pa.string()),
                  "asn": pa.array(rows_out["asn"], pa.int64()), "organization": pa.array(rows_out["organization"], pa.string())})
    return {"members": t}


# ---------------------------------------------------------------- iptoasn ip2country

#: iptoasn writes these in the country column of ranges it has no country for
#: (``None`` for space not routed, ``Unknown`` for routed space without a registry
#: country); such ranges locate nothing and are set aside as ``no-country``.
IP2COUNTRY_NO_COUNTRY = ("None", "Unknown", "ZZ", "")

_CC_RE = r"^[A-Z]{2}$"


def _skip_counter(counts: Counter, reason: str) -> Callable[[object], str]:
    def handler(_row: object) -> str:
        counts[reason] += 1
        return "skip"

    return handler


def read_ip2country(files: Sequence[tuple[str, bytes]], counts: Counter) -> dict[str, pa.Table]:
    """iptoasn.com ``ip2country-v4.tsv`` / ``ip2country-v6.tsv``: ``range_start<TAB>range_end<TAB>country``.

    Ranges are inclusive and may have any length. Rows whose country is one of
    :data:`IP2COUNTRY_NO_COUNTRY` are set aside as ``no-country``; a line with the wrong
    number of fields as ``bad-line``; an unparsable address (or start and end of different
    families) as ``bad-address``; ``end < start`` as ``bad-range``; a country that is not
    two capital letters as ``bad-country``. Real quirk: the file nests narrower ranges
    inside wider ones (12,631 v4 and 4,702 v6 in the 2024-11-07 files); all are kept, and
    lookups give the narrowest covering range (:func:`analysis._lpm.flatten_ranges`).
    """
    parts = []
    for name, data in files:
        if not data.strip():
            raise DatasetFormatError(f"{name}: empty ip2country file")
        first = data.lstrip().split(b"\n", 1)[0]
        if first.count(b"\t") != 2:
            raise DatasetFormatError(
                f"{name}:1: not an iptoasn ip2country file (want 'range_start<TAB>range_end<TAB>country', got {first[:80]!r})"
            )
        data = utf8_lines_only(data, counts)
        try:
            t = pacsv.read_csv(
                io.BytesIO(data),
                read_options=pacsv.ReadOptions(column_names=["start", "end", "cc"]),
                parse_options=pacsv.ParseOptions(
                    delimiter="\t", quote_char=False, invalid_row_handler=_skip_counter(counts, "bad-line")
                ),
                convert_options=pacsv.ConvertOptions(
                    column_types={"start": pa.string(), "end": pa.string(), "cc": pa.string()},
                    strings_can_be_null=False,
                ),
            )
        except pa.ArrowInvalid as exc:
            raise DatasetFormatError(f"{name}: not an iptoasn ip2country file: {exc}") from exc
        parts.append(t)
    t = pa.concat_tables(parts)
    cc = pc.utf8_trim_whitespace(t["cc"].combine_chunks())
    no_cc = pc.is_in(cc, value_set=pa.array(IP2COUNTRY_NO_COUNTRY, pa.string())).to_numpy(zero_copy_only=False)
    counts["no-country"] += int(no_cc.sum())
    good_cc = pc.match_substring_regex(cc, _CC_RE).to_numpy(zero_copy_only=False) & ~no_cc
    bad_cc = ~no_cc & ~good_cc
    if bad_cc.any():
        counts["bad-country"] += int(bad_cc.sum())
    saf, shi, slo, sok = _lpm.parse_addresses(pc.utf8_trim_whitespace(t["start"].combine_chunks()))
    eaf, ehi, elo, eok = _lpm.parse_addresses(pc.utf8_trim_whitespace(t["end"].combine_chunks()))
    addr_ok = sok & eok & (saf == eaf)
    bad_addr = good_cc & ~addr_ok
    if bad_addr.any():
        counts["bad-address"] += int(bad_addr.sum())
    inverted = good_cc & addr_ok & ((ehi < shi) | ((ehi == shi) & (elo < slo)))
    if inverted.any():
        counts["bad-range"] += int(inverted.sum())
    keep = good_cc & addr_ok & ~inverted
    rows = np.flatnonzero(keep)
    order = rows[np.lexsort((elo[rows], ehi[rows], slo[rows], shi[rows], saf[rows]))]
    af, shi, slo, ehi, elo = saf[order], shi[order], slo[order], ehi[order], elo[order]
    take = pa.array(order, pa.int64())
    table = pa.table(
        {
            "af": pa.array(af, pa.int8()),
            "start_hi": pa.array(shi, pa.uint64()),
            "start_lo": pa.array(slo, pa.uint64()),
            "end_hi": pa.array(ehi, pa.uint64()),
            "end_lo": pa.array(elo, pa.uint64()),
            "start": pc.utf8_trim_whitespace(t["start"].combine_chunks().take(take)),
            "end": pc.utf8_trim_whitespace(t["end"].combine_chunks().take(take)),
            "cc": cc.take(take),
        }
    )
    return {"ranges": table}


# ---------------------------------------------------------------- RIPE IPmap

#: Column names of a headerless RIPE IPmap geolocation export (the raclette cache layout:
#: ``ip/32, locid, city, state, country, cc, cc3, lat, lon, score``).
IPMAP_COLUMNS = ("ip", "locid", "city", "state", "country", "cc", "cc3", "lat", "lon", "score")

#: Header names accepted for each field of an IPmap CSV that has a header line.
_IPMAP_ALIASES = {
    "ip": ("ip", "address", "ip_address", "ipaddress", "prefix"),
    "city": ("city", "city_name", "cityname"),
    "cc": ("cc", "country_code", "countrycode", "country_code_alpha2"),
    "lat": ("lat", "latitude"),
    "lon": ("lon", "lng", "long", "longitude"),
    "score": ("score",),
}


def read_ipmap(files: Sequence[tuple[str, bytes]], counts: Counter) -> dict[str, pa.Table]:
    """RIPE IPmap router geolocations, CSV: ``ip[/32|/128], ..., city, ..., cc, ..., lat, lon, score``.

    Either the headerless ten-column layout of :data:`IPMAP_COLUMNS` or any CSV with a
    header naming ``ip``, ``city``, ``cc`` (or ``country_code``), ``lat``, ``lon`` and
    ``score``. Set aside, by reason: ``bad-line`` (wrong number of fields), ``bad-address``,
    ``not-a-host`` (a prefix shorter than /32 or /128), ``bad-coordinates`` (one of lat/lon
    missing, unparsable or out of range), ``duplicate-address`` (the highest score is kept, then the first line).
    """
    cols: dict[str, list[pa.Array]] = {k: [] for k in ("ip", "city", "cc", "lat", "lon", "score")}
    for name, data in files:
        if not data.strip():
            raise DatasetFormatError(f"{name}: empty IPmap file")
        first = next(csv_line for csv_line in data.splitlines() if csv_line.strip())
        head = [h.strip().strip('"').lower() for h in first.decode("utf-8", "replace").split(",")]
        has_header = ("/" not in head[0] and ":" not in head[0] and not head[0][:1].isdigit())
        if has_header:
            idx = {k: next((head.index(a) for a in al if a in head), None) for k, al in _IPMAP_ALIASES.items()}
            missing = [k for k, i in idx.items() if i is None and k != "score"]
            if missing:
                raise DatasetFormatError(
                    f"{name}:1: not a RIPE IPmap CSV (header lacks {missing}; got {head[:10]})"
                )
            names = None
        else:
            if len(head) < len(IPMAP_COLUMNS):
                raise DatasetFormatError(
                    f"{name}:1: not a RIPE IPmap CSV (want {len(IPMAP_COLUMNS)} fields "
                    f"{','.join(IPMAP_COLUMNS)} or a header line, got {len(head)}: {first[:80]!r})"
                )
            idx = {k: IPMAP_COLUMNS.index(k) for k in _IPMAP_ALIASES}
            names = list(IPMAP_COLUMNS)
        data = utf8_lines_only(data, counts)
        try:
            t = pacsv.read_csv(
                io.BytesIO(data),
                read_options=pacsv.ReadOptions(column_names=names, autogenerate_column_names=False),
                parse_options=pacsv.ParseOptions(invalid_row_handler=_skip_counter(counts, "bad-line")),
                # every column as text, and no null spellings: "NA" is Namibia, not a null
                convert_options=pacsv.ConvertOptions(
                    column_types=dict.fromkeys(names or _raw_header(first), pa.string()),
                    null_values=[], strings_can_be_null=False, quoted_strings_can_be_null=False),
            )
        except pa.ArrowInvalid as exc:
            raise DatasetFormatError(f"{name}: not a RIPE IPmap CSV: {exc}") from exc
        for k, i in idx.items():
            if i is None:
                cols[k].append(pa.nulls(t.num_rows, pa.string()))
            else:
                cols[k].append(pc.cast(t.column(i).combine_chunks(), pa.string()))
    col = {k: pa.concat_arrays(v) for k, v in cols.items()}
    parts = pc.extract_regex(pc.utf8_trim_whitespace(pc.fill_null(col["ip"], "")),
                             r"^(?P<addr>[^/]+)(?:/(?P<len>[0-9]{1,3}))?$")
    addr = pc.fill_null(pc.struct_field(parts, "addr"), "")
    plen = pc.struct_field(parts, "len")
    plen = pc.if_else(pc.equal(pc.fill_null(plen, ""), ""), None, plen)  # no "/len": a host
    af, hi, lo, ok = _lpm.parse_addresses(addr)
    counts["bad-address"] += int((~ok).sum())
    host_len = np.where(af == 4, 32, 128)
    plen_np = pc.fill_null(pc.cast(plen, pa.int64()), -1).to_numpy(zero_copy_only=False)
    host = (plen_np == -1) | (plen_np == host_len)
    counts["not-a-host"] += int((ok & ~host).sum())
    ok &= host
    lat = pc.cast(pc.if_else(pc.match_substring_regex(pc.fill_null(col["lat"], ""), r"^-?[0-9.]+$"), col["lat"], None),
                  pa.float64()).to_numpy(zero_copy_only=False)
    lon = pc.cast(pc.if_else(pc.match_substring_regex(pc.fill_null(col["lon"], ""), r"^-?[0-9.]+$"), col["lon"], None),
                  pa.float64()).to_numpy(zero_copy_only=False)
    given = [pc.greater(pc.utf8_length(pc.utf8_trim_whitespace(pc.fill_null(col[k], ""))), 0)
             .to_numpy(zero_copy_only=False) for k in ("lat", "lon")]
    # a country without a point is still kept; a point that is not two numbers is not
    no_coords = np.isnan(lat) & np.isnan(lon) & ~given[0] & ~given[1]
    with np.errstate(invalid="ignore"):
        coord_ok = no_coords | ((np.abs(lat) <= 90) & (np.abs(lon) <= 180))
    counts["bad-coordinates"] += int((ok & ~coord_ok).sum())
    ok &= coord_ok
    score = pc.cast(pc.if_else(pc.match_substring_regex(pc.fill_null(col["score"], ""), r"^-?[0-9]+(\.[0-9]*)?$"),
                               col["score"], None), pa.float64()).to_numpy(zero_copy_only=False)
    rows = np.flatnonzero(ok)
    sc = np.nan_to_num(score[rows], nan=-np.inf)
    order = rows[np.lexsort((rows, -sc, lo[rows], hi[rows], af[rows]))]
    lead = np.ones(order.size, bool)
    lead[1:] = (af[order][1:] != af[order][:-1]) | (hi[order][1:] != hi[order][:-1]) | (lo[order][1:] != lo[order][:-1])
    if (~lead).any():
        counts["duplicate-address"] += int((~lead).sum())
    order = order[lead]
    take = pa.array(order, pa.int64())
    cc = pc.utf8_upper(pc.utf8_trim_whitespace(col["cc"].take(take)))
    cc = pc.if_else(pc.fill_null(pc.match_substring_regex(cc, _CC_RE), False), cc, None)
    canon = [str(ipaddress.IPv6Address((int(h) << 64) | int(lw)) if a == 6 else ipaddress.IPv4Address(int(lw)))
             for a, h, lw in zip(af[order].tolist(), hi[order].tolist(), lo[order].tolist(), strict=True)]
    table = pa.table(
        {
            "af": pa.array(af[order], pa.int8()),
            "hi": pa.array(hi[order], pa.uint64()),
            "lo": pa.array(lo[order], pa.uint64()),
            "ip": pa.array(canon, pa.string()),
            "city": pc.if_else(pc.equal(pc.utf8_trim_whitespace(col["city"].take(take)), ""), None,
                               col["city"].take(take)),
            "cc": cc,
            "lat": pa.array(lat[order], pa.float64(), from_pandas=True),
            "lon": pa.array(lon[order], pa.float64(), from_pandas=True),
            "score": pa.array(score[order], pa.float64(), from_pandas=True),
        }
    )
    return {"addresses": table}


def _raw_header(line: bytes) -> list[str]:
    import csv

    return next(csv.reader([line.decode("utf-8", "replace")]))


READERS: dict[str, Reader] = {
    "pfx2as": read_pfx2as,
    "peeringdb": read_peeringdb,
    "caida-ixp": read_caida_ixp,
    "pch-subnets": read_pch_subnets,
    "pch-membership": read_pch_membership,
    "as2org": read_as2org,
    "rir-delegated": read_rir,
    "ip2country": read_ip2country,
    "ipmap": read_ipmap,
}

KINDS = tuple(READERS)
