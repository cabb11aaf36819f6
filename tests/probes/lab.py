"""A network-namespace traceroute lab: real kernels forwarding real packets.

Topology (every address from the documentation ranges; router links are /30s of
198.51.100.0/24, the source sits in 192.0.2.0/24, destinations are /32s of 203.0.113.0/24
on the destination namespace's loopback; the same for IPv6 in 2001:db8::/32: link ``k`` is
2001:db8:<k+1>::/64, the source 2001:db8:ff::/64, destinations 2001:db8:ee::<n>)::

    src --- r1 --- r2 ===<  r3a  >=== r4 --- r5 (silent) --- r6 --- dst
                         \\  r3b  /

- r2 holds an equal-cost multipath default route over r3a and r3b with L4 hashing
  (``net.ipv{4,6}.fib_multipath_hash_policy=1``). What the kernel guarantees: the branch
  is a function of the hash seed and of the packet's source, destination, protocol and,
  for TCP/UDP, ports (no ICMP field, no IPv6 flow label under policy 1), so every packet
  of one flow takes one branch. (This holds for packets that reach r2 without a flow
  hash attached by the sender's IP stack, which r2 would reuse instead: the tracer's and
  scapy's raw packets carry none.) Which branch a given flow takes is a property of the
  seed and of the kernel's hash function, i.e. chance as far as a test is concerned: the
  lab fixes the seed where the kernel lets it (``net.ipv4.fib_multipath_hash_seed``,
  Linux >= 6.11, per namespace, used for IPv4 and IPv6; older kernels draw it at random
  once, so it is still constant for the lab's lifetime) and never assumes a mapping:
  :meth:`Lab.branches` MEASURES it, by sending one TTL-3 packet of each flow with scapy
  (not with the tracer under test) and reading which branch router answered. Tests pick
  their flows from that measurement and assert what follows from it, never that flows
  happen to spread.
- r4 routes back to the source through r3a only, so the address r4 answers from does not
  depend on the branch a probe took; the branch shows at hop 3 alone.
- r5 forwards but never answers: an nftables rule drops its outgoing ICMP time-exceeded
  (without ``nft``, a blackhole route for its own packets toward the source does).
- dst answers echo requests, sends port-unreachable for UDP and RST for TCP to closed ports.
- ICMP rate limiting is off in every namespace (``icmp_ratelimit=0``, high
  ``icmp_msgs_per_sec`` and ``icmp_msgs_burst``, ``net.ipv6.icmp.ratelimit=0``), so a fast
  tracer is never mistaken for a lossy path.

Namespace names carry a per-session prefix (``pxl<pid>-``) and are deleted by name.
Nothing is ever sent on the host's interfaces: probes leave from inside ``src``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

__all__ = ["Flow", "Lab", "lab_skip_reason", "build_lab"]

ROLES = ("src", "r1", "r2", "r3a", "r3b", "r4", "r5", "r6", "dst")
#: Links in order; link ``k`` is 198.51.100.(4k)/30, ``.4k+1`` on the left, ``.4k+2`` on the right.
LINKS = (("r1", "r2"), ("r2", "r3a"), ("r2", "r3b"), ("r3a", "r4"), ("r3b", "r4"),
         ("r4", "r5"), ("r5", "r6"), ("r6", "dst"))
SRC_ADDR = "192.0.2.2"
R1_SRC_SIDE = "192.0.2.1"
#: Destination addresses (the first ``n_dst`` of these are configured).
DST_BASE = "203.0.113."


def _link_addr(k: int, side: int) -> str:
    return f"198.51.100.{4 * k + 1 + side}"


def _link_addr6(k: int, side: int) -> str:
    """IPv6 twin of :func:`_link_addr`: link ``k`` is 2001:db8:<k+1>::/64."""
    return f"2001:db8:{k + 1}::{side + 1}"


SRC_ADDR6 = "2001:db8:ff::2"
R1_SRC_SIDE6 = "2001:db8:ff::1"
#: Source-side prefix (IPv6) the routers route back to.
SRC_NET6 = "2001:db8:ff::/64"


#: The seed r2's multipath hash uses where the kernel lets the lab set it (any nonzero
#: constant: it makes the branch of every flow the same from run to run; tests still never
#: assume which branch that is, they measure it with :meth:`Lab.branches`).
MULTIPATH_HASH_SEED = 0x5EED
_SEED_SYSCTL = Path("/proc/sys/net/ipv4/fib_multipath_hash_seed")


def _link(a: str, b: str) -> int:
    return LINKS.index((a, b))


class Flow(NamedTuple):
    """The packet fields r2's L4 multipath hash may read, besides the source address.

    ``sport`` is the source port (UDP/TCP) or the echo identifier (ICMP, ICMPv6);
    ``dport`` is 0 for ICMP.
    """

    dst: str
    proto: str
    sport: int
    dport: int = 0


# Runs inside the source namespace: one TTL-3 packet per flow (scapy, independent of the
# tracer under test), the branch router's time-exceeded names the branch. Unanswered flows
# are sent again; a flow still unanswered after every retry is reported, never guessed.
_DISCOVER = r"""
import json, sys
from scapy.all import ICMP, IP, TCP, UDP, IPv6, ICMPv6EchoRequest, Raw, conf, sr
conf.verb = 0
spec = json.loads(sys.argv[1])
def packet(dst, proto, sport, dport):
    ip = IPv6(dst=dst, hlim=spec["ttl"], fl=0) if ":" in dst else IP(dst=dst, ttl=spec["ttl"])
    if proto == "UDP":
        return ip / UDP(sport=sport, dport=dport) / Raw(b"pathexp-lab")
    if proto == "TCP":
        return ip / TCP(sport=sport, dport=dport, flags="S", seq=1)
    echo = ICMPv6EchoRequest(id=sport, seq=1) if ":" in dst else ICMP(type=8, id=sport, seq=1)
    return ip / echo / Raw(b"pathexp-lab")
