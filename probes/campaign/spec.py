"""Campaign spec (TOML): loading and validation, every error naming its line and field.

See ``probes/campaign_example.toml`` for a commented example of every field.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import sys
import time
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

from probes.errors import ConfigError
from probes.workspace import DEFAULT_WORKSPACE, Campaign

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "CampaignSpec",
    "MeasurementSpec",
    "SampleSpec",
    "ScheduleSpec",
    "SourceSpec",
    "TargetSpec",
    "load_spec",
    "parse_spec",
    "COUNTRY_CODES",
    "AREAS",
]

#: ISO 3166-1 alpha-2 codes (plus XK, used by RIPE Atlas for Kosovo).
COUNTRY_CODES = frozenset("""
AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ
BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM
DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS
GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN
KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ
MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM
PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV
SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI
VN VU WF WS XK YE YT ZA ZM ZW
""".split())

#: RIPE Atlas source areas, approximated by (lon_min, lon_max, lat_min, lat_max) boxes of
#: the probe's location. "WW" is the whole world.
AREAS: dict[str, tuple[tuple[float, float, float, float], ...]] = {
    "WW": ((-180, 180, -90, 90),),
    "West": ((-180, -25, -90, 90),),
    "North-Central": ((-25, 60, 35, 90),),
    "South-Central": ((-25, 60, -90, 35),),
    "North-East": ((60, 180, 35, 90),),
    "South-East": ((60, 180, -90, 35),),
}

_SOURCE_KINDS = ("country", "asn", "area", "probes", "prefix")
_TAG = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


@dataclass(frozen=True)
class MeasurementSpec:
    """Traceroute definition shared by all measurements of a campaign."""

    af: int = 4
    protocol: str = "ICMP"
    paris: int = 16
    packets: int = 3
    max_hops: int = 32
    first_hop: int = 1
    size: int = 48
    port: int | None = None


@dataclass(frozen=True)
class SourceSpec:
    """One probe source: what selects the candidates and how many are wanted."""

    kind: str
    value: Any
    requested: int
    tags_include: tuple[str, ...] = ()
    tags_exclude: tuple[str, ...] = ()
    anchors: str = "include"
    max_per_asn: int | None = None
    line: int = 0


@dataclass(frozen=True)
class SampleSpec:
    """``[targets.sample]``: destinations drawn from a reference-data snapshot at plan time.

    ``count`` destinations located in ``country``, at most ``max_per_asn`` per origin AS,
    prefixes weighted by address space or uniformly, drawn with ``seed`` from the snapshot
    ``snapshot`` (its id in the reference-data cache; the latest one when empty), optionally
    only among prefixes originated by ``asns``. See :func:`analysis.targets.sample_targets`.
    """

    count: int
    country: str = "US"
    max_per_asn: int = 1
    weight: str = "space"
    seed: int = 0
    asns: tuple[int, ...] = ()
    snapshot: str = ""
    line: int = 0


@dataclass(frozen=True)
class TargetSpec:
    addresses: tuple[str, ...] = ()
    hostnames: tuple[str, ...] = ()
    us_anchors: int = 0
    sample: SampleSpec | None = None
    line: int = 0


@dataclass(frozen=True)
class ScheduleSpec:
    oneoff: bool = True
    interval: int | None = None
    start: int | None = None
    stop: int | None = None

    def results_per_probe(self) -> int:
        """Results one probe delivers per measurement (1 for one-off)."""
        if self.oneoff:
            return 1
        assert self.interval and self.start is not None and self.stop is not None
        return (self.stop - self.start) // self.interval + 1


@dataclass(frozen=True)
class CampaignSpec:
    name: str
    description: str
    workspace: Path
    measurement: MeasurementSpec
    sources: tuple[SourceSpec, ...]
    targets: TargetSpec
    schedule: ScheduleSpec
    budget: int
    origin: str = "<spec>"
    digest: str = ""

    @property
    def campaign(self) -> Campaign:
        return Campaign(self.name, self.workspace)


class _Where:
    """Finds the line of ``[table]`` / ``[[table]]`` #index / ``key`` in TOML text."""

    def __init__(self, text: str, origin: str) -> None:
        self.lines = text.splitlines()
        self.origin = origin

    def line(self, table: str, key: str | None = None, index: int | None = None) -> int:
        current, count, header_line = None, -1, 0
        target_header = None
        for no, raw in enumerate(self.lines, 1):
            s = raw.split("#", 1)[0].strip()
            m = re.fullmatch(r"\[\[\s*([^\]]+?)\s*\]\]", s) or re.fullmatch(r"\[\s*([^\]]+?)\s*\]", s)
            if m:
                current = m.group(1)
                if current == table:
                    count += 1
                    if index is None or count == index:
                        target_header = no
                        header_line = no
                continue
            if key is not None and current == table and target_header == header_line and \
                    (index is None or count == index) and re.match(rf"^{re.escape(key)}\s*=", s):
                return no
        return header_line or 1

    def error(self, table: str, key: str | None, message: str, *,
              index: int | None = None) -> ConfigError:
        field = f"[{table}]" if index is None else f"[[{table}]] #{index + 1}"
        if key:
            field += f".{key}"
        return ConfigError(f"{self.origin}:{self.line(table, key, index)}: {field}: {message}")


