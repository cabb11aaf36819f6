"""What each stage of a campaign was computed from, and whether a later stage may use it.

Every stage that writes a campaign's folders records its *generation*: an id derived from
everything its output depends on (so a rerun on the same inputs gets the same id and
writes the same bytes), and the generations of its inputs::

    store     probes.store.generation()        newest raw segment number, fingerprint
    annotate  annotate.json   "generation"     id; store generation; snapshot id + digest;
              annotated/.generation.json       registry path + sha256; online
    analyze   exposure.json   "generation"     id; annotate id; store generation; probe
              paths/ exposure/ graph/          metadata sha256; options; cache_dir
              each with .generation.json

A stage writes each folder under a work name with its ``.generation.json`` last, swaps it
in, and writes its manifest (``annotate.json``, ``exposure.json``) last of all
(:mod:`analysis.campaign_io`). So a folder whose marker differs from the manifest's id
comes from another run (one was killed between the two), and a manifest whose recorded
inputs differ from the current ones is stale.

:func:`annotate_verdict` and :func:`analyze_verdict` compare the records with the
campaign as it is now and return a :class:`Verdict`; :func:`require_current` raises
:class:`analysis.errors.MissingInput` with one line saying what changed and which command
to run. ``pathexp analyze`` refuses stale ``annotated/``; ``pathexp report`` and
:func:`analysis.campaign_io.load_campaign` (the notebooks) refuse mixed or stale outputs.
``--force`` recomputes the stale stages first, on the current inputs, with the options
recorded by their last run; it never lets a stale figure through.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from analysis.errors import MissingInput, MissingReferenceData
from probes import store
from probes.workspace import DEFAULT_WORKSPACE, Campaign

__all__ = [
    "KINDS",
    "Verdict",
    "annotate_verdict",
    "analyze_verdict",
    "require_current",
    "generation_id",
    "file_sha256",
    "read_marker",
    "read_manifest",
    "command",
]

#: Kinds of :class:`Verdict`: the stage's outputs are usable, absent, of mixed runs, or stale.
KINDS = ("current", "missing", "mixed", "stale")


@dataclass(frozen=True)
class Verdict:
    """Whether a stage's outputs may be used, and if not, why and what to run.

    Attributes
    ----------
    stage : {"annotate", "analyze"}
    kind : {"current", "missing", "mixed", "stale"}
    reason : str
        One line: what is missing or changed ("" when current).
    command : str
        The command that makes it current ("" when current).
    """

    stage: str
    kind: str
    reason: str = ""
    command: str = ""

    @property
    def current(self) -> bool:
        return self.kind == "current"

    def message(self) -> str:
        """``"<reason>: run `<command>`"``."""
        return f"{self.reason}: run {self.command}" if self.command else self.reason


def command(campaign: Campaign, stage: str, *extra: str) -> str:
    """The ``pathexp`` command line (in backquotes) running ``stage`` on ``campaign``."""
    parts = ["pathexp", stage, "--campaign", campaign.name]
    if Path(campaign.workspace) != DEFAULT_WORKSPACE:
        parts += ["--workspace", str(campaign.workspace)]
    return "`" + " ".join([*parts, *extra]) + "`"


def generation_id(record: dict[str, Any]) -> str:
    """A stage run's id: sha256 (first 16 hex digits) of what its output depends on.

    >>> generation_id({"a": 1}) == generation_id({"a": 1}) != generation_id({"a": 2})
    True
    """
    return hashlib.sha256(orjson.dumps(record, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


def _read_file(path: Path) -> bytes | None:
    """A file's bytes, or None when it is not a file: absent, or gone between the look and
    the read (a stage swapping its folder in while another process reads it)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def file_sha256(path: Path) -> str | None:
    """sha256 of a (small) file's bytes, or None when it does not exist."""
    data = _read_file(path)
    return None if data is None else hashlib.sha256(data).hexdigest()


def read_marker(folder: Path) -> str | None:
    """The generation id in ``<folder>/.generation.json``, or None (no folder, no marker)."""
    data = _read_file(Campaign.generation_marker(folder))
    if data is None:
        return None
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return obj.get("id") if isinstance(obj, dict) else None


def read_manifest(path: Path) -> dict[str, Any] | None:
    """A stage manifest (``annotate.json``, ``exposure.json``) as a dict; None if absent, {} if unreadable."""
    data = _read_file(path)
    if data is None:
        return None
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        return {}
    return obj if isinstance(obj, dict) else {}


