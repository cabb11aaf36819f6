"""Foreign traceroute output -> Atlas results: hand-written samples in each tool's format,
then the real tools' output from the netns lab checked against the lab's topology."""

from __future__ import annotations

import calendar
import json
import lzma
import shutil
import subprocess
from pathlib import Path

import pytest

from probes import store
from probes.convert import UNKNOWN_PRB_ID, convert_foreign
from probes.errors import InputFormatError
from probes.schema import LOCAL_MSM_ID_MIN
from probes.workspace import Campaign

# --- traceroute -n ---------------------------------------------------------------------------

TRACEROUTE = b"""\
traceroute to 203.0.113.40 (203.0.113.40), 30 hops max, 60 byte packets
 1  192.0.2.1  0.512 ms  0.470 ms  0.455 ms
 2  * * *
 3  198.51.100.6  5.123 ms 198.51.100.10  5.456 ms  5.789 ms
 4  198.51.100.14  9.010 ms !N * 9.300 ms !X
traceroute to example.net (192.0.2.200), 30 hops max, 60 byte packets
 1  gw.example (192.0.2.1)  1.000 ms  1.250 ms  1.500 ms
 2  192.0.2.200  2.000 ms !F-1500  2.100 ms !10  2.200 ms
"""


def test_traceroute_text_hand_checked() -> None:
    got = convert_foreign(TRACEROUTE, name="tr.txt")
    assert got is not None and len(got) == 2
    first, second = got
    assert (first["dst_addr"], first["dst_name"], first["af"], first["size"]) == ("203.0.113.40", "203.0.113.40", 4, 60)
    assert first["result"] == [
        {"hop": 1, "result": [{"from": "192.0.2.1", "rtt": 0.512}, {"from": "192.0.2.1", "rtt": 0.47},
                              {"from": "192.0.2.1", "rtt": 0.455}]},
        {"hop": 2, "result": [{"x": "*"}, {"x": "*"}, {"x": "*"}]},
        {"hop": 3, "result": [{"from": "198.51.100.6", "rtt": 5.123}, {"from": "198.51.100.10", "rtt": 5.456},
                              {"from": "198.51.100.10", "rtt": 5.789}]},
        {"hop": 4, "result": [{"from": "198.51.100.14", "rtt": 9.01, "err": "N"}, {"x": "*"},
                              {"from": "198.51.100.14", "rtt": 9.3, "err": "A"}]},
    ]
    assert (second["dst_name"], second["dst_addr"]) == ("example.net", "192.0.2.200")
    assert second["result"][0]["result"][2] == {"from": "192.0.2.1", "rtt": 1.5}
    assert [r.get("err") for r in second["result"][1]["result"]] == [4, 10, None]
    for res in got:
        assert res["origin"] == "converted:traceroute"
        assert res["prb_id"] == UNKNOWN_PRB_ID and res["timestamp"] == 0
        assert {"timestamp", "prb_id", "proto", "src_addr"} <= set(res["pathexp_unknown"])
        assert res["proto"] is None and res["src_addr"] is None
        assert LOCAL_MSM_ID_MIN <= res["msm_id"] < 2**32
    assert first["msm_id"] != second["msm_id"]
    # the same bytes give the same ids (idempotent ingest)
    assert [r["msm_id"] for r in convert_foreign(TRACEROUTE, name="again")] == [first["msm_id"], second["msm_id"]]


@pytest.mark.parametrize(
    "text, line, what",
    [
        (b"traceroute to 192.0.2.9 (192.0.2.9), 30 hops max\n 1  192.0.2.1  0.4 ms\n 2  192.0.2.5  abc ms\n", 3, "unexpected"),
        (b"traceroute to 192.0.2.9 (192.0.2.9), 30 hops max\n 1  192.0.2.1  0.4 ms\n 7  203.0.113", 3, "unexpected"),
        (b"traceroute to 192.0.2.9 (192.0.2.9), 30 hops max\n 2  192.0.2.1  0.4 ms\n 1  192.0.2.5  1 ms\n", 3, "out of order"),
        (b"traceroute to 192.0.2.9 (192.0.2.9)\n\n 1  0.4 ms\n", 3, "before any address"),
        (b"traceroute to 192.0.2.9 (192.0.2.9)\n 1  192.0.2.1  0.4 ms !Q?\n", 2, "annotation"),
        (b"traceroute to 192.0.2.9 (192.0.2.9)\nhello world\n", 2, "not a traceroute hop line"),
        (b"traceroute to 192.0.2.9 (192.0.2.9)\n 1\n", 2, "without replies"),
    ],
)
def test_damaged_traceroute_names_the_line(text: bytes, line: int, what: str) -> None:
    with pytest.raises(InputFormatError, match=rf"^bad\.txt: line {line}: .*{what}"):
        convert_foreign(text, name="bad.txt")