def _int(w: _Where, table: str, body: dict, key: str, default: int | None, lo: int, hi: int,
         index: int | None = None) -> int | None:
    if key not in body:
        return default
    v = body[key]
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise w.error(table, key, f"must be an integer in [{lo}, {hi}], got {v!r}", index=index)
    return v


def _time(w: _Where, table: str, body: dict, key: str) -> int | None:
    if key not in body:
        return None
    v = body[key]
    if isinstance(v, bool):
        raise w.error(table, key, f"expected a date-time or epoch seconds, got {v!r}")
    if isinstance(v, int):
        return v
    if isinstance(v, datetime):
        if v.tzinfo is None:
            v = v.replace(tzinfo=timezone.utc)
        return int(v.timestamp())
    if isinstance(v, date):
        return int(datetime(v.year, v.month, v.day, tzinfo=timezone.utc).timestamp())
    if v == "now":
        return int(time.time())
    raise w.error(table, key, f"expected a date-time, epoch seconds or \"now\", got {v!r}")


def _known(w: _Where, table: str, body: dict, allowed: set[str], index: int | None = None) -> None:
    for k in body:
        if k not in allowed:
            raise w.error(table, k, f"unknown field (expected one of {sorted(allowed)})",
                          index=index)


def _strings(w: _Where, table: str, body: dict, key: str, index: int | None = None
             ) -> tuple[str, ...]:
    v = body.get(key, [])
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise w.error(table, key, "must be a list of strings", index=index)
    return tuple(v)


