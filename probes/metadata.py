"""Probe metadata as it comes: files of RIPE Atlas API v2 probe objects, and the local probe.

A probe metadata file holds Atlas API v2 probe objects (``id``, ``asn_v4``,
``country_code``, ``geometry``, ...) in one of the shapes the API and its users save:

- a JSON array of probe objects (a saved list);
- an API page, ``{"count": ..., "next": ..., "results": [...]}`` (``/api/v2/probes/``);
- a bundle with the objects under ``"objects"`` (older ``/probes`` dumps).

:func:`probe_objects` unwraps a parsed document, :func:`read_probe_objects` reads a file
(plain or gzip/bz2/xz/zstd, ``-`` for stdin) and unwraps it; the store keeps the objects
with :func:`probes.store.write_probe_meta`. :func:`check_probe_objects` validates probe
objects field by field (id, ASNs, country code, coordinates, addresses) and sets bad ones
aside, counted by reason (:data:`PROBE_DROP_REASONS`); :func:`read_probe_objects` applies
it. :func:`local_probe` describes this host as a probe for local traceroutes, from the
``[local_probe]`` table of a settings file.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from probes.errors import InputFormatError
from probes.inputs import MAX_DOCUMENT_BYTES, open_input

if TYPE_CHECKING:  # pragma: no cover
    from probes.local import LocalProbe

__all__ = ["probe_objects", "read_probe_objects", "check_probe_objects", "PROBE_DROP_REASONS", "local_probe"]

#: Every reason a probe object is set aside, with its meaning.
PROBE_DROP_REASONS = {
    "not_an_object": "not a JSON object",
    "bad_id": "'id' missing, not an integer, or outside 1..2^32-1",
    "bad_asn": "'asn_v4' or 'asn_v6' not an integer in 0..2^32-1",
    "bad_country_code": "'country_code' not two letters A-Z",
    "bad_coordinates": "'geometry' not a point with longitude -180..180 and latitude -90..90",
    "bad_address": "'address_v4'/'address_v6' not an address of that family",
    "bad_field_type": "'is_anchor' not a boolean, or 'origin' not a string",
}
_COUNTRY = re.compile(r"[A-Z]{2}")
_U32 = 1 << 32


def probe_objects(doc: Any) -> list:
    """The probe objects of a parsed probe metadata document.

    Parameters
    ----------
    doc : list or dict
        A JSON array of probe objects, an API page (objects under ``"results"``) or a
        bundle (objects under ``"objects"``). A dict with neither key holds no objects.

    Returns
    -------
    list
        The probe objects, as they are (:func:`probes.store.write_probe_meta` checks them).

    Raises
    ------
    probes.errors.InputFormatError
        ``doc`` is neither a list nor a dict, or its ``results``/``objects`` is no list.

    Examples
    --------
    >>> probe_objects({"count": 1, "next": None, "results": [{"id": 1240}]})
    [{'id': 1240}]
    >>> probe_objects([{"id": 7}, {"id": 8}])
    [{'id': 7}, {'id': 8}]
    >>> probe_objects({"meta": {}, "objects": [{"id": 9}]})
    [{'id': 9}]
    """
    if isinstance(doc, dict):
        doc = doc.get("results", doc.get("objects", []))
    if isinstance(doc, list):
        return doc
    raise InputFormatError(
        f"not probe metadata: want a JSON array of probe objects or an API page, "
        f"got a JSON {type(doc).__name__}"
    )


def _probe_reason(obj: object) -> str | None:
    """Why a probe object is set aside, or None when it is valid."""
    if not isinstance(obj, dict):
        return "not_an_object"
    pid = obj.get("id")
    if type(pid) is not int or not 0 < pid < _U32:
        return "bad_id"
    for key in ("asn_v4", "asn_v6"):
        asn = obj.get(key)
        if asn is not None and (type(asn) is not int or not 0 <= asn < _U32):
            return "bad_asn"
    cc = obj.get("country_code")
    if cc is not None and (not isinstance(cc, str) or not _COUNTRY.fullmatch(cc)):
        return "bad_country_code"
    geometry = obj.get("geometry")
    if geometry is not None:
        coords = geometry.get("coordinates") if isinstance(geometry, dict) else "bad"
        if coords is not None:
            if not isinstance(coords, list) or len(coords) != 2 or not all(
                type(c) in (int, float) and math.isfinite(c) for c in coords
            ):
                return "bad_coordinates"
            if not (-180 <= coords[0] <= 180 and -90 <= coords[1] <= 90):
                return "bad_coordinates"
    for key, version in (("address_v4", 4), ("address_v6", 6)):
        addr = obj.get(key)
        if addr is None:
            continue
        try:
            if not isinstance(addr, str) or "%" in addr or ipaddress.ip_address(addr).version != version:
                return "bad_address"
        except ValueError:
            return "bad_address"
    if obj.get("is_anchor") is not None and type(obj["is_anchor"]) is not bool:
        return "bad_field_type"
    if obj.get("origin") is not None and not isinstance(obj["origin"], str):
        return "bad_field_type"
    return None


def check_probe_objects(objs: Iterable[Any], drops: Counter | None = None) -> list[dict]:
    """The valid probe objects of ``objs``; the others are counted in ``drops`` by reason.

    Parameters
    ----------
    objs : iterable
        Atlas API v2 probe objects, as read.
    drops : Counter, optional
        Receives one count per object set aside, keyed by a :data:`PROBE_DROP_REASONS` key.

    Examples
    --------
    >>> drops = Counter()
    >>> check_probe_objects([{"id": 7, "country_code": "NL"}, {"id": -1}, {"id": 8, "asn_v4": 2**32}], drops)
    [{'id': 7, 'country_code': 'NL'}]
    >>> dict(drops)
    {'bad_id': 1, 'bad_asn': 1}
    """
    kept = []
    for obj in objs:
        reason = _probe_reason(obj)
        if reason is None:
            kept.append(obj)
        elif drops is not None:
            drops[reason] += 1
    return kept


def read_probe_objects(path: str | Path, *, drops: Counter | None = None) -> list:
    """Read a probe metadata file (``-`` for stdin; compressed or not) and unwrap it.

    Parameters
    ----------
    path : str or Path
        The file; gzip, bz2, xz and zstd are decompressed transparently.
    drops : Counter, optional
        Receives the count of probe objects set aside, by reason
        (:func:`check_probe_objects`); the caller prints one line per reason.

    Returns
    -------
    list
        The valid probe objects (:func:`probe_objects`, :func:`check_probe_objects`).

    Raises
    ------
    probes.errors.StoreError
        The file cannot be opened.
    probes.errors.InputFormatError
        It is not JSON, not one of the shapes above, or larger than
        :data:`probes.inputs.MAX_DOCUMENT_BYTES`.
    """
    chunks: list[bytes] = []
    size = 0
    with open_input(path) as fh:
        while size <= MAX_DOCUMENT_BYTES:
            chunk = fh.read(1 << 20)  # a decompressing stream returns a chunk at a time
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    data = b"".join(chunks)
    if len(data) > MAX_DOCUMENT_BYTES:
        raise InputFormatError(f"{path}: probe metadata larger than {MAX_DOCUMENT_BYTES >> 20} MiB is not read")
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InputFormatError(f"{path}: not JSON probe metadata ({exc})") from exc
    try:
        objs = probe_objects(doc)
    except InputFormatError as exc:
        raise InputFormatError(f"{path}: {exc}") from None
    return check_probe_objects(objs, drops)


def local_probe(
    path: str | Path | None = None, *, overrides: Mapping[str, Any] | None = None
) -> LocalProbe:
    """This host as a probe for local traceroutes: id, place, country, AS.

    Read from the ``[local_probe]`` table of ``path``; without one, of the pathexp
    settings file (:func:`probes.config.default_config_path`) when it exists (an
    unreadable settings folder counts as none), else the defaults. ``overrides`` entries
    that are not None win (see :func:`probes.local.load_local_probe`).

    Raises
    ------
    probes.errors.ConfigError
        The file cannot be read, or a setting is unknown or out of range.
    """
    from probes.config import default_config_path
    from probes.local import load_local_probe

    if path is None:
        candidate = default_config_path()
        try:
            path = candidate if candidate.is_file() else None
        except OSError:  # an unreadable settings folder: no settings file
            path = None
    return load_local_probe(path, overrides=overrides)