# --- mtr --report / --json -------------------------------------------------------------------

MTR_REPORT = b"""\
Start: 2024-03-05T10:11:12+0100
HOST: lab-host                    Loss%   Snt   Last   Avg  Best  Wrst StDev
  1.|-- 192.0.2.1                  0.0%    10    0.4   0.5   0.3   0.9   0.2
  2.|-- ???                       100.0    10    0.0   0.0   0.0   0.0   0.0
  3.|-- 198.51.100.10             20.0%    10    1.2   1.3   1.1   1.6   0.1
        198.51.100.6
  4.|-- 203.0.113.7                0.0%    10    2.0   2.1   1.9   2.6   0.2
Start: Tue Mar  5 10:20:00 2024
HOST: lab-host                    Loss%   Snt   Last   Avg  Best  Wrst StDev
  1.|-- 192.0.2.1                  0.0%     2    0.4   0.5   0.3   0.9   0.2
"""


def test_mtr_report_hand_checked() -> None:
    got = convert_foreign(MTR_REPORT, name="mtr.txt")
    assert got is not None and len(got) == 2
    a, b = got
    assert a["timestamp"] == calendar.timegm((2024, 3, 5, 9, 11, 12, 0, 0, 0))
    assert b["timestamp"] == calendar.timegm((2024, 3, 5, 10, 20, 0, 0, 0, 0))
    assert "timestamp_utc" in b["pathexp_inferred"] and "timestamp_utc" not in a["pathexp_inferred"]
    assert [h["result"] for h in a["result"]] == [
        [{"from": "192.0.2.1", "rtt": 0.3}],
        [{"x": "*"}],
        [{"from": "198.51.100.10", "rtt": 1.1}, {"from": "198.51.100.6"}],
        [{"from": "203.0.113.7", "rtt": 1.9}],
    ]
    assert a["result"][2]["pathexp_mtr"] == {"loss_pct": 20.0, "sent": 10.0, "last": 1.2, "avg": 1.3,
                                             "best": 1.1, "worst": 1.6, "stdev": 0.1}
    assert a["dst_addr"] is None and "dst_addr" in a["pathexp_unknown"]
    assert a["origin"] == "converted:mtr" and a["pathexp_mtr_host"] == "lab-host"


@pytest.mark.parametrize(
    "text, line, what",
    [
        (b"Start: 2024-03-05T10:11:12+0100\nHOST: h Loss% Snt Last Avg Best Wrst StDev\n  1.|-- 192.0.2.1 0.0% 10 0.4 0.5\n", 3, "expected 7 mtr columns"),
        (b"Start: 2024-03-05T10:11:12+0100\nHOST: h Loss% Snt Last Avg Best Wrst StDev\n  1.|-- 192.0.2.1 0.0% 10 x 0.5 0.3 0.9 0.2\n", 3, "bad mtr value"),
        (b"Start: yesterday\n", 1, "start time"),
        (b"Start: 2024-03-05T10:11:12+0100\nHOST: h Loss% Snt Bogus\n", 2, "columns"),
        (b"Start: 2024-03-05T10:11:12+0100\n  1.|-- 192.0.2.1 0.0% 10 0.4 0.5 0.3 0.9 0.2\n", 2, "before the HOST"),
        (b"Start: 2024-03-05T10:11:12+0100\nHOST: h Loss% Snt Last Avg Best Wrst StDev\n  1.|-- router.example 0.0% 10 0.4 0.5 0.3 0.9 0.2\n", 3, "-n"),
    ],
)
def test_damaged_mtr_report_names_the_line(text: bytes, line: int, what: str) -> None:
    with pytest.raises(InputFormatError, match=rf"^m\.txt: line {line}: .*{what}"):
        convert_foreign(text, name="m.txt")


