"""Probe metadata as it comes: files of RIPE Atlas API v2 probe objects, and the local probe.

A probe metadata file holds Atlas API v2 probe objects (``id``, ``asn_v4``,
``country_code``, ``geometry``, ...) in one of the shapes the API and its users save:

- a JSON array of probe objects (a saved list);
- an API page, ``{"count": ..., "next": ..., "results": [...]}`` (``/api/v2/probes/``);
- a bundle with the objects under ``"objects"`` (older ``/probes`` dumps).

:func:`probe_objects` unwraps a parsed document, :func:`read_probe_objects` reads a file
(plain or gzip/bz2/xz/zstd, ``-`` for stdin) and unwraps it; the store keeps the objects
with :func:`probes.store.write_probe_meta`. :func:`local_probe` describes this host as a
probe for local traceroutes, from the ``[local_probe]`` table of a settings file.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from probes.errors import InputFormatError
from probes.inputs import open_input

if TYPE_CHECKING:  # pragma: no cover
    from probes.local import LocalProbe

__all__ = ["probe_objects", "read_probe_objects", "local_probe"]


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


def read_probe_objects(path: str | Path) -> list:
    """Read a probe metadata file (``-`` for stdin; compressed or not) and unwrap it.

    Parameters
    ----------
    path : str or Path
        The file; gzip, bz2, xz and zstd are decompressed transparently.

    Returns
    -------
    list
        The probe objects (:func:`probe_objects`).

    Raises
    ------
    probes.errors.StoreError
        The file cannot be opened.
    probes.errors.InputFormatError
        It is not JSON, or not one of the shapes above.
    """
    with open_input(path) as fh:
        data = fh.read()
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InputFormatError(f"{path}: not JSON probe metadata ({exc})") from exc
    try:
        return probe_objects(doc)
    except InputFormatError as exc:
        raise InputFormatError(f"{path}: {exc}") from None


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
