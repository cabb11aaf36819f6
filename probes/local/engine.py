"""The local traceroute engine: raw sockets, one event loop, many traces, one pps cap.

One thread runs every trace. Each trace probes one hop at a time, sending its ``attempts``
probes for that hop (each one paced by the global token bucket, traces served round
robin), and moves to the next hop when every probe of the hop is answered or timed out.
Replies are read from kernel-filtered raw sockets (IPPROTO_ICMP, plus IPPROTO_TCP for TCP
traces) and matched on the probe tuple (:func:`probes.local.packets.probe_key`).

Probes are crafted with scapy and sent on an IPPROTO_RAW socket (IP_HDRINCL), as scapy's
``L3RawSocket`` does. Replies are not read through scapy's ``L3RawSocket``/``L3PacketSocket``:
those read an AF_PACKET socket that sees every frame of the host and need libpcap (or
tcpdump) to compile a BPF filter; the raw ICMP/TCP sockets are filtered by the kernel and
need no libpcap.
"""

from __future__ import annotations

import errno
import heapq
import logging
import os
import select
import socket
import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from probes.errors import ProbeError, RawSocketPermission
from probes.local.pacing import TokenBucket
from probes.local.packets import ProbeBuilder, ProbeSpec, Reply, parse_reply, parse_reply6

__all__ = ["TraceJob", "HopProbe", "RawSockets", "run_jobs", "permission_message"]

log = logging.getLogger(__name__)

_RCVBUF = 4 << 20
_CMSG6 = socket.CMSG_SPACE(4)  # room for the IPV6_HOPLIMIT ancillary int


def permission_message(exc: OSError) -> str:
    """What to do when raw sockets are refused: run as root, or a private capable interpreter.

    ``setcap`` needs a real binary (a venv's ``python`` is a link), and granting the
    capability to the system interpreter would give raw sockets to every program it runs;
    so the hint copies the interpreter into the virtual environment and grants it there.
    """
    real = os.path.realpath(sys.executable)
    copy = os.path.join(sys.prefix, "bin", "python-netraw")
    return (
        f"raw sockets are not permitted ({exc.strerror or exc}): run as root, or give a private "
        f"copy of the interpreter the capability: `cp {real} {copy} && sudo setcap "
        f"cap_net_raw+ep {copy}`, then run `{copy} -m analysis.cli trace ...` (not setcap on "
        f"{real}: every program it runs would get raw sockets)"
    )


