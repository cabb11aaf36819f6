"""Readers for AS-level reference kinds: CAIDA ``as-rel``, WHOIS ``as-siblings``, ``asnames``.

Same contract as :mod:`analysis._readers`: ``reader(files, counts) -> {table: Table}``,
where ``files`` are ``(name, bytes)`` pairs (already decompressed, or compressed: they are
decompressed here), every record set aside is counted in ``counts`` by reason, and a file
that is not of the declared kind raises :class:`~analysis.errors.DatasetFormatError` naming
the file and line.

* ``as-rel`` -> table ``links``: ``provider, customer, rel, source`` (int64, int64, int8,
  string). CAIDA serial-1 lines are ``a|b|rel``, serial-2 lines ``a|b|rel|source``;
  ``rel`` is ``-1`` (a is a provider of b) or ``0`` (peers; then a < b after the reader).
  ``#`` lines are comments. Serial-1 rows get ``source`` null.
* ``as-siblings`` -> table ``groups``: ``group, asn`` (int64, int64). One group per line,
  ASNs separated by blanks (Giotsas' SiblingASesCollector WHOIS output). A group is only
  "same organisation" evidence for router ownership, never family membership: the 2020-01
  file lumps China Telecom and China Unicom (4134, 4809, 4837, 9929) into one group.
* ``asnames`` -> table ``names``: ``asn, name`` (int64, string), sorted by ASN.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from analysis._readers import decompress, json_object
from analysis.errors import DatasetFormatError

__all__ = ["READERS_REL", "read_as_rel", "read_as_siblings"]

#: CAIDA relationship codes: -1 provider-to-customer, 0 peer-to-peer.
REL_P2C = -1
REL_P2P = 0
_MAX_ASN = 2**32 - 1
#: Lines at the top of a file that may be unparseable before we call it the wrong kind.
_SNIFF_LINES = 50
_REL_RE = re.compile(r"^(\d+)\|(\d+)\|(-?\d+)(?:\|([A-Za-z0-9_,-]*))?$")


def _text(name: str, data: bytes, counts: Counter) -> list[str]:
    """The file's text lines; lines that are not UTF-8 are set aside as ``bad-line``."""
    from analysis._readers import utf8_lines_only

    data = utf8_lines_only(decompress(data), counts)
    if not data.strip():
        raise DatasetFormatError(f"{name}: no text line in the file")
    return data.decode("utf-8").splitlines()