def _source(w: _Where, i: int, body: Any) -> SourceSpec:
    t = "sources"
    if not isinstance(body, dict):
        raise w.error(t, None, "each source must be a table [[sources]]", index=i)
    _known(w, t, body, set(_SOURCE_KINDS) | {"requested", "tags_include", "tags_exclude",
                                             "anchors", "max_per_asn"}, i)
    kinds = [k for k in _SOURCE_KINDS if k in body]
    if len(kinds) != 1:
        raise w.error(t, None, f"give exactly one of {', '.join(_SOURCE_KINDS)} "
                               f"(found {kinds or 'none'})", index=i)
    kind = kinds[0]
    v = body[kind]
    if kind == "country":
        if not isinstance(v, str) or v.upper() not in COUNTRY_CODES:
            raise w.error(t, kind, f"unknown country code {v!r} (ISO 3166-1 alpha-2, e.g. "
                                   f"\"DE\")", index=i)
        v = v.upper()
    elif kind == "asn":
        if not isinstance(v, int) or isinstance(v, bool) or not 0 < v < 2**32:
            raise w.error(t, kind, f"must be an AS number, got {v!r}", index=i)
    elif kind == "area":
        if v not in AREAS:
            raise w.error(t, kind, f"unknown area {v!r} (one of {sorted(AREAS)})", index=i)
    elif kind == "probes":
        if not isinstance(v, list) or not v or not all(
                isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in v):
            raise w.error(t, kind, "must be a non-empty list of probe ids", index=i)
        v = tuple(sorted(set(v)))
    elif kind == "prefix":
        try:
            v = str(ipaddress.ip_network(v, strict=False))
        except (TypeError, ValueError) as exc:
            raise w.error(t, kind, f"not an IP prefix: {v!r}", index=i) from exc
    default_req = len(v) if kind == "probes" else None
    requested = _int(w, t, body, "requested", default_req, 1, 100_000, i)
    if requested is None:
        raise w.error(t, "requested", "how many probes? (field missing)", index=i)
    anchors = body.get("anchors", "include")
    if anchors not in ("include", "exclude", "only"):
        raise w.error(t, "anchors", f"must be \"include\", \"exclude\" or \"only\", got "
                                    f"{anchors!r}", index=i)
    inc = _strings(w, t, body, "tags_include", i)
    exc_ = _strings(w, t, body, "tags_exclude", i)
    for tag in inc + exc_:
        if not _TAG.fullmatch(tag):
            raise w.error(t, "tags_include" if tag in inc else "tags_exclude",
                          f"invalid probe tag {tag!r} (slug: a-z, 0-9, '-', '_')", index=i)
    return SourceSpec(kind=kind, value=v, requested=requested, tags_include=inc,
                      tags_exclude=exc_, anchors=anchors,
                      max_per_asn=_int(w, t, body, "max_per_asn", None, 1, 100_000, i),
                      line=w.line(t, None, i))


def _targets(w: _Where, body: dict, base: Path) -> TargetSpec:
    t = "targets"
    _known(w, t, body, {"addresses", "hostnames", "file", "us_anchors", "sample"})
    addresses = list(_strings(w, t, body, "addresses"))
    hostnames = list(_strings(w, t, body, "hostnames"))
    for a in addresses:
        try:
            ipaddress.ip_address(a)
        except ValueError as exc:
            raise w.error(t, "addresses", f"not an IP address: {a!r} (hostnames go in "
                                          "'hostnames')") from exc
    if "file" in body:
        if not isinstance(body["file"], str):
            raise w.error(t, "file", "must be a path string")
        path = (base / body["file"]).expanduser()
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise w.error(t, "file", f"cannot read {path}: {exc.strerror}") from exc
        for no, raw in enumerate(lines, 1):
            s = raw.split("#", 1)[0].strip()
            if not s:
                continue
            if " " in s or "\t" in s:
                raise ConfigError(f"{path}:{no}: one target per line, got {s!r}")
            try:
                addresses.append(str(ipaddress.ip_address(s)))
            except ValueError:
                if not re.fullmatch(r"[A-Za-z0-9.-]+", s):
                    raise ConfigError(f"{path}:{no}: not an address or hostname: {s!r}") from None
                hostnames.append(s)
    us = body.get("us_anchors", 0)
    if us is True:
        us = 10_000
    if us is False:
        us = 0
    if not isinstance(us, int) or us < 0:
        raise w.error(t, "us_anchors", f"must be true/false or a count, got {us!r}")
    for h in hostnames:
        if not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*"
                            r"[A-Za-z0-9])?)*\.?", h):
            raise w.error(t, "hostnames", f"not a hostname: {h!r}")
    sample = _sample(w, body["sample"]) if "sample" in body else None
    if not addresses and not hostnames and not us and sample is None:
        raise w.error(t, None, "no targets: give addresses, hostnames, file, us_anchors or "
                               "[targets.sample]")
    return TargetSpec(addresses=tuple(dict.fromkeys(addresses)),
                      hostnames=tuple(dict.fromkeys(h.lower().rstrip(".") for h in hostnames)),
                      us_anchors=us, sample=sample, line=w.line(t))