class RawSockets:
    """Send sockets (IPPROTO_RAW, header included) and kernel-filtered receive sockets.

    IPv4: replies arrive with their IP header (ICMP, and TCP for TCP traces). IPv6 raw
    sockets deliver only the payload; the source comes from ``recvmsg`` and the hop limit
    from ancillary data (IPV6_RECVHOPLIMIT).
    """

    def __init__(self, *, tcp: bool, v4: bool = True, v6: bool = False) -> None:
        self._socks: list[socket.socket] = []
        self.out: dict[int, socket.socket] = {}
        #: (socket, address family, protocol) of each receive socket
        self.ins: list[tuple[socket.socket, int, int]] = []
        try:
            if v4:
                self.out[4] = self._open(socket.AF_INET, socket.IPPROTO_RAW)
                self.out[4].setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
                self._listen(socket.AF_INET, socket.IPPROTO_ICMP)
                if tcp:
                    self._listen(socket.AF_INET, socket.IPPROTO_TCP)
            if v6:
                self.out[6] = self._open(socket.AF_INET6, socket.IPPROTO_RAW)
                self._listen(socket.AF_INET6, socket.IPPROTO_ICMPV6)
                if tcp:
                    self._listen(socket.AF_INET6, socket.IPPROTO_TCP)
        except PermissionError as exc:
            self.close()
            raise RawSocketPermission(permission_message(exc)) from exc
        except OSError as exc:
            self.close()
            if exc.errno in (errno.EPERM, errno.EACCES):
                raise RawSocketPermission(permission_message(exc)) from exc
            raise ProbeError(f"cannot open raw socket: {exc}") from exc

    def _open(self, family: int, proto: int) -> socket.socket:
        s = socket.socket(family, socket.SOCK_RAW, proto)
        self._socks.append(s)
        return s

    def _listen(self, family: int, proto: int) -> None:
        s = self._open(family, proto)
        s.setblocking(False)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF)
        if family == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
        self.ins.append((s, family, proto))

    def send(self, packet: bytes, dst: str, af: int) -> None:
        self.out[af].sendto(packet, (dst, 0))

    def read(self, entry: tuple[socket.socket, int, int]) -> Iterator[Reply | None]:
        """Every packet waiting on one receive socket, dissected (None: not a reply)."""
        sock, family, proto = entry
        while True:
            try:
                if family == socket.AF_INET:
                    data = sock.recv(65535)
                    yield parse_reply(data)
                    continue
                data, anc, _flags, addr = sock.recvmsg(65535, _CMSG6)
            except BlockingIOError:
                return
            hlim = None
            for level, kind, value in anc:
                if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_HOPLIMIT:
                    hlim = int.from_bytes(value[:4], sys.byteorder)
            yield parse_reply6(data, addr[0].split("%", 1)[0], hlim, proto)

    def close(self) -> None:
        for s in self._socks:
            s.close()
        self._socks.clear()

    def __enter__(self) -> RawSockets:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(eq=False)
class HopProbe:
    """One probe of one hop and what came back (``reply`` None = timeout)."""

    ttl: int
    attempt: int
    spec: ProbeSpec
    sent: float = 0.0
    rtt_ms: float | None = None
    reply: Reply | None = None


@dataclass(eq=False)
class TraceJob:
    """One traceroute toward one destination with one flow: its plan, state and outcome."""

    dst: str
    src: str
    proto: str
    paris: bool
    sport: int  # UDP/TCP source port or ICMP id of the flow
    dport: int
    first_hop: int
    max_hops: int
    attempts: int
    stop_after_silent: int
    payload_len: int = 12
    # state
    ttl: int = 0
    tag: int = 0
    to_send: int = 0
    unresolved: int = 0
    silent_run: int = 0
    done: bool = False
    stop_reason: str = ""
    started: float = 0.0
    ended: float = 0.0
    hops: list[list[HopProbe]] = field(default_factory=list)
    destination_reached: bool = False

    def start(self) -> None:
        self.started = time.time()
        self.ttl = self.first_hop - 1
        self._next_hop()

    def _next_hop(self) -> None:
        self.ttl += 1
        self.to_send = self.attempts
        self.unresolved = self.attempts
        self.hops.append([])

    def next_probe(self) -> HopProbe:
        self.tag += 1
        attempt = self.attempts - self.to_send
        self.to_send -= 1
        sport = self.sport
        if self.proto == "TCP" and not self.paris:
            sport = 1024 + (self.sport * 7 + self.tag) % 64000
        spec = ProbeSpec(
            self.src, self.dst, self.proto, self.ttl, self.tag, sport, self.dport,
            self.paris, self.payload_len,
        )
        probe = HopProbe(self.ttl, attempt, spec)
        self.hops[-1].append(probe)
        return probe

    def resolve(self) -> None:
        """One probe of the current hop got its reply or timed out."""
        self.unresolved -= 1
        if self.unresolved > 0 or self.to_send > 0:
            return
        hop = self.hops[-1]
        replies = [p.reply for p in hop if p.reply is not None]
        if any(r.src == self.dst for r in replies):
            self.destination_reached = True
            return self._finish("completed")
        if any(r.icmp_type == 3 for r in replies):
            return self._finish("unreachable")
        self.silent_run = 0 if replies else self.silent_run + 1
        if self.stop_after_silent and self.silent_run >= self.stop_after_silent:
            return self._finish("gaplimit")
        if self.ttl >= self.max_hops:
            return self._finish("hoplimit")
        self._next_hop()

    def _finish(self, reason: str) -> None:
        self.done = True
        self.stop_reason = reason
        self.ended = time.time()


