"""A stand-in RIPE Atlas API: a real HTTPS server on 127.0.0.1 in a background thread.

It implements the endpoints pathexp uses, with the response shapes of the Atlas API v2:

=====================================================  =====================================
``GET  /api/v2/probes/`` (filters, pagination)          probe objects
``GET  /api/v2/probes/<id>/``                           one probe
``GET  /api/v2/anchors/``                               anchor objects (``country`` filter)
``POST /api/v2/measurements/``                          ``{"measurements": [ids]}``, 201
``GET  /api/v2/measurements/`` (tags, id__in, ...)      measurement objects, paginated
``GET  /api/v2/measurements/<id>/``                     one measurement (status from clock)
``DELETE /api/v2/measurements/<id>``                    stop, 204
``GET  /api/v2/measurements/<id>/results/``             JSON array; start, stop, probe_ids
``GET  /api/v2/credits/``                               credit balance (key required)
=====================================================  =====================================

Results of measurements created here come from a *result source*
``source(msm, prb_id, timestamp) -> dict`` (Atlas result JSON). :class:`FixtureResults`
re-addresses real traceroutes (a pierky bundle from ``../shared/data``); a synthetic
:class:`probes.world.World` can be plugged in the same way. Measurements can also be
preloaded with recorded results (``preload``), for ``campaign import``.

Fault injection (:class:`Fault`): 429 with ``Retry-After``, 500/502/503, connection resets,
slow responses, truncated bodies (short ``Content-Length`` write, or cut JSON), repeated
pages, "applied then failed" creates (the measurement exists, the client sees an error),
a body that drips one byte at a time or never ends, fields of the wrong type, empty result
windows, results of another measurement, and an error body echoing the API key (upper-cased,
truncated). ``listing_lag`` makes the measurement listing lag behind creates (a new
measurement is missing from its first N listings). Faults are queued with a path pattern,
or drawn at random with a seeded RNG.

The TLS certificate comes from a CA made in the test session (``trustme``); the client
trusts it through the CA-bundle option.
"""

from __future__ import annotations

import copy
import hashlib
import ipaddress
import json
import random
import re
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

__all__ = [
    "AtlasStandIn",
    "Fault",
    "FixtureResults",
    "load_fixture_probes",
    "v2_probe",
    "WorldResults",
    "make_tls",
    "v2_measurement_from_v1",
]

STATUS = {
    0: "Specified", 1: "Scheduled", 2: "Ongoing", 4: "Stopped", 5: "Forced to stop",
    6: "No suitable probes", 7: "Failed",
}

def v2_probe(p: dict) -> dict:
    """An API v1/v2 probe object as API v2 returns it (status id/name, epoch times)."""
    q = dict(p)
    q.setdefault("type", "Probe")
    q.setdefault("is_public", True)
    q.setdefault("tags", [])
    st = q.get("status")
    if not isinstance(st, dict):
        q["status"] = {"id": 1, "name": "Connected", "since": None}
    return q


def load_fixture_probes(data_root: Path) -> list[dict]:
    """Probe objects from the pierky bundles and the v2 sample, in API v2 shape."""
    out: dict[int, dict] = {}
    base = data_root / "ripe-atlas"
    for name in ("1033154.json", "3082698.json"):
        bundle = json.loads((base / "pierky-ripe-atlas-monitor-fixtures" / name).read_text())
        for p in bundle["probes"]["results"]:
            out[p["id"]] = v2_probe(p)
    sample = base / "api-metadata" / "probes_v2_sample_starlink_2025-05-05.json"
    for p in json.loads(sample.read_text()):
        out[p["id"]] = v2_probe(p)
    return [out[k] for k in sorted(out)]


