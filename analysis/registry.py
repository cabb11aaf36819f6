"""The flagged-carrier registry: families of ASNs (China Telecom, China Unicom, China Mobile
by default), each entry with its public source.

The default registry is ``analysis/flagged_carriers.toml`` (:func:`default_registry_path`);
a user passes their own file to :func:`load_registry`. :func:`with_siblings` adds the ASNs
that CAIDA as2org places in the same organisation as a listed ASN, flagged
``via="as2org-sibling"``.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import tomllib

from analysis.errors import RegistryError

__all__ = [
    "Registry",
    "FamilyASN",
    "StaticPrefix",
    "default_registry_path",
    "load_registry",
    "with_siblings",
]


@dataclass(frozen=True)
class FamilyASN:
    """One ASN of a family: where the claim comes from and how it was found."""

    asn: int
    family: str
    name: str | None
    source: str
    via: str = "registry"  # "registry" | "as2org-sibling"


@dataclass(frozen=True)
class StaticPrefix:
    """Router space in no BGP table, attributed when the RIR delegation confirms it."""

    prefix: str
    family: str
    asn: int
    rir: str
    country: str
    source: str


@dataclass(frozen=True)
class Registry:
    """Families -> ASNs (+ static prefixes).

    Attributes
    ----------
    families : dict
        family id -> display name.
    asns : tuple of FamilyASN
        Sorted by ASN; one entry per ASN.
    prefixes : tuple of StaticPrefix
    path : str
        Where it was loaded from.
    """

    families: dict[str, str]
    asns: tuple[FamilyASN, ...]
    prefixes: tuple[StaticPrefix, ...] = ()
    path: str = ""
    _index: dict = field(default_factory=dict, repr=False, compare=False)

    def family_of(self, asn: int) -> FamilyASN | None:
        """The registry entry of one ASN, or None when it is not flagged."""
        if not self._index:
            self._index.update({e.asn: e for e in self.asns})
        return self._index.get(int(asn))

    def lookup(self, asns: pa.Array | np.ndarray) -> tuple[pa.Array, pa.Array]:
        """Vectorized: the family id and ``via`` of each ASN (null where not flagged)."""
        arr = pa.array(asns, pa.int64()) if not isinstance(asns, pa.Array) else pc.cast(asns, pa.int64())
        keys = pa.array([e.asn for e in self.asns], pa.int64())
        idx = pc.index_in(arr, value_set=keys)
        fam = pa.array([e.family for e in self.asns], pa.string())
        via = pa.array([e.via for e in self.asns], pa.string())
        return pc.take(fam, idx), pc.take(via, idx)


def default_registry_path() -> Path:
    """The registry shipped with pathexp: ``analysis/flagged_carriers.toml``."""
    return Path(str(resources.files("analysis").joinpath("flagged_carriers.toml")))


def load_registry(path: str | Path | None = None) -> Registry:
    """Read a registry TOML file (the default one when ``path`` is None).

    Raises
    ------
    RegistryError
        The file is missing, not TOML, or an entry lacks ``asn``/``source`` or repeats an
        ASN under two families (the message names the entry).
    """
    p = Path(path) if path is not None else default_registry_path()
    try:
        doc = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise RegistryError(f"registry file not found: {p}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise RegistryError(f"{p}: not valid TOML: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise RegistryError(f"{p}: not a UTF-8 text file (bad byte at offset {exc.start})") from exc
    except OSError as exc:
        raise RegistryError(f"cannot read registry file {p}: {exc.strerror}") from exc
    if doc.get("schema") != 1:
        raise RegistryError(f"{p}: unsupported registry schema {doc.get('schema')!r} (want 1)")
    fams = doc.get("family")
    if not isinstance(fams, list) or not fams:
        raise RegistryError(f"{p}: no [[family]] tables")
    families: dict[str, str] = {}
    entries: dict[int, FamilyASN] = {}
    prefixes: list[StaticPrefix] = []
    for i, fam in enumerate(fams):
        if not isinstance(fam, dict):
            raise RegistryError(f"{p}: family #{i + 1} is not a table")
        fid = fam.get("id")
        if not isinstance(fid, str) or not fid:
            raise RegistryError(f"{p}: family #{i + 1} has no 'id'")
        if fid in families:
            raise RegistryError(f"{p}: family {fid!r} is listed twice")
        families[fid] = str(fam.get("name") or fid)
        for key in ("asn", "prefix"):
            if not isinstance(fam.get(key, []), list):
                raise RegistryError(f"{p}: family {fid!r}: '{key}' must be an array of tables ([[family.{key}]])")
        for j, a in enumerate(fam.get("asn", [])):
            where = f"{p}: family {fid!r} asn entry #{j + 1}"
            if not isinstance(a, dict):
                raise RegistryError(f"{where}: not a table ([[family.asn]])")
            if not _is_asn(a.get("asn")):
                raise RegistryError(f"{where}: 'asn' must be an integer in 1..{_ASN_MAX}, not {a.get('asn')!r}")
            if not isinstance(a.get("source"), str) or not a["source"]:
                raise RegistryError(f"{where} (AS{a['asn']}): 'source' is required")
            if a["asn"] in entries:
                other = entries[a["asn"]].family
                raise RegistryError(f"{where}: AS{a['asn']} is already listed under {other!r}")
            entries[a["asn"]] = FamilyASN(a["asn"], fid, a.get("name"), str(a["source"]))
        for j, sp in enumerate(fam.get("prefix", [])):
            where = f"{p}: family {fid!r} prefix entry #{j + 1}"
            missing = [k for k in ("prefix", "asn", "rir", "country", "source") if k not in sp]
            if missing:
                raise RegistryError(f"{where}: missing {', '.join(missing)}")
            _check_prefix_entry(where, sp)
            prefixes.append(
                StaticPrefix(str(sp["prefix"]), fid, int(sp["asn"]), str(sp["rir"]).lower(),
                             str(sp["country"]).upper(), str(sp["source"]))
            )
    return Registry(families, tuple(entries[a] for a in sorted(entries)), tuple(prefixes), str(p))


_ASN_MAX = (1 << 32) - 1
_COUNTRY = re.compile(r"[A-Za-z]{2}")


def _is_asn(value: object) -> bool:
    return type(value) is int and 0 < value <= _ASN_MAX


def _check_prefix_entry(where: str, sp: dict) -> None:
    """One-line errors for a ``[[family.prefix]]`` entry whose fields are not what they say."""
    if not isinstance(sp["prefix"], str):
        raise RegistryError(f"{where}: 'prefix' must be a string like \"59.43.0.0/16\", not {sp['prefix']!r}")
    try:
        ipaddress.ip_network(sp["prefix"])
    except ValueError:
        raise RegistryError(f"{where}: 'prefix' {sp['prefix']!r} is not an IP prefix (address/length, host bits zero)") from None
    if not _is_asn(sp["asn"]):
        raise RegistryError(f"{where}: 'asn' must be an integer in 1..{_ASN_MAX}, not {sp['asn']!r}")
    if not isinstance(sp["rir"], str) or not sp["rir"]:
        raise RegistryError(f"{where}: 'rir' must be a registry name such as \"apnic\", not {sp['rir']!r}")
    if not isinstance(sp["country"], str) or not _COUNTRY.fullmatch(sp["country"]):
        raise RegistryError(f"{where}: 'country' must be a two-letter code, not {sp['country']!r}")
    if not isinstance(sp["source"], str) or not sp["source"]:
        raise RegistryError(f"{where}: 'source' must be a non-empty string")


def with_siblings(registry: Registry, asns: pa.Table) -> Registry:
    """Add as2org siblings: ASNs in the same organisation as a listed ASN.

    Parameters
    ----------
    registry : Registry
    asns : pyarrow.Table
        The ``as2org/asns`` table of a snapshot (columns ``asn``, ``org_id``).

    Returns
    -------
    Registry
        A new registry whose extra entries carry ``via="as2org-sibling"`` and
        ``source="as2org:<org_id>"``. An organisation holding ASNs of two families adds no
        siblings (ambiguous).
    """
    by_asn = dict(zip(asns["asn"].to_pylist(), asns["org_id"].to_pylist(), strict=True))
    org_family: dict[str, set[str]] = {}
    for e in registry.asns:
        org = by_asn.get(e.asn)
        if org is not None:
            org_family.setdefault(org, set()).add(e.family)
    entries = {e.asn: e for e in registry.asns}
    for asn, org in sorted(by_asn.items()):
        fams = org_family.get(org)
        if asn in entries or not fams or len(fams) != 1:
            continue
        entries[asn] = FamilyASN(asn, next(iter(fams)), None, f"as2org:{org}", via="as2org-sibling")
    return replace(registry, asns=tuple(entries[a] for a in sorted(entries)), _index={})