def run_jobs(
    jobs: Sequence[TraceJob],
    *,
    pps: float,
    concurrency: int,
    timeout: float,
    sockets: RawSockets,
    clock: Callable[[], float] = time.perf_counter,
) -> Counter[str]:
    """Run every job to completion; return counters (probes sent, replies matched, ...)."""
    stats: Counter[str] = Counter()
    burst = max(1, min(10, int(pps // 100)))
    bucket = TokenBucket(pps, burst=burst, clock=clock)
    waiting = deque(jobs)
    active = 0
    # traces with a probe to send, served in admission order: the earliest trace goes
    # first, so silent hops of different traces overlap their waits (as scamper does)
    ready: list[tuple[int, TraceJob]] = []
    in_ready: set[int] = set()
    order = {id(job): i for i, job in enumerate(jobs)}

    def make_ready(job: TraceJob) -> None:
        if id(job) not in in_ready:
            in_ready.add(id(job))
            heapq.heappush(ready, (order[id(job)], job))
    outstanding: dict[tuple[str, int, int, int, int], tuple[TraceJob, HopProbe]] = {}
    deadlines: list[tuple[float, int, tuple[str, int, int, int, int]]] = []
    expired: set[tuple[str, int, int, int, int]] = set()
    counter = 0
    remaining = len(jobs)
    builder = ProbeBuilder()
    by_sock = {e[0]: e for e in sockets.ins}

    def admit() -> None:
        nonlocal active
        while waiting and active < concurrency:
            job = waiting.popleft()
            job.start()
            active += 1
            make_ready(job)

    def after_resolve(job: TraceJob) -> None:
        nonlocal active, remaining
        if job.done:
            active -= 1
            remaining -= 1
            admit()
        elif job.to_send > 0:
            make_ready(job)

    admit()
    while remaining > 0:
        # send while tokens last, earliest-admitted trace first
        while ready and bucket.take():
            _, job = ready[0]
            probe = job.next_probe()
            if job.to_send == 0:
                heapq.heappop(ready)
                in_ready.discard(id(job))
            packet = builder.build(probe.spec)
            probe.sent = clock()
            try:
                sockets.send(packet, job.dst, probe.spec.af)
            except OSError as exc:
                raise ProbeError(f"sending a probe to {job.dst} failed: {exc}") from exc
            stats["probes_sent"] += 1
            key = probe.spec.key
            outstanding[key] = (job, probe)
            counter += 1
            heapq.heappush(deadlines, (probe.sent + timeout, counter, key))
        now = clock()
        wait = 0.05
        if deadlines:
            wait = min(wait, max(0.0, deadlines[0][0] - now))
        if ready:
            wait = min(wait, bucket.wait_time())
        readable, _, _ = select.select(list(by_sock), [], [], wait)
        for sock in readable:
            for reply in sockets.read(by_sock[sock]):
                t_rx = clock()
                if reply is None:
                    continue
                entry = outstanding.pop(reply.key, None)
                if entry is None:
                    stats["late_replies" if reply.key in expired else "unmatched_replies"] += 1
                    continue
                job, probe = entry
                probe.reply = reply
                probe.rtt_ms = (t_rx - probe.sent) * 1000.0
                stats["replies_matched"] += 1
                job.resolve()
                after_resolve(job)
        now = clock()
        while deadlines and deadlines[0][0] <= now:
            _, _, key = heapq.heappop(deadlines)
            entry = outstanding.pop(key, None)
            if entry is None:
                continue
            expired.add(key)
            stats["timeouts"] += 1
            job, _probe = entry
            job.resolve()
            after_resolve(job)
    return stats