class FixtureResults:
    """Result source re-addressing real traceroutes to (msm, probe, time).

    A template is chosen per (msm, probe) by a stable hash; the copy gets the new
    ``msm_id``, ``prb_id``, ``timestamp``/``endtime``, target and protocol. Deterministic:
    the same arguments always give the same record.
    """

    def __init__(self, records: Iterable[dict]) -> None:
        self._templates = [r for r in records if r.get("type") == "traceroute"
                           and any("hop" in h for h in r.get("result", []))]
        if not self._templates:
            raise ValueError("no usable traceroute templates")

    @classmethod
    def from_bundle(cls, path: Path) -> FixtureResults:
        return cls(json.loads(Path(path).read_text())["results"])

    def __call__(self, msm: dict, prb_id: int, timestamp: int) -> dict:
        h = int(hashlib.sha256(f"{msm['id']}:{prb_id}".encode()).hexdigest()[:8], 16)
        r = copy.deepcopy(self._templates[h % len(self._templates)])
        r.update(msm_id=msm["id"], prb_id=prb_id, timestamp=timestamp,
                 endtime=timestamp + 3, dst_name=msm["target"],
                 dst_addr=msm["target_ip"], af=msm["af"], proto=msm["protocol"],
                 paris_id=(prb_id % 16) + 1 if msm.get("paris") else 0,
                 msm_name="Traceroute", size=msm.get("size", 48))
        r.pop("group_id", None)
        return r


class WorldResults:
    """Result source backed by the synthetic world (:class:`probes.world.World`).

    Probes of the world get the world's traceroute toward the measurement's target
    address; other probes (real fixture probes) fall back to ``fallback``.
    """

    def __init__(self, world: Any, fallback: Callable[[dict, int, int], dict] | None = None
                 ) -> None:
        self._world = world
        self._ids = {p["id"] for p in world.probes()}
        self._fallback = fallback

    def __call__(self, msm: dict, prb_id: int, timestamp: int) -> dict:
        if prb_id not in self._ids:
            if self._fallback is None:
                raise KeyError(f"probe {prb_id} is not in the world")
            return self._fallback(msm, prb_id, timestamp)
        paris = (prb_id % 16) + 1 if msm.get("paris") else 0
        r = self._world.traceroute(prb_id, msm["target_ip"], timestamp, msm_id=msm["id"],
                                   proto=msm["protocol"], paris_id=paris)
        r["dst_name"] = msm["target"]
        return r


@dataclass
class Fault:
    """One injected fault.

    ``kind``: ``"400"``, ``"429"``, ``"500"``, ``"502"``, ``"503"``, ``"reset"``, ``"slow"``,
    ``"truncate"`` (Content-Length promised, body cut, connection closed), ``"badjson"``
    (complete response of cut JSON), ``"repeat_page"`` (list endpoints serve the previous
    page again), ``"applied_502"`` / ``"applied_reset"`` (POST: create, then fail),
    ``"drip"`` (headers, then one body byte every ``delay`` s), ``"endless"`` (a body that
    never ends), ``"mangle_status"`` / ``"mangle_start_time"`` / ``"mangle_id"`` /
    ``"mangle_balance"`` (that field gets a wrong type: a string status, an ISO time, a
    null id, a null balance), ``"empty_results"`` (a results window answered ``[]``),
    ``"foreign_results"`` (a results window answered with another measurement's results),
    ``"echo_key"`` (HTTP 400 whose body echoes the key upper-cased and truncated).
    ``path``: regex searched in the request path and query; ``method``: restrict to a method;
    ``times``: how many requests it hits.
    """

    kind: str
    path: str = ".*"
    method: str | None = None
    times: int = 1
    retry_after: int | None = 1
    delay: float = 0.5