def flow_of(p):
    dst = p[IPv6].dst if IPv6 in p else p[IP].dst
    for proto, layer in (("UDP", UDP), ("TCP", TCP)):
        if layer in p:
            return [dst, proto, p[layer].sport, p[layer].dport]
    return [dst, "ICMP", (p[ICMPv6EchoRequest] if ICMPv6EchoRequest in p else p[ICMP]).id, 0]
found = {}
for start in range(0, len(spec["flows"]), 32):  # small batches: no receive buffer overflows
    chunk = spec["flows"][start:start + 32]
    ans, _ = sr([packet(*f) for f in chunk], timeout=spec["timeout"], retry=3)
    for sent, reply in ans:
        found[json.dumps(flow_of(sent))] = reply.src
print(json.dumps(found))
"""


@dataclass(frozen=True)
class Lab:
    """Handles to a built lab: namespace names and the addresses tests expect."""

    prefix: str
    ns: dict[str, str]
    dsts: tuple[str, ...]
    src_addr: str = SRC_ADDR
    #: Expected responder per TTL (1-based) toward any destination; hop 3 is a branch set,
    #: hop 5 (r5) is silent (None), hop 7 is the destination itself.
    hop1: str = R1_SRC_SIDE
    hop2: str = _link_addr(0, 1)  # r2, facing r1
    hop3_a: str = _link_addr(1, 1)  # r3a, facing r2
    hop3_b: str = _link_addr(2, 1)  # r3b, facing r2
    hop4: str = _link_addr(3, 1)  # r4, facing r3a (its only route back)
    hop5_silent: str = _link_addr(5, 1)  # r5, facing r4 (never answers)
    hop6: str = _link_addr(6, 1)  # r6, facing r5
    dsts6: tuple[str, ...] = ()
    src_addr6: str = SRC_ADDR6
    extra: dict[str, str] = field(default_factory=dict)
    #: r2's multipath hash seed, or None when this kernel does not let the lab set it.
    hash_seed: int | None = None
    _branch_of: dict[Flow, str] = field(default_factory=dict, repr=False, compare=False)

    def expected(self, dst: str, *, branch: str) -> list[str | None]:
        """Responder per TTL 1..7 for a probe that takes ``branch`` ('a' or 'b')."""
        if ":" in dst:
            # IPv6 routers answer from the interface the probe came in on, so r4's
            # address depends on the branch too
            a = branch == "a"
            hop3, hop4 = (_link_addr6(1, 1), _link_addr6(3, 1)) if a else (_link_addr6(2, 1), _link_addr6(4, 1))
            return [R1_SRC_SIDE6, _link_addr6(0, 1), hop3, hop4, None, _link_addr6(6, 1), dst]
        hop3 = self.hop3_a if branch == "a" else self.hop3_b
        return [self.hop1, self.hop2, hop3, self.hop4, None, self.hop6, dst]

    def branch_addrs(self, dst: str) -> dict[str, str]:
        """The hop-3 address of each branch of the diamond for ``dst``'s family."""
        if ":" in dst:
            return {"a": _link_addr6(1, 1), "b": _link_addr6(2, 1)}
        return {"a": self.hop3_a, "b": self.hop3_b}

    def branches(self, flows: Iterable[Flow]) -> dict[Flow, str]:
        """Measure the branch ('a' or 'b') of the diamond each flow takes; cached.

        One TTL-3 packet per flow leaves the source namespace (built by scapy, not by the
        tracer under test); the branch router that answers names the branch. Valid for the
        lab's lifetime: the hash seed does not change while the namespaces exist.
        """
        wanted = list(dict.fromkeys(flows))
        todo = [f for f in wanted if f not in self._branch_of]
        if todo:
            spec = json.dumps({"ttl": 3, "timeout": 2.0, "flows": [list(f) for f in todo]})
            proc = subprocess.run(self.exec_argv("src", [sys.executable, "-c", _DISCOVER, spec]),
                                  capture_output=True, text=True, timeout=300, check=False)
            if proc.returncode != 0:
                raise RuntimeError(f"branch discovery failed: {proc.stderr.strip()}")
            answered = {Flow(*json.loads(k)): v for k, v in json.loads(proc.stdout).items()}
            for f in todo:
                names = {addr: b for b, addr in self.branch_addrs(f.dst).items()}
                if answered.get(f) not in names:
                    raise RuntimeError(f"branch discovery: {f} answered by {answered.get(f)}")
                self._branch_of[f] = names[answered[f]]
        return {f: self._branch_of[f] for f in wanted}

    def exec_argv(self, role: str, argv: Sequence[str]) -> list[str]:
        """``ip netns exec <ns> argv...``: run a command inside a namespace."""
        return ["ip", "netns", "exec", self.ns[role], *argv]