def read_as_rel(files: Sequence[tuple[str, bytes]], counts: Counter) -> dict[str, pa.Table]:
    """CAIDA AS relationships, serial-1 (``a|b|rel``) or serial-2 (``a|b|rel|source``).

    Set aside, by reason: ``bad-line`` (not ``a|b|rel[|source]``), ``bad-asn`` (out of
    range or self-link), ``unknown-rel`` (a code other than -1/0), ``duplicate-link``
    (the same unordered pair again; the first line wins).
    """
    prov: list[int] = []
    cust: list[int] = []
    rel: list[int] = []
    src: list[str | None] = []
    seen: set[tuple[int, int]] = set()
    for name, data in files:
        lines = _text(name, data, counts)
        good = 0
        for i, line in enumerate(lines, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            m = _REL_RE.match(line)
            if m is None:
                if good == 0 and i <= _SNIFF_LINES:
                    raise DatasetFormatError(
                        f"{name}:{i}: not a CAIDA as-rel file (want 'a|b|rel[|source]', got {line[:80]!r})"
                    )
                counts["bad-line"] += 1
                continue
            a, b, r = int(m[1]), int(m[2]), int(m[3])
            if not (0 < a <= _MAX_ASN and 0 < b <= _MAX_ASN) or a == b:
                counts["bad-asn"] += 1
                continue
            if r not in (REL_P2C, REL_P2P):
                counts["unknown-rel"] += 1
                continue
            good += 1
            if r == REL_P2P and a > b:
                a, b = b, a
            key = (min(a, b), max(a, b))
            if key in seen:
                counts["duplicate-link"] += 1
                continue
            seen.add(key)
            prov.append(a)
            cust.append(b)
            rel.append(r)
            src.append(m[4] if m[4] else None)
        if good == 0:
            raise DatasetFormatError(f"{name}: no 'a|b|rel' line: not a CAIDA as-rel file")
    order = np.lexsort((np.asarray(cust, np.int64), np.asarray(prov, np.int64)))
    table = pa.table(
        {
            "provider": pa.array(np.asarray(prov, np.int64)[order], pa.int64()),
            "customer": pa.array(np.asarray(cust, np.int64)[order], pa.int64()),
            "rel": pa.array(np.asarray(rel, np.int8)[order], pa.int8()),
            "source": pa.array(src, pa.string()).take(pa.array(order, pa.int64())),
        }
    )
    return {"links": table}


def read_as_siblings(files: Sequence[tuple[str, bytes]], counts: Counter) -> dict[str, pa.Table]:
    """WHOIS sibling groups: one group per line, ASNs separated by blanks.

    Set aside, by reason: ``bad-line`` (a token that is not an ASN in 1..2^32-1: the whole
    line, since a damaged group could join unrelated networks), ``singleton-group`` (fewer than two distinct ASNs), ``duplicate-asn`` (an
    ASN repeated within its group). ``#`` lines are comments.
    """
    groups: list[int] = []
    asns: list[int] = []
    gid = 0
    for name, data in files:
        lines = _text(name, data, counts)
        good = 0
        for i, line in enumerate(lines, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            toks = line.replace(",", " ").split()
            members: list[int] = []
            bad = 0
            for t in toks:
                if t.upper().startswith("AS"):
                    t = t[2:]
                if t.isdigit() and 0 < int(t) <= _MAX_ASN:
                    members.append(int(t))
                else:
                    bad += 1
            if bad == len(toks):
                if good == 0 and i <= _SNIFF_LINES:
                    raise DatasetFormatError(
                        f"{name}:{i}: not an AS-siblings file (want blank-separated ASNs, got {line[:80]!r})"
                    )
            if bad:  # a token that is not an ASN: the line is damaged, none of it is trusted
                counts["bad-line"] += 1
                continue
            uniq = list(dict.fromkeys(members))
            if len(uniq) < len(members):
                counts["duplicate-asn"] += len(members) - len(uniq)
            if len(uniq) < 2:
                counts["singleton-group"] += 1
                continue
            good += 1
            groups.extend([gid] * len(uniq))
            asns.extend(uniq)
            gid += 1
        if good == 0:
            raise DatasetFormatError(f"{name}: no sibling group: not an AS-siblings file")
    return {"groups": pa.table({"group": pa.array(groups, pa.int64()), "asn": pa.array(asns, pa.int64())})}


def read_asnames(files: Sequence[tuple[str, bytes]], counts: Counter) -> dict[str, pa.Table]:
    """AS names: pyasn's ``asnames.json`` (``{"asn": "name"}``) or an ``asn<TAB>name`` table
    (the AS-Prefix ``asn_names`` TSV, whose names read ``AS<n> - name``: that prefix, naming
    the same AS, is dropped).

    Set aside, by reason: ``bad-asn`` (not an ASN in 1..2^32-1), ``bad-line`` (not
    ``asn<TAB>name``, or not UTF-8), ``empty-name``, ``duplicate-asn`` (the first name kept).
    """
    names: dict[int, str] = {}

    def add(asn: object, name: object) -> None:
        text = str(asn).strip()
        if not text.isdigit() or not 0 < int(text) <= _MAX_ASN:
            counts["bad-asn"] += 1
            return
        label = str(name or "").strip()
        if label.startswith(f"AS{int(text)} - "):  # "AS23 - NASA": the number is shown beside it anyway
            label = label[len(f"AS{int(text)} - "):].strip()
        if not label:
            counts["empty-name"] += 1
        elif int(text) in names:
            counts["duplicate-asn"] += 1
        else:
            names[int(text)] = label

    for name, data in files:
        head = data.lstrip()[:1]
        if head == b"{":
            for asn, label in json_object(name, data, "an AS-names JSON object (asn -> name)").items():
                add(asn, label)
            continue
        good = 0
        for i, line in enumerate(_text(name, data, counts), 1):
            if not line.strip() or line.startswith("#"):
                continue
            parts = line.split("\t", 1)
            if len(parts) != 2:
                if good == 0 and i <= _SNIFF_LINES:
                    raise DatasetFormatError(f"{name}:{i}: not an AS-names file (want 'asn<TAB>name' or "
                                             f"JSON, got {line[:80]!r})")
                counts["bad-line"] += 1
                continue
            good += 1
            add(*parts)
    if not names:
        raise DatasetFormatError(f"{', '.join(n for n, _ in files)}: no AS name")
    asns = sorted(names)
    return {"names": pa.table({"asn": pa.array(asns, pa.int64()), "name": pa.array([names[a] for a in asns], pa.string())})}


#: kind -> reader, to merge into :data:`analysis._readers.READERS`.
READERS_REL = {"as-rel": read_as_rel, "as-siblings": read_as_siblings, "asnames": read_asnames}