@dataclass
class _State:
    probes: dict[int, dict]
    anchors: list[dict]
    key: str | None
    balance: int
    source: Callable[[dict, int, int], dict] | None
    now: Callable[[], float]
    measurements: dict[int, dict] = field(default_factory=dict)
    msm_probes: dict[int, list[int]] = field(default_factory=dict)
    preloaded: dict[int, list[dict]] = field(default_factory=dict)
    next_id: int = 70_000_000
    spent: int = 0
    faults: list[Fault] = field(default_factory=list)
    random_faults: tuple[float, tuple[str, ...], random.Random] | None = None
    log: list[tuple[str, str, int]] = field(default_factory=list)
    seen_auth: list[str] = field(default_factory=list)
    latency: float = 0.0
    listing_lag: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    # -- plumbing -----------------------------------------------------------------
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence
        pass

    def finish(self) -> None:
        try:
            super().finish()
        except (OSError, ValueError):
            pass

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        fault = getattr(self, "_fault", None)
        if fault is not None and fault.kind.startswith("mangle_") and body is not None:
            body = _mangle(copy.deepcopy(body), fault.kind[len("mangle_"):])
        data = b"" if body is None else json.dumps(body).encode()
        if fault is not None and fault.kind == "badjson" and data:
            data = data[: max(1, len(data) // 2)]
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if fault is not None and fault.kind == "truncate" and len(data) > 1:
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self._reset()
            return
        self.wfile.write(data)
        self._record(status)

    def _record(self, status: int) -> None:
        st = self.server.state
        with st.lock:
            st.log.append((self.command, self.path, status))

    def _reset(self) -> None:
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass
        self.close_connection = True
        self._record(0)

    def _error(self, status: int, title: str, detail: str, **headers: str) -> None:
        self._send(status, {"error": {"status": status, "code": 100 + status % 100,
                                      "title": title, "detail": detail}}, headers)

    def _pick_fault(self, path: str) -> Fault | None:
        st = self.server.state
        with st.lock:
            for f in st.faults:
                if f.times > 0 and re.search(f.path, self.path) and (
                        f.method is None or f.method == self.command):
                    f.times -= 1
                    return f
            if st.random_faults is not None:
                rate, kinds, rng = st.random_faults
                if rng.random() < rate:
                    kind = rng.choice(kinds)
                    if kind.startswith("applied_") and self.command != "POST":
                        kind = "503"
                    return Fault(kind, retry_after=1 if kind == "429" else None, delay=0.05)
        return None

    def _dispatch(self) -> None:
        url = urlparse(self.path)
        path = url.path
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        self._fault = fault = self._pick_fault(path)
        if self.server.state.latency:
            time.sleep(self.server.state.latency)
        if fault is not None:
            if fault.kind in ("400", "429", "500", "502", "503"):
                status = int(fault.kind)
                hdr = {"Retry-After": str(fault.retry_after)} if (
                    status in (429, 503) and fault.retry_after is not None) else {}
                self._fault = None
                return self._error(status, "Injected", f"injected {status}", **hdr)
            if fault.kind == "reset":
                return self._reset()
            if fault.kind in ("drip", "endless"):
                return self._stream_forever(fault)
            if fault.kind == "echo_key":
                auth = (self.headers.get("Authorization") or "Key none").split(" ", 1)[-1]
                self._fault = None
                return self._error(400, "Bad Request",
                                   f"key {auth.upper()[:20]}... is not allowed to do this")
            if fault.kind == "slow":
                time.sleep(fault.delay)
        st = self.server.state
        auth = self.headers.get("Authorization")
        with st.lock:
            st.seen_auth.append(auth or "")
        body = None
        if self.command == "POST":
            n = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(n) if n else b""
            try:
                body = json.loads(raw or b"null")
            except ValueError:
                return self._error(400, "Bad Request", "body is not JSON")
        routes = [
            ("GET", r"^/api/v2/probes/?$", self._probes),
            ("GET", r"^/api/v2/probes/(\d+)/?$", self._probe),
            ("GET", r"^/api/v2/anchors/?$", self._anchors),
            ("POST", r"^/api/v2/measurements/?$", self._create),
            ("GET", r"^/api/v2/measurements/?$", self._list_msm),
            ("GET", r"^/api/v2/measurements/(\d+)/?$", self._get_msm),
            ("DELETE", r"^/api/v2/measurements/(\d+)/?$", self._stop_msm),
            ("GET", r"^/api/v2/measurements/(\d+)/results/?$", self._results),
            ("GET", r"^/api/v2/credits/?$", self._credits),
        ]
        for method, pattern, fn in routes:
            m = re.match(pattern, path)
            if m and method == self.command:
                return fn(*m.groups(), query=query, body=body, auth=auth, fault=fault)
        return self._error(404, "Not Found", f"no route for {self.command} {path}")

    do_GET = do_POST = do_DELETE = _dispatch

    def _stream_forever(self, fault: Fault) -> None:
        """``drip``: a 4 KiB JSON body, one byte every ``fault.delay`` s; ``endless``: a
        JSON array that never ends. Both stop when the client goes (or after 60 s)."""
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        if fault.kind == "drip":
            self.send_header("Content-Length", "4096")
        else:
            self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        t_end = time.monotonic() + 60
        piece = b"[" if fault.kind == "drip" else b"[" + b'{"msm_id": 0, "pad": "' + \
            b"x" * 4000 + b'"},'
        try:
            while time.monotonic() < t_end:
                self.wfile.write(piece)
                self.wfile.flush()
                if fault.kind == "drip":
                    piece = b" "
                    time.sleep(fault.delay)
                else:
                    piece = b'{"msm_id": 0, "pad": "' + b"x" * 4000 + b'"},'
        except OSError:
            pass
        self._record(0)

    # -- auth ---------------------------------------------------------------------
    def _authorized(self, auth: str | None) -> bool:
        st = self.server.state
        if not auth:
            self._error(401, "Unauthorized", "Authentication credentials were not provided.")
            return False
        if st.key is None or auth != f"Key {st.key}":
            self._error(403, "Forbidden", "The provided API key is not valid.")
            return False
        return True

    # -- listings -----------------------------------------------------------------
    def _page(self, objs: list[dict], query: dict[str, str], path: str,
              fault: Fault | None) -> None:
        size = min(int(query.get("page_size", 50)), 500)
        page = int(query.get("page", 1))
        if fault is not None and fault.kind == "repeat_page" and page > 1:
            served = page - 1  # the previous page again, with this page's links
        else:
            served = page
        chunk = objs[(served - 1) * size: served * size]
        base = f"https://{self.server.host_port}{path}"

        def link(p: int) -> str:
            return base + "?" + urlencode({**query, "page": p})

        nxt = link(page + 1) if page * size < len(objs) else None
        prev = link(page - 1) if page > 1 else None
        self._send(200, {"count": len(objs), "next": nxt, "previous": prev,
                         "results": chunk})

    def _probes(self, *, query: dict[str, str], fault: Fault | None, **_: Any) -> None:
        st = self.server.state
        objs = list(st.probes.values())
        if "id__in" in query:
            want = {int(x) for x in query["id__in"].split(",") if x}
            objs = [p for p in objs if p["id"] in want]
        if "country_code" in query:
            objs = [p for p in objs if p.get("country_code") == query["country_code"].upper()]
        for f in ("asn_v4", "asn_v6"):
            if f in query:
                objs = [p for p in objs if p.get(f) == int(query[f])]
        if "asn" in query:
            a = int(query["asn"])
            objs = [p for p in objs if a in (p.get("asn_v4"), p.get("asn_v6"))]
        for f, af in (("prefix_v4", 4), ("prefix_v6", 6)):
            if f in query:
                net = ipaddress.ip_network(query[f], strict=False)
                objs = [p for p in objs if p.get(f"address_v{af}")
                        and ipaddress.ip_address(p[f"address_v{af}"]) in net]
        if "status" in query:
            objs = [p for p in objs if p["status"]["id"] == int(query["status"])]
        if "is_anchor" in query:
            want_anchor = query["is_anchor"].lower() in ("true", "1")
            objs = [p for p in objs if bool(p.get("is_anchor")) == want_anchor]
        if "tags" in query:
            need = {t for t in query["tags"].split(",") if t}
            objs = [p for p in objs if need <= {t["slug"] for t in p.get("tags", [])}]
        objs.sort(key=lambda p: p["id"])
        self._page(objs, query, "/api/v2/probes/", fault)

    def _probe(self, pid: str, **_: Any) -> None:
        p = self.server.state.probes.get(int(pid))
        if p is None:
            return self._error(404, "Not Found", "No Probe matches the given query.")
        self._send(200, p)

    def _anchors(self, *, query: dict[str, str], fault: Fault | None, **_: Any) -> None:
        objs = list(self.server.state.anchors)
        if "country" in query:
            objs = [a for a in objs if a["country"] == query["country"].upper()]
        objs.sort(key=lambda a: a["id"])
        self._page(objs, query, "/api/v2/anchors/", fault)

    # -- measurements ---------------------------------------------------------------
    def _create(self, *, body: Any, auth: str | None, fault: Fault | None, **_: Any) -> None:
        if not self._authorized(auth):
            return
        st = self.server.state
        if not isinstance(body, dict) or not body.get("definitions") or not body.get("probes"):
            return self._error(400, "Bad Request", "definitions and probes are required")
        probe_ids: list[int] = []
        for src in body["probes"]:
            if src.get("type") != "probes":
                return self._error(400, "Bad Request", "stand-in supports type=probes only")
            probe_ids += [int(x) for x in str(src["value"]).split(",") if x]
        unknown = [p for p in probe_ids if p not in st.probes]
        if unknown:
            return self._error(400, "Bad Request", f"unknown probes {unknown[:5]}")
        oneoff = bool(body.get("is_oneoff"))
        now = int(st.now())
        start = int(body.get("start_time") or now)
        stop = body.get("stop_time")
        msms = []
        total = 0
        per_probe_of: dict[int, int] = {}
        for d in body["definitions"]:
            for req in ("target", "af", "description", "protocol"):
                if d.get(req) in (None, ""):
                    return self._error(400, "Bad Request", f"definitions: {req} is required")
            if d.get("type") != "traceroute":
                return self._error(400, "Bad Request", "stand-in supports traceroute only")
            packets, size = int(d.get("packets", 3)), int(d.get("size", 48))
            cpr = 10 * packets * max(1, -(-size // 1500)) * (2 if oneoff else 1)
            interval = None if oneoff else int(d.get("interval", 900))
            if oneoff:
                per_probe = 1
            else:
                if stop is None:
                    return self._error(400, "Bad Request", "stand-in needs stop_time")
                per_probe = (int(stop) - start) // interval + 1
            total += cpr * per_probe * len(probe_ids)
            per_probe_of[id(d)] = per_probe
            msms.append((d, cpr, interval))
        with st.lock:
            insufficient = total > st.balance
            if not insufficient:
                st.balance -= total
                st.spent += total
        if insufficient:
            return self._error(400, "Bad Request",
                               f"You do not have enough credits to schedule this measurement "
                               f"(needs {total}).")
        ids = []
        with st.lock:
            for d, cpr, interval in msms:
                st.next_id += 1
                mid = st.next_id
                target = d["target"]
                try:
                    target_ip = str(ipaddress.ip_address(target))
                except ValueError:
                    h = int(hashlib.sha256(target.encode()).hexdigest()[:6], 16)
                    target_ip = f"198.18.{h % 256}.{(h >> 8) % 254 + 1}"
                st.measurements[mid] = {
                    "id": mid, "type": "traceroute", "af": int(d["af"]),
                    "description": d["description"], "target": target,
                    "target_ip": target_ip, "target_asn": None, "protocol": d["protocol"],
                    "paris": int(d.get("paris", 0)), "packets": int(d.get("packets", 3)),
                    "size": int(d.get("size", 48)), "max_hops": int(d.get("max_hops", 32)),
                    "first_hop": int(d.get("first_hop", 1)), "is_oneoff": oneoff,
                    "interval": interval, "start_time": start,
                    "stop_time": None if stop is None else int(stop),
                    "creation_time": now, "tags": list(d.get("tags") or []),
                    "is_public": True, "resolve_on_probe": bool(d.get("resolve_on_probe")),
                    "participant_count": len(probe_ids), "probes_requested": len(probe_ids),
                    "probes_scheduled": len(probe_ids), "credits_per_result": cpr,
                    "group_id": None, "spread": None,
                    "result": f"https://{self.server.host_port}/api/v2/measurements/{mid}/results/",
                }
                st.measurements[mid]["_hidden"] = st.listing_lag
                st.measurements[mid]["_cost"] = cpr * per_probe_of[id(d)] * len(probe_ids)
                st.msm_probes[mid] = sorted(probe_ids)
                ids.append(mid)
        if fault is not None and fault.kind == "applied_reset":
            return self._reset()
        if fault is not None and fault.kind == "applied_502":
            self._fault = None
            return self._error(502, "Bad Gateway", "upstream went away")
        self._send(201, {"measurements": ids})

    def _status(self, m: dict) -> dict:
        st = self.server.state
        now = st.now()
        if m.get("_stopped_at") is not None:
            return {"id": 5 if not m["is_oneoff"] else 4, "name": STATUS[4], "when": m["_stopped_at"]}
        if m["id"] in st.preloaded:
            return {"id": 4, "name": STATUS[4], "when": m.get("stop_time")}
        end = m["start_time"] + 60 if m["is_oneoff"] else m["stop_time"]
        if now < m["start_time"]:
            return {"id": 1, "name": STATUS[1], "when": None}
        if now <= end:
            return {"id": 2, "name": STATUS[2], "when": m["start_time"]}
        return {"id": 4, "name": STATUS[4], "when": end}

    def _public(self, m: dict) -> dict:
        out = {k: v for k, v in m.items() if not k.startswith("_")}
        out["status"] = self._status(m)
        return out

    def _list_msm(self, *, query: dict[str, str], fault: Fault | None, **_: Any) -> None:
        st = self.server.state
        with st.lock:
            objs = []
            for m in st.measurements.values():
                if m.get("_hidden", 0) > 0:  # the listing lags behind the create
                    m["_hidden"] -= 1
                    continue
                objs.append(self._public(m))
        if "tags" in query:
            need = {t for t in query["tags"].split(",") if t}
            objs = [m for m in objs if need <= set(m.get("tags") or [])]
        if "id__in" in query:
            want = {int(x) for x in query["id__in"].split(",") if x}
            objs = [m for m in objs if m["id"] in want]
        if "description__contains" in query:
            objs = [m for m in objs if query["description__contains"] in m["description"]]
        objs.sort(key=lambda m: m["id"])
        self._page(objs, query, "/api/v2/measurements/", fault)

    def _get_msm(self, mid: str, **_: Any) -> None:
        st = self.server.state
        with st.lock:
            m = st.measurements.get(int(mid))
            out = None if m is None else self._public(m)
        if out is None:
            return self._error(404, "Not Found", "No Measurement matches the given query.")
        self._send(200, out)

    def _stop_msm(self, mid: str, *, auth: str | None, **_: Any) -> None:
        if not self._authorized(auth):
            return
        st = self.server.state
        with st.lock:
            m = st.measurements.get(int(mid))
            if m is not None and m.get("_stopped_at") is None:
                m["_stopped_at"] = int(st.now())
        if m is None:
            return self._error(404, "Not Found", "No Measurement matches the given query.")
        self._send(204, None)

    def _results(self, mid: str, *, query: dict[str, str], fault: Fault | None,
                 **_: Any) -> None:
        st = self.server.state
        mid_i = int(mid)
        with st.lock:
            m = st.measurements.get(mid_i)
        if m is None:
            return self._error(404, "Not Found", "No Measurement matches the given query.")
        start = int(query["start"]) if "start" in query else None
        stop = int(query["stop"]) if "stop" in query else None
        pids = ({int(x) for x in query["probe_ids"].split(",") if x}
                if "probe_ids" in query else None)
        recs = self.server.all_results(mid_i)
        out = [r for r in recs
               if (start is None or r["timestamp"] >= start)
               and (stop is None or r["timestamp"] <= stop)
               and (pids is None or r["prb_id"] in pids)]
        if fault is not None and fault.kind == "repeat_page" and out:
            out = out + out[: max(1, len(out) // 3)]
        if fault is not None and fault.kind == "empty_results":
            out = []
        if fault is not None and fault.kind == "foreign_results":
            out = [{**r, "msm_id": mid_i + 1} for r in out] or [
                {"msm_id": mid_i + 1, "prb_id": 1, "timestamp": start or 0, "type": "traceroute"}]
        self._send(200, out)

    def _credits(self, *, auth: str | None, **_: Any) -> None:
        if not self._authorized(auth):
            return
        st = self.server.state
        with st.lock:
            bal = st.balance
        self._send(200, {
            "current_balance": bal, "credit_checked": True, "max_daily_credits": 1_000_000,
            "estimated_daily_income": 21600, "estimated_daily_expenditure": 0,
            "estimated_daily_balance": 21600, "calculation_time": int(st.now()),
            "estimated_runout_seconds": None, "past_day_measurement_results": 0,
            "past_day_credits_spent": 0, "last_date_debited": None,
            "last_date_credited": None,
            "income_items": f"https://{self.server.host_port}/api/v2/credits/income-items/",
            "expense_items": f"https://{self.server.host_port}/api/v2/credits/expense-items/",
            "transactions": f"https://{self.server.host_port}/api/v2/credits/transactions/",
        })


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    state: _State
    host_port: str

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients killed mid-request (the crash tests) are expected: stay quiet."""
        import sys

        exc = sys.exc_info()[1]
        if isinstance(exc, (OSError, ssl.SSLError, ValueError)):
            return
        super().handle_error(request, client_address)

    def all_results(self, mid: int) -> list[dict]:
        """Every result of a measurement visible at the server's current time."""
        st = self.state
        with st.lock:
            m = st.measurements[mid]
            if mid in st.preloaded:
                return list(st.preloaded[mid])
            pids = list(st.msm_probes.get(mid, []))
            now = int(st.now())
            stopped = m.get("_stopped_at")
        horizon = now if stopped is None else min(now, stopped)
        out = []
        for pid in pids:
            for ts in _schedule(m, pid):
                if ts > horizon:
                    break
                out.append(st.source(m, pid, ts))  # type: ignore[misc]
        out.sort(key=lambda r: (r["timestamp"], r["prb_id"]))
        return out


def _mangle(body: Any, what: str) -> Any:
    """Give field ``what`` a wrong type in an answer (object or listing)."""
    objs = body["results"] if isinstance(body, dict) and isinstance(
        body.get("results"), list) else [body] if isinstance(body, dict) else []
    for o in objs:
        if not isinstance(o, dict):
            continue
        if what == "status" and "status" in o:
            o["status"] = "Ongoing"
        elif what == "start_time" and "start_time" in o:
            o["start_time"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(o["start_time"] or 0))
        elif what == "id" and "id" in o:
            o["id"] = None
        elif what == "balance" and "current_balance" in o:
            o["current_balance"] = None
    return body


def _schedule(m: dict, pid: int) -> Iterable[int]:
    offset = pid % 37 + 1
    if m["is_oneoff"]:
        yield m["start_time"] + offset
        return
    t = m["start_time"] + offset % m["interval"]
    while t <= m["stop_time"]:
        yield t
        t += m["interval"]


class AtlasStandIn:
    """Run the stand-in server; use as a context manager.

    Parameters
    ----------
    tls
        ``(ssl.SSLContext for the server, path of the CA bundle for the client)``.
    probes, anchors
        API v2 objects to serve.
    key
        The one valid API key (``None``: every authenticated call is 403).
    balance
        Credits on the account.
    source
        Result source for created measurements.
    now
        Server clock (default ``time.time``); tests move it to make results appear.
    """

    def __init__(self, *, tls: tuple[ssl.SSLContext, Path], probes: Iterable[dict],
                 anchors: Iterable[dict] = (), key: str | None = None,
                 balance: int = 1_000_000,
                 source: Callable[[dict, int, int], dict] | None = None,
                 now: Callable[[], float] = time.time) -> None:
        self._ctx, self.ca_bundle = tls
        self.state = _State(probes={p["id"]: p for p in probes}, anchors=list(anchors),
                            key=key, balance=balance, source=source, now=now)
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def server(self) -> str:
        assert self._httpd is not None
        return self._httpd.host_port

    def __enter__(self) -> AtlasStandIn:
        httpd = _Server(("127.0.0.1", 0), _Handler)
        httpd.socket = self._ctx.wrap_socket(httpd.socket, server_side=True)
        httpd.state = self.state
        httpd.host_port = f"127.0.0.1:{httpd.server_address[1]}"
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._httpd is not None
        self._httpd.shutdown()
        self._httpd.server_close()

    # -- test controls --------------------------------------------------------------
    def add_fault(self, fault: Fault) -> None:
        with self.state.lock:
            self.state.faults.append(fault)

    def random_faults(self, rate: float, kinds: Iterable[str], *, seed: int = 0) -> None:
        with self.state.lock:
            self.state.random_faults = (rate, tuple(kinds), random.Random(seed))

    def clear_faults(self) -> None:
        with self.state.lock:
            self.state.faults.clear()
            self.state.random_faults = None

    def preload(self, meta: dict, results: list[dict]) -> None:
        """Serve a recorded measurement (API object) and its recorded results."""
        with self.state.lock:
            self.state.measurements[meta["id"]] = meta
            self.state.preloaded[meta["id"]] = results

    def results_of(self, msm_id: int) -> list[dict]:
        assert self._httpd is not None
        return self._httpd.all_results(msm_id)

    def measurements(self) -> list[dict]:
        with self.state.lock:
            return [dict(m) for m in self.state.measurements.values()]

    def created_cost(self) -> int:
        """Credits of every measurement this server created (what it charged)."""
        with self.state.lock:
            return sum(int(m.get("_cost", 0)) for m in self.state.measurements.values())

    @property
    def log(self) -> list[tuple[str, str, int]]:
        with self.state.lock:
            return list(self.state.log)


def make_tls(tmp: Path) -> tuple[ssl.SSLContext, Path]:
    """A session CA (trustme) and a server context for 127.0.0.1 / localhost."""
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(ctx)
    bundle = Path(tmp) / "stand-in-ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    return ctx, bundle


def v2_measurement_from_v1(meta: dict) -> dict:
    """An API v1 measurement object (pierky bundle) in API v2 shape."""
    return {
        "id": meta["msm_id"], "type": meta["type"]["name"], "af": meta["af"],
        "description": meta.get("description") or "", "target": meta.get("dst_name"),
        "target_ip": meta.get("dst_addr"), "target_asn": meta.get("dst_asn"),
        "protocol": meta.get("protocol"), "paris": meta.get("paris", 0),
        "size": meta.get("size"), "max_hops": meta.get("maxhops"),
        "first_hop": meta.get("firsthop", 1), "is_oneoff": meta.get("is_oneoff", False),
        "interval": meta.get("interval"), "start_time": meta.get("start_time"),
        "stop_time": meta.get("stop_time"), "creation_time": meta.get("creation_time"),
        "tags": [], "is_public": meta.get("is_public", True),
        "participant_count": meta.get("participant_count"),
        "resolve_on_probe": meta.get("resolve_on_probe", False),
        "status": meta.get("status"),
    }


# ---------------------------------------------------------------------------- pytest fixtures
# Imported by the test modules (``from tests.probes.atlas_server import ...``).
import pytest  # noqa: E402

#: The API key the stand-in accepts in tests (a made-up value, searched for in outputs).
TEST_KEY = "px-test-KEY-6f1d2c9e8b7a4c3d"


@pytest.fixture(scope="session")
def atlas_tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, Path]:
    """Session CA + server TLS context; the CA bundle path for the client."""
    return make_tls(tmp_path_factory.mktemp("atlas-tls"))


@pytest.fixture(scope="session")
def atlas_world() -> Any:
    from probes.world import World

    return World.build(seed=0, size="small")


@pytest.fixture(scope="session")
def atlas_population(test_data: Path, atlas_world: Any) -> tuple[list[dict], list[dict]]:
    """Probes (real fixture probes + the world's) and anchors (the world's)."""
    return load_fixture_probes(test_data) + atlas_world.probes(), atlas_world.anchors()


@pytest.fixture()
def standin(atlas_tls: tuple[ssl.SSLContext, Path], atlas_population: tuple[list, list],
            atlas_world: Any, test_data: Path) -> Iterable[AtlasStandIn]:
    """A running stand-in with the test key, 10^6 credits and world-backed results."""
    fixture = FixtureResults.from_bundle(
        test_data / "ripe-atlas" / "pierky-ripe-atlas-monitor-fixtures" / "1033154.json")
    probes, anchors = atlas_population
    clock = _Clock(time.time())
    srv = AtlasStandIn(tls=atlas_tls, probes=probes, anchors=anchors, key=TEST_KEY,
                       source=WorldResults(atlas_world, fallback=fixture), now=clock)
    srv.clock = clock  # type: ignore[attr-defined]
    with srv:
        yield srv


class _Clock:
    """A settable clock for the server (``clock.t``)."""

    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t