def _mtr_json(count_as_str: bool) -> bytes:
    def hub(n: int, host: str, loss: float, best: float) -> dict:
        return {"count": str(n) if count_as_str else n, "host": host, "Loss%": loss, "Snt": 5,
                "Last": best, "Avg": best + 0.1, "Best": best, "Wrst": best + 0.3, "StDev": 0.05}

    doc = {"report": {"mtr": {"src": "lab-host", "dst": "203.0.113.7", "tos": 0, "tests": 5,
                              "psize": "64", "bitpattern": "0x00"},
                      "hubs": [hub(1, "192.0.2.1", 0.0, 0.25), hub(2, "???", 100.0, 0.0),
                               hub(3, "203.0.113.7", 0.0, 1.5)]}}
    return json.dumps(doc, indent=4).encode()


@pytest.mark.parametrize("count_as_str", [False, True])  # mtr 0.92 wrote "count": "1"
def test_mtr_json_hand_checked(count_as_str: bool) -> None:
    (res,) = convert_foreign(_mtr_json(count_as_str), name="mtr.json")
    assert (res["dst_addr"], res["size"], res["timestamp"]) == ("203.0.113.7", 64, 0)
    assert [h["hop"] for h in res["result"]] == [1, 2, 3]
    assert [h["result"] for h in res["result"]] == [
        [{"from": "192.0.2.1", "rtt": 0.25}], [{"x": "*"}], [{"from": "203.0.113.7", "rtt": 1.5}]
    ]
    assert "timestamp" in res["pathexp_unknown"] and "dst_addr" not in res["pathexp_unknown"]


def test_damaged_mtr_json_names_the_line() -> None:
    text = _mtr_json(False)
    cut = text[: text.index(b'"count": 3')] + b'"count": 3,,\n}'
    with pytest.raises(InputFormatError, match=r"^m\.json: line \d+: damaged mtr JSON"):
        convert_foreign(cut, name="m.json")


# --- scamper JSON ----------------------------------------------------------------------------


def _sc_hop(addr: str, ttl: int, pid: int = 1, **extra) -> dict:
    hop = {"addr": addr, "probe_ttl": ttl, "probe_id": pid, "probe_size": 40, "rtt": 0.5 + ttl,
           "reply_ttl": 65 - ttl, "reply_size": 68, "icmp_type": 11, "icmp_code": 0, "icmp_q_ttl": 1}
    hop.update(extra)
    return hop


def _sc_trace(method: str, hops: list[dict], **extra) -> dict:
    t = {"type": "trace", "version": "0.1", "userid": 0, "method": method, "src": "192.0.2.2",
         "dst": "203.0.113.10", "sport": 41000, "dport": 80, "stop_reason": "COMPLETED",
         "start": {"sec": 1700000000, "usec": 5, "ftime": "2023-11-14 22:13:20"},
         "hop_count": 4, "attempts": 2, "hoplimit": 0, "firsthop": 1, "wait": 1,
         "probe_size": 40, "hops": hops}
    t.update(extra)
    return t


SCAMPER = "\n".join(json.dumps(o) for o in [
    {"type": "cycle-start", "list_name": "default", "id": 0, "hostname": "vm", "start_time": 1700000000},
    _sc_trace("tcp", [
        _sc_hop("192.0.2.1", 1),
        _sc_hop("198.51.100.6", 2, pid=2, icmp_q_ttl=2),
        {"addr": "203.0.113.10", "probe_ttl": 4, "probe_id": 1, "rtt": 0.9, "reply_ttl": 60,
         "reply_size": 40, "tcp_flags": 20},
    ]),
    _sc_trace("udp-paris", [_sc_hop("192.0.2.1", 1),
                            _sc_hop("203.0.113.10", 2, icmp_type=3, icmp_code=3),
                            ], hop_count=2, dst="203.0.113.10"),
    {"type": "cycle-stop", "list_name": "default", "id": 0, "hostname": "vm", "stop_time": 1700000002},
]).encode() + b"\n"