def _sample(w: _Where, body: Any) -> SampleSpec:
    t = "targets.sample"
    if not isinstance(body, dict):
        raise w.error("targets", "sample", "must be a table ([targets.sample])")
    _known(w, t, body, {"count", "country", "max_per_asn", "weight", "seed", "asns", "snapshot"})
    if "count" not in body:
        raise w.error(t, "count", "missing: how many destinations to draw")
    count = _int(w, t, body, "count", None, 1, 10_000)
    country = body.get("country", "US")
    if not isinstance(country, str) or not re.fullmatch(r"[A-Z]{2}", country):
        raise w.error(t, "country", f"must be an ISO 3166 alpha-2 code like \"US\", got {country!r}")
    weight = body.get("weight", "space")
    if weight not in ("space", "uniform"):
        raise w.error(t, "weight", f"must be \"space\" or \"uniform\", got {weight!r}")
    asns = body.get("asns", [])
    if not isinstance(asns, list) or not all(
            isinstance(a, int) and not isinstance(a, bool) and 0 < a < 1 << 32 for a in asns):
        raise w.error(t, "asns", "must be a list of AS numbers (integers 1..4294967295)")
    snapshot = body.get("snapshot", "")
    if not isinstance(snapshot, str):
        raise w.error(t, "snapshot", "must be a snapshot id (see `pathexp datasets list`)")
    return SampleSpec(count=int(count or 0), country=country,
                      max_per_asn=int(_int(w, t, body, "max_per_asn", 1, 1, 10_000) or 1),
                      weight=weight, seed=int(_int(w, t, body, "seed", 0, 0, 2**63 - 1) or 0),
                      asns=tuple(dict.fromkeys(asns)), snapshot=snapshot, line=w.line(t))