def lab_skip_reason() -> str | None:
    """Why the lab cannot be built here (None when it can)."""
    if os.geteuid() != 0:
        return "network-namespace lab needs root (CI runs as root)"
    if shutil.which("ip") is None:
        return "network-namespace lab needs `ip` (iproute2 package)"
    return None


def _run(argv: Sequence[str], *, inp: str | None = None) -> None:
    proc = subprocess.run(list(argv), input=inp, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"lab setup failed: {' '.join(argv)}: {proc.stderr.strip()}")


def existing_namespaces(prefix: str) -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    return [line.split()[0] for line in out.stdout.splitlines() if line.startswith(prefix)]


def destroy(prefix: str) -> None:
    """Delete every namespace whose name starts with ``prefix`` (veths go with them)."""
    for name in existing_namespaces(prefix):
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


def build_lab(prefix: str, *, n_dst: int = 64) -> Lab:
    """Create the namespaces, links, routes, sysctls and the silent router's firewall."""
    ns = {role: f"{prefix}{role}" for role in ROLES}
    dsts = tuple(f"{DST_BASE}{10 + i}" for i in range(n_dst))
    dsts6 = tuple(f"2001:db8:ee::{10 + i:x}" for i in range(n_dst))
    for name in ns.values():
        _run(["ip", "netns", "add", name])
    sysctls = [
        "net.ipv4.ip_forward=1",
        "net.ipv4.icmp_ratelimit=0",
        "net.ipv4.icmp_msgs_per_sec=100000",
        "net.ipv4.icmp_msgs_burst=100000",
        "net.ipv4.fib_multipath_hash_policy=1",
        "net.ipv4.conf.all.rp_filter=0",
        "net.ipv4.conf.default.rp_filter=0",
        "net.ipv6.conf.all.forwarding=1",
        "net.ipv6.icmp.ratelimit=0",
        "net.ipv6.fib_multipath_hash_policy=1",
        # no duplicate address detection: link-local addresses usable at once, so
        # neighbour discovery does not hold the first IPv6 replies back for a second
        "net.ipv6.conf.default.accept_dad=0",
        "net.ipv6.conf.all.accept_dad=0",
    ]
    for role in ROLES:
        _run(["ip", "netns", "exec", ns[role], "sysctl", "-q", "-w", *sysctls])
    # the ECMP router's hash seed (per namespace; one knob for IPv4 and IPv6), where settable
    seed = MULTIPATH_HASH_SEED if _SEED_SYSCTL.exists() else None
    if seed is not None:
        _run(["ip", "netns", "exec", ns["r2"], "sysctl", "-q", "-w",
              f"net.ipv4.fib_multipath_hash_seed={seed}"])
    cmds: list[list[str]] = []

    def ipn(role: str, *args: str) -> None:
        cmds.append(["ip", "-n", ns[role], *args])

    for role in ROLES:
        ipn(role, "link", "set", "lo", "up")
    # source <-> r1
    cmds.append(["ip", "link", "add", "eth0", "netns", ns["src"], "type", "veth",
                 "peer", "name", "eth-src", "netns", ns["r1"]])
    ipn("src", "addr", "add", f"{SRC_ADDR}/24", "dev", "eth0")
    ipn("r1", "addr", "add", f"{R1_SRC_SIDE}/24", "dev", "eth-src")
    ipn("src", "link", "set", "eth0", "up")
    ipn("r1", "link", "set", "eth-src", "up")
    for k, (a, b) in enumerate(LINKS):
        ia, ib = f"to-{b}", f"to-{a}"
        cmds.append(["ip", "link", "add", ia, "netns", ns[a], "type", "veth",
                     "peer", "name", ib, "netns", ns[b]])
        ipn(a, "addr", "add", f"{_link_addr(k, 0)}/30", "dev", ia)
        ipn(b, "addr", "add", f"{_link_addr(k, 1)}/30", "dev", ib)
        ipn(a, "link", "set", ia, "up")
        ipn(b, "link", "set", ib, "up")
    for d in dsts:
        ipn("dst", "addr", "add", f"{d}/32", "dev", "lo")
    # IPv6 twins of every address (nodad: usable at once, no duplicate detection wait)
    ipn("src", "addr", "add", f"{SRC_ADDR6}/64", "dev", "eth0", "nodad")
    ipn("r1", "addr", "add", f"{R1_SRC_SIDE6}/64", "dev", "eth-src", "nodad")
    for k, (a, b) in enumerate(LINKS):
        ipn(a, "addr", "add", f"{_link_addr6(k, 0)}/64", "dev", f"to-{b}", "nodad")
        ipn(b, "addr", "add", f"{_link_addr6(k, 1)}/64", "dev", f"to-{a}", "nodad")
    for d in dsts6:
        ipn("dst", "addr", "add", f"{d}/128", "dev", "lo", "nodad")
    # routes: toward destinations (default) and back to the source (192.0.2.0/24)
    ipn("src", "route", "add", "default", "via", R1_SRC_SIDE)
    ipn("r1", "route", "add", "default", "via", _link_addr(_link("r1", "r2"), 1))
    ipn("r2", "route", "add", "default",
        "nexthop", "via", _link_addr(_link("r2", "r3a"), 1), "weight", "1",
        "nexthop", "via", _link_addr(_link("r2", "r3b"), 1), "weight", "1")
    ipn("r2", "route", "add", "192.0.2.0/24", "via", _link_addr(_link("r1", "r2"), 0))
    for r3 in ("r3a", "r3b"):
        ipn(r3, "route", "add", "default", "via", _link_addr(_link(r3, "r4"), 1))
        ipn(r3, "route", "add", "192.0.2.0/24", "via", _link_addr(_link("r2", r3), 0))
    ipn("r4", "route", "add", "default", "via", _link_addr(_link("r4", "r5"), 1))
    ipn("r4", "route", "add", "192.0.2.0/24", "via", _link_addr(_link("r3a", "r4"), 0))
    ipn("r5", "route", "add", "default", "via", _link_addr(_link("r5", "r6"), 1))
    ipn("r5", "route", "add", "192.0.2.0/24", "via", _link_addr(_link("r4", "r5"), 0))
    ipn("r6", "route", "add", "203.0.113.0/24", "via", _link_addr(_link("r6", "dst"), 1))
    ipn("r6", "route", "add", "192.0.2.0/24", "via", _link_addr(_link("r5", "r6"), 0))
    ipn("dst", "route", "add", "default", "via", _link_addr(_link("r6", "dst"), 0))
    # the same routes for IPv6
    ipn("src", "-6", "route", "add", "default", "via", R1_SRC_SIDE6)
    ipn("r1", "-6", "route", "add", "default", "via", _link_addr6(_link("r1", "r2"), 1))
    ipn("r2", "-6", "route", "add", "default",
        "nexthop", "via", _link_addr6(_link("r2", "r3a"), 1), "dev", "to-r3a", "weight", "1",
        "nexthop", "via", _link_addr6(_link("r2", "r3b"), 1), "dev", "to-r3b", "weight", "1")
    ipn("r2", "-6", "route", "add", SRC_NET6, "via", _link_addr6(_link("r1", "r2"), 0))
    for r3 in ("r3a", "r3b"):
        ipn(r3, "-6", "route", "add", "default", "via", _link_addr6(_link(r3, "r4"), 1))
        ipn(r3, "-6", "route", "add", SRC_NET6, "via", _link_addr6(_link("r2", r3), 0))
    ipn("r4", "-6", "route", "add", "default", "via", _link_addr6(_link("r4", "r5"), 1))
    ipn("r4", "-6", "route", "add", SRC_NET6, "via", _link_addr6(_link("r3a", "r4"), 0))
    ipn("r5", "-6", "route", "add", "default", "via", _link_addr6(_link("r5", "r6"), 1))
    ipn("r5", "-6", "route", "add", SRC_NET6, "via", _link_addr6(_link("r4", "r5"), 0))
    ipn("r6", "-6", "route", "add", "2001:db8:ee::/64", "via", _link_addr6(_link("r6", "dst"), 1))
    ipn("r6", "-6", "route", "add", SRC_NET6, "via", _link_addr6(_link("r5", "r6"), 0))
    ipn("dst", "-6", "route", "add", "default", "via", _link_addr6(_link("r6", "dst"), 0))
    for argv in cmds:
        _run(argv)
    # r5: forwards, but its ICMP time-exceeded never leaves: an nftables rule drops it
    # (without nft, policy routing does: r5's own packets toward the source hit a
    # blackhole, while packets it forwards back from r6 use a table with the real route).
    if shutil.which("nft"):
        _run(["ip", "netns", "exec", ns["r5"], "nft", "-f", "-"], inp=(
            "table inet pathexp_lab {\n"
            "  chain out { type filter hook output priority 0; policy accept;\n"
            "    icmp type time-exceeded drop\n"
            "    icmpv6 type time-exceeded drop\n  }\n}\n"))
    else:
        back = _link_addr(_link("r4", "r5"), 0)
        _run(["ip", "-n", ns["r5"], "route", "replace", "blackhole", "192.0.2.0/24"])
        _run(["ip", "-n", ns["r5"], "route", "add", "192.0.2.0/24", "via", back, "table", "100"])
        _run(["ip", "-n", ns["r5"], "rule", "add", "iif", "to-r6", "lookup", "100", "priority", "100"])
        back6 = _link_addr6(_link("r4", "r5"), 0)
        _run(["ip", "-n", ns["r5"], "-6", "route", "replace", "blackhole", SRC_NET6])
        _run(["ip", "-n", ns["r5"], "-6", "route", "add", SRC_NET6, "via", back6, "table", "100"])
        _run(["ip", "-n", ns["r5"], "-6", "rule", "add", "iif", "to-r6", "lookup", "100", "priority", "100"])
    return Lab(prefix=prefix, ns=ns, dsts=dsts, dsts6=dsts6, hash_seed=seed)