def test_scamper_json_hand_checked() -> None:
    tcp, udp = convert_foreign(SCAMPER, name="sc.json")
    assert (tcp["proto"], tcp["timestamp"], tcp["src_addr"], tcp["paris_id"]) == ("TCP", 1700000000, "192.0.2.2", 0)
    assert tcp["result"] == [
        {"hop": 1, "result": [{"from": "192.0.2.1", "rtt": 1.5, "size": 40, "ttl": 64}]},
        {"hop": 2, "result": [{"x": "*"}, {"from": "198.51.100.6", "rtt": 2.5, "size": 40, "ttl": 63, "ittl": 2}]},
        {"hop": 3, "result": [{"x": "*"}, {"x": "*"}]},
        {"hop": 4, "result": [{"from": "203.0.113.10", "rtt": 0.9, "size": 0, "ttl": 60, "flags": "RA"}]},
    ]
    assert tcp["from"] is None and "from" in tcp["pathexp_unknown"]  # 192.0.2.2 is not public
    assert udp["proto"] == "UDP" and udp["paris_id"] is None and "paris_id" in udp["pathexp_unknown"]
    assert udp["result"][-1]["result"] == [{"from": "203.0.113.10", "rtt": 2.5, "size": 40, "ttl": 63}]
    assert tcp["pathexp_scamper"]["method"] == "tcp" and tcp["origin"] == "converted:scamper"


def test_damaged_scamper_names_the_line() -> None:
    lines = SCAMPER.split(b"\n")
    lines[2] = lines[2][:50]
    with pytest.raises(InputFormatError, match=r"^sc\.json: line 3: damaged scamper JSON"):
        convert_foreign(b"\n".join(lines), name="sc.json")
    ping = b'{"type":"cycle-start","id":0}\n{"type":"ping","dst":"192.0.2.1"}\n'
    with pytest.raises(InputFormatError, match=r"line 2: scamper 'ping' record is not a traceroute"):
        convert_foreign(ping, name="sc.json")
    broken = json.dumps(_sc_trace("icmp-paris", [{"probe_ttl": 1}])).encode()
    with pytest.raises(InputFormatError, match=r"line 1: scamper trace record"):
        convert_foreign(broken, name="sc.json")


# --- not foreign ---------------------------------------------------------------------------


def test_atlas_input_is_left_alone(test_data: Path) -> None:
    sagan = (test_data / "ripe-atlas" / "traceroutes" / "sagan_test_traceroutes.ndjson").read_bytes()
    assert convert_foreign(sagan, name="sagan.ndjson") is None
    first = json.loads(sagan.split(b"\n", 1)[0])
    assert convert_foreign(json.dumps(first, indent=2).encode(), name="one.json") is None
    assert convert_foreign(json.dumps([first, first]).encode(), name="arr.json") is None
    fixture = test_data / "ripe-atlas" / "pierky-ripe-atlas-monitor-fixtures" / "3082698.json"
    assert convert_foreign(fixture.read_bytes(), name=fixture.name) is None
    with lzma.open(test_data / "ripe-atlas" / "traceroutes" / "afrinren_traceroutes.ndjson.xz") as fh:
        head = b"".join(fh.readline() for _ in range(50))
    assert convert_foreign(head, name="afrinren") is None
    assert convert_foreign(b"hello\nworld\n", name="x.txt") is None
    assert convert_foreign(b"", name="empty") is None
    assert convert_foreign(b"\xff\xfe\x00junk", name="bin") is None