def parse_spec(text: str, *, origin: str = "<spec>", base: Path | None = None) -> CampaignSpec:
    """Parse and validate a campaign spec given as TOML text."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{origin}: invalid TOML: {exc}") from exc
    w = _Where(text, origin)
    base = base or Path(".")
    allowed = {"campaign", "measurement", "sources", "targets", "schedule", "budget"}
    for k in data:
        if k not in allowed:
            raise ConfigError(f"{origin}:{w.line(k)}: [{k}]: unknown table "
                              f"(expected one of {sorted(allowed)})")
    for table in ("campaign", "sources", "targets", "budget"):
        if table not in data:
            raise ConfigError(f"{origin}: missing table [{table}]")
    camp = data["campaign"]
    if not isinstance(camp, dict):
        raise w.error("campaign", None, "must be a table")
    _known(w, "campaign", camp, {"name", "description", "workspace"})
    name = camp.get("name")
    if not isinstance(name, str):
        raise w.error("campaign", "name", "required string")
    try:
        Campaign(name)
    except ConfigError as exc:
        raise w.error("campaign", "name", str(exc)) from exc
    description = camp.get("description", f"pathexp campaign {name}")
    if not isinstance(description, str):
        raise w.error("campaign", "description", "must be a string")
    workspace = camp.get("workspace", str(DEFAULT_WORKSPACE))
    if not isinstance(workspace, str):
        raise w.error("campaign", "workspace", "must be a path string")

    m = data.get("measurement", {})
    _known(w, "measurement", m, {"af", "protocol", "paris", "packets", "max_hops", "first_hop",
                                 "size", "port"})
    af = _int(w, "measurement", m, "af", 4, 4, 6)
    if af not in (4, 6):
        raise w.error("measurement", "af", f"must be 4 or 6, got {af}")
    proto = m.get("protocol", "ICMP")
    if not isinstance(proto, str) or proto.upper() not in ("ICMP", "UDP", "TCP"):
        raise w.error("measurement", "protocol", f"must be ICMP, UDP or TCP, got {proto!r}")
    proto = proto.upper()
    port = _int(w, "measurement", m, "port", 80 if proto == "TCP" else None, 1, 65535)
    if port is not None and proto != "TCP":
        raise w.error("measurement", "port", "only TCP traceroutes take a port")
    msm = MeasurementSpec(
        af=af, protocol=proto, port=port,  # type: ignore[arg-type]
        paris=_int(w, "measurement", m, "paris", 16, 0, 64),  # type: ignore[arg-type]
        packets=_int(w, "measurement", m, "packets", 3, 1, 16),  # type: ignore[arg-type]
        max_hops=_int(w, "measurement", m, "max_hops", 32, 1, 255),  # type: ignore[arg-type]
        first_hop=_int(w, "measurement", m, "first_hop", 1, 1, 255),  # type: ignore[arg-type]
        size=_int(w, "measurement", m, "size", 48, 0, 2048),  # type: ignore[arg-type]
    )
    if msm.first_hop > msm.max_hops:
        raise w.error("measurement", "first_hop", "must not exceed max_hops")

    srcs = data["sources"]
    if not isinstance(srcs, list) or not srcs:
        raise w.error("sources", None, "give at least one [[sources]] table")
    sources = tuple(_source(w, i, s) for i, s in enumerate(srcs))

    if not isinstance(data["targets"], dict):
        raise w.error("targets", None, "must be a table")
    targets = _targets(w, data["targets"], base)

    sch = data.get("schedule", {})
    _known(w, "schedule", sch, {"type", "interval", "start", "stop"})
    kind = sch.get("type", "oneoff")
    if kind not in ("oneoff", "interval"):
        raise w.error("schedule", "type", f"must be \"oneoff\" or \"interval\", got {kind!r}")
    start, stop = _time(w, "schedule", sch, "start"), _time(w, "schedule", sch, "stop")
    if kind == "oneoff":
        if "interval" in sch or "stop" in sch:
            raise w.error("schedule", "interval" if "interval" in sch else "stop",
                          "a one-off schedule has no interval or stop")
        schedule = ScheduleSpec(oneoff=True, start=start)
    else:
        interval = _int(w, "schedule", sch, "interval", None, 60, 86400 * 7)
        if interval is None:
            raise w.error("schedule", "interval", "an interval schedule needs interval (s)")
        if start is None or stop is None:
            raise w.error("schedule", "stop" if start is not None else "start",
                          "an interval schedule needs start and stop")
        if stop <= start:
            raise w.error("schedule", "stop", "must be after start")
        schedule = ScheduleSpec(oneoff=False, interval=interval, start=start, stop=stop)

    b = data["budget"]
    if not isinstance(b, dict):
        raise w.error("budget", None, "must be a table")
    _known(w, "budget", b, {"max_credits"})
    budget = _int(w, "budget", b, "max_credits", None, 0, 10**12)
    if budget is None:
        raise w.error("budget", "max_credits", "required: the most credits this campaign "
                                               "may spend")
    ws = Path(workspace).expanduser()  # relative: to the current directory, like --workspace
    return CampaignSpec(
        name=name, description=description, workspace=ws, measurement=msm, sources=sources,
        targets=targets, schedule=schedule, budget=budget, origin=origin,
        digest=hashlib.sha256(text.encode()).hexdigest()[:16],
    )


def load_spec(path: Path | str, *, workspace: Path | None = None) -> CampaignSpec:
    """Read a campaign spec file; ``workspace`` overrides ``[campaign].workspace``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read campaign spec {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a UTF-8 text file (bad byte at offset {exc.start})") from exc
    spec = parse_spec(text, origin=str(path), base=path.parent)
    if workspace is not None:
        from dataclasses import replace

        spec = replace(spec, workspace=Path(workspace))
    return spec