def annotate_verdict(campaign: Campaign, *, cache_dir: str | Path | None = None) -> Verdict:
    """Whether ``annotated/`` and ``annotate.json`` are one complete run on the current inputs.

    Current inputs: the store's generation (:func:`probes.store.generation`), the registry
    file's sha256 and, when the snapshot annotate used is in the cache (``cache_dir``), its
    digest.
    """
    again = command(campaign, "annotate")
    info = read_manifest(campaign.annotate_json)
    if info is None or not campaign.annotated_dir.is_dir():
        return Verdict("annotate", "missing", f"campaign {campaign.name!r} has not been annotated", again)
    gen = info.get("generation")
    if not isinstance(gen, dict) or "id" not in gen:
        return Verdict("annotate", "stale", f"{campaign.annotate_json} records no generation "
                       "(written by an older pathexp)", again)
    if read_marker(campaign.annotated_dir) != gen["id"]:
        return Verdict("annotate", "mixed", f"{campaign.annotated_dir} and {campaign.annotate_json.name} "
                       "are from different annotate runs (one was interrupted)", again)
    was, now = gen.get("store", {}), store.generation(campaign)
    if was.get("number") != now.number:
        return Verdict("annotate", "stale", f"annotated/ is from store generation {was.get('number')}, "
                       f"the store is at {now.number}", again)
    if was.get("fingerprint") != now.fingerprint:
        return Verdict("annotate", "stale", f"the store's raw segments changed since annotate "
                       f"(generation {now.number}, other segments)", again)
    reg = gen.get("registry", {})
    reg_path = reg.get("path")
    if reg_path is None:
        from analysis.registry import default_registry_path

        reg_file = default_registry_path()
    else:
        reg_file = Path(reg_path)
    if file_sha256(reg_file) != reg.get("sha256"):
        where = "the shipped flagged-carrier registry" if reg_path is None else f"registry {reg_file}"
        gone = "is gone" if not reg_file.is_file() else "changed"
        return Verdict("annotate", "stale", f"{where} {gone} since annotate", again)
    snap = gen.get("snapshot", {})
    try:
        from analysis.datasets import load_snapshot

        digest = load_snapshot(snap.get("id"), cache_dir=cache_dir).digest
    except MissingReferenceData:
        digest = None  # not in this cache: analyze says so; the annotation itself stands
    if digest is not None and digest != snap.get("digest"):
        return Verdict("annotate", "stale", f"snapshot {snap.get('id')} changed since annotate "
                       "(new data imported into it)", again)
    return Verdict("annotate", "current")


def analyze_verdict(campaign: Campaign, *, cache_dir: str | Path | None = None) -> Verdict:
    """Whether the analysis outputs are one complete run on the current annotation.

    ``paths/``, ``exposure/`` and ``graph/`` must carry the id of ``exposure.json`` (else
    mixed: an analyze was interrupted); ``annotate.json`` must be the one analyze read and
    itself current (:func:`annotate_verdict`), and the probe metadata unchanged (else stale).
    """
    again = command(campaign, "analyze")
    info = read_manifest(campaign.exposure_json)
    if info is None:
        return Verdict("analyze", "missing", f"campaign {campaign.name!r} has not been analysed "
                       f"(no {campaign.exposure_json})", again)
    gen = info.get("generation")
    if not isinstance(gen, dict) or "id" not in gen:
        return Verdict("analyze", "stale", f"{campaign.exposure_json} records no generation "
                       "(written by an older pathexp)", again)
    for folder in (campaign.paths_dir, campaign.exposure_dir, campaign.graph_dir):
        mark = read_marker(folder)
        if mark != gen["id"]:
            what = "is missing" if not folder.is_dir() else "is from another analyze run than exposure.json"
            return Verdict("analyze", "mixed", f"{folder.name}/ {what} (an analyze was interrupted)", again)
    ann = annotate_verdict(campaign, cache_dir=cache_dir)
    if not ann.current:
        return Verdict("analyze", "stale", f"{ann.reason}; the analysis is older still",
                       f"{ann.command}, then {again} (or {command(campaign, 'analyze', '--force')})")
    ann_id = (read_manifest(campaign.annotate_json) or {}).get("generation", {}).get("id")
    if gen.get("annotate") != ann_id:
        return Verdict("analyze", "stale", "annotate ran again since analyze (exposure.json is from "
                       "an earlier annotation)", again)
    if gen.get("probes") != file_sha256(campaign.probes_parquet):
        return Verdict("analyze", "stale", "the probe metadata (probes.parquet) changed since analyze", again)
    return Verdict("analyze", "current")


def require_current(verdict: Verdict) -> None:
    """Raise :class:`analysis.errors.MissingInput` with the verdict's message unless current."""
    if not verdict.current:
        raise MissingInput(verdict.message())