def test_ingest_files_routes_foreign_formats(tmp_path: Path) -> None:
    paths = {"tr.txt": TRACEROUTE, "mtr.txt": MTR_REPORT, "mtr.json": _mtr_json(False), "sc.json": SCAMPER}
    for name, data in paths.items():
        (tmp_path / name).write_bytes(data)
    camp = Campaign("conv", tmp_path / "ws")
    report = store.ingest_files(camp, [str(tmp_path / n) for n in paths])
    assert report.added == 2 + 2 + 1 + 2 and not report.drops
    traces = store.read_traces(camp)
    origins = sorted(traces.column("origin").to_pylist())
    assert origins == ["converted:mtr"] * 3 + ["converted:scamper"] * 2 + ["converted:traceroute"] * 2
    reached = dict(zip(traces.column("dst_addr").to_pylist(), traces.column("destination_reached").to_pylist(), strict=True))
    assert reached["192.0.2.200"] is True and reached["203.0.113.40"] is False
    again = store.ingest_files(camp, [str(tmp_path / n) for n in paths])
    assert again.added == 0 and again.duplicates == 7


# --- the real tools in the lab ---------------------------------------------------------------


def _run(lab, argv: list[str]) -> bytes:
    if shutil.which(argv[0]) is None:
        pytest.skip(f"{argv[0]} not installed")
    proc = subprocess.run(lab.exec_argv("src", argv), capture_output=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _check_against_lab(lab, res: dict, dst: str, *, per_hop_exact: bool = True) -> None:
    got = {h["hop"]: {r.get("from") for r in h["result"]} for h in res["result"]}
    want_a = lab.expected(dst, branch="a")
    assert sorted(got) == list(range(1, 8))
    for ttl, want in enumerate(want_a, start=1):
        branch_dependent = (3, 4) if ":" in dst else (3,)  # IPv6 r4 answers per branch
        if ttl in branch_dependent:
            options = {lab.expected(dst, branch=b)[ttl - 1] for b in "ab"}
            assert got[ttl] and got[ttl] <= options
            if per_hop_exact:
                assert len(got[ttl]) == 1
        else:
            assert got[ttl] == {want}, (ttl, got[ttl])


@pytest.mark.netns
@pytest.mark.parametrize("flag", [[], ["-I"], ["-T"], ["-6"]])
def test_real_traceroute_output_from_the_lab(netns_lab, flag: list[str]) -> None:
    dst = netns_lab.dsts6[20] if flag == ["-6"] else netns_lab.dsts[20]
    out = _run(netns_lab, ["traceroute", "-n", *flag, "-w", "0.5", "-q", "2", dst])
    (res,) = convert_foreign(out, name="traceroute.out")
    _check_against_lab(netns_lab, res, dst, per_hop_exact=False)  # classic: may show both branches


@pytest.mark.netns
def test_real_mtr_output_from_the_lab(netns_lab) -> None:
    dst = netns_lab.dsts[21]
    report = _run(netns_lab, ["mtr", "-n", "--report", "-c", "2", "-i", "0.1", "-G", "0.3", dst])
    (res,) = convert_foreign(report, name="mtr.txt")
    assert res["result"][-1]["result"][0]["from"] == dst
    _check_against_lab(netns_lab, res, dst, per_hop_exact=False)
    doc = _run(netns_lab, ["mtr", "-n", "--json", "-c", "2", "-i", "0.1", "-G", "0.3", dst])
    (res,) = convert_foreign(doc, name="mtr.json")
    assert res["dst_addr"] == dst
    _check_against_lab(netns_lab, res, dst)


@pytest.mark.netns
@pytest.mark.parametrize("method", ["udp-paris", "icmp-paris", "tcp -d 80"])
def test_real_scamper_json_from_the_lab(netns_lab, method: str, tmp_path: Path) -> None:
    dsts = list(netns_lab.dsts[22:26])
    out = _run(netns_lab, ["scamper", "-O", "json", "-p", "2000", "-c", f"trace -P {method} -q 2 -w 1", "-i", *dsts])
    got = convert_foreign(out, name="scamper.json")
    assert sorted(r["dst_addr"] for r in got) == dsts
    for res in got:
        _check_against_lab(netns_lab, res, res["dst_addr"])
        assert res["result"][4]["result"] == [{"x": "*"}, {"x": "*"}]  # the silent router, 2 attempts
    (tmp_path / "scamper.json").write_bytes(out)
    camp = Campaign("sc", tmp_path / "ws")
    report = store.ingest_files(camp, [str(tmp_path / "scamper.json")])
    assert report.added == 4
    assert all(store.read_traces(camp).column("destination_reached").to_pylist())
