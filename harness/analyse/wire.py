"""Close delay on the wire: per-connection FIN/RST timing from HAProxy's packet capture.

A tcpdump sidecar in HAProxy's network namespace writes only the lifecycle packets of
the frontend ports (SYN, FIN, RST; ``-s 128``). From them this module gets, per TCP
connection, when the client sent its first FIN and when the proxy answered with its
first FIN or RST: the "close delay" of DESIGN.md, measured where HAProxy sees it. The
client probe measures the same thing with its monotonic clock; :func:`agreement` joins
the two so a report can show that they agree.

Conventions:

- The *client side* of a packet is the endpoint whose port is not in ``server_ports``;
  packets with neither or both ports in ``server_ports`` are ignored.
- A *connection* is a 4-tuple from a client SYN to the next client SYN with a different
  sequence number on the same 4-tuple (port reuse). A retransmitted SYN (same ISN) stays
  in the same connection. Packets seen before any SYN (capture started late) open a
  connection with ``syn_ts=None``.
- Only the *first* FIN of each side and the proxy's first FIN-or-RST count:
  retransmissions and the RSTs that often follow a FIN do not move the timestamps.
- Each side's whole *close sequence* is kept too (``client_close``, ``proxy_close``):
  ``fin``, ``rst``, ``fin-rst`` (a FIN, then an RST: what ``option nolinger`` or an
  abortive close after a half-close sends) or ``none``. RFC 9293 section 3.6 (closing)
  and 3.5.2 (reset) for the two ways a side can end.
"""

from __future__ import annotations

import socket
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import dpkt

from harness.analyse.calibration import WIRE_TOLERANCE_MS
from harness.analyse.distribution import nearest_rank

WireEnd = Literal["fin", "rst", "none"]
Closer = Literal["client", "proxy"]
# How one side ended its half of a connection, in the order its segments came.
CloseSequence = Literal["fin", "rst", "fin-rst", "none"]
CLOSE_SEQUENCES: tuple[CloseSequence, ...] = ("fin", "rst", "fin-rst", "none")

# Link types (pcap header "linktype"). libpcap >= 1.10 writes LINUX_SLL2 for `-i any`,
# older ones LINUX_SLL; `-i lo` / `-i eth0` give Ethernet. Raw IP appears as 101 in
# files, though some platforms' DLT_RAW values (12, 14) leak into old files.
_ETHERNET = 1
_LINUX_SLL = 113
_LINUX_SLL2 = 276
_RAW = (101, 12, 14)

_FIN = dpkt.tcp.TH_FIN
_SYN = dpkt.tcp.TH_SYN
_RST = dpkt.tcp.TH_RST
_ACK = dpkt.tcp.TH_ACK


@dataclass(frozen=True)
class WireClose:
    """How one TCP connection through a frontend port ended, as the capture saw it.

    ``proxy_end_ts`` is the proxy's first FIN or RST, whenever it came; ``end`` says which
    it was. ``delay_ms`` is set only when the client closed first (``first_closer ==
    "client"``) and the proxy then ended the connection: when the proxy's FIN came before
    the client's, there is no close delay to speak of. ``first_closer`` counts a client
    RST as the client closing; it is None when neither side sent FIN or RST.
    """

    client_ip: str
    client_port: int
    server_ip: str
    server_port: int
    syn_ts: float | None
    client_fin_ts: float | None
    proxy_end_ts: float | None
    end: WireEnd
    delay_ms: float | None
    first_closer: Closer | None
    client_close: CloseSequence = "none"
    proxy_close: CloseSequence = "none"


def _sequence(fin: bool, rst: bool) -> CloseSequence:
    """A side's close sequence from what it sent (an RST ends a side: no FIN after it)."""
    if fin and rst:
        return "fin-rst"
    return "fin" if fin else "rst" if rst else "none"


@dataclass
class _Conn:
    """Mutable state of one connection while the capture is read."""

    key: tuple[str, int, str, int]
    syn_ts: float | None = None
    syn_seq: int | None = None
    client_fin_ts: float | None = None
    proxy_end_ts: float | None = None
    end: WireEnd = "none"
    first_closer: Closer | None = None
    # What each side sent ("fin", "rst"); a FIN after its own RST is not counted.
    client_sent: set[str] = field(default_factory=set)
    proxy_sent: set[str] = field(default_factory=set)

    def freeze(self) -> WireClose:
        delay = None
        if (
            self.first_closer == "client"
            and self.client_fin_ts is not None
            and self.proxy_end_ts is not None
        ):
            delay = (self.proxy_end_ts - self.client_fin_ts) * 1000.0
        client_ip, client_port, server_ip, server_port = self.key
        return WireClose(
            client_ip=client_ip,
            client_port=client_port,
            server_ip=server_ip,
            server_port=server_port,
            syn_ts=self.syn_ts,
            client_fin_ts=self.client_fin_ts,
            proxy_end_ts=self.proxy_end_ts,
            end=self.end,
            delay_ms=delay,
            first_closer=self.first_closer,
            client_close=_sequence("fin" in self.client_sent, "rst" in self.client_sent),
            proxy_close=_sequence("fin" in self.proxy_sent, "rst" in self.proxy_sent),
        )


@dataclass(frozen=True)
class _Segment:
    ts: float
    src: str
    sport: int
    dst: str
    dport: int
    flags: int
    seq: int


def close_delays(pcap: Path, server_ports: set[int]) -> list[WireClose]:
    """One :class:`WireClose` per connection in ``pcap``, in order of first appearance.

    An empty file, or one cut short because tcpdump was killed mid-write, yields what
    could be read. A file that is not a classic pcap, or whose link type is not
    Ethernet, Linux cooked (v1 or v2) or raw IP, raises ValueError.
    """
    conns: list[_Conn] = []
    current: dict[tuple[str, int, str, int], _Conn] = {}
    for seg in _segments(pcap):
        if seg.dport in server_ports and seg.sport not in server_ports:
            from_client = True
            key = (seg.src, seg.sport, seg.dst, seg.dport)
        elif seg.sport in server_ports and seg.dport not in server_ports:
            from_client = False
            key = (seg.dst, seg.dport, seg.src, seg.sport)
        else:
            continue
        conn = current.get(key)
        is_client_syn = from_client and seg.flags & _SYN and not seg.flags & _ACK
        if is_client_syn and (conn is None or conn.syn_seq != seg.seq):
            # A new ISN on a known 4-tuple is port reuse: the old connection is over.
            conn = _Conn(key=key, syn_ts=seg.ts, syn_seq=seg.seq)
        elif conn is None:
            conn = _Conn(key=key)
        if current.get(key) is not conn:
            current[key] = conn
            conns.append(conn)
        _apply(conn, seg, from_client)
    return [c.freeze() for c in conns]


def _apply(conn: _Conn, seg: _Segment, from_client: bool) -> None:
    closing = seg.flags & (_FIN | _RST)
    if not closing:
        return
    sent = conn.client_sent if from_client else conn.proxy_sent
    if seg.flags & _FIN and "rst" not in sent:  # nothing a side sends after its RST counts
        sent.add("fin")
    if seg.flags & _RST:
        sent.add("rst")
    if conn.first_closer is None:
        conn.first_closer = "client" if from_client else "proxy"
    if from_client:
        if seg.flags & _FIN and conn.client_fin_ts is None:
            conn.client_fin_ts = seg.ts
    elif conn.proxy_end_ts is None:
        conn.proxy_end_ts = seg.ts
        # RST wins on the (odd) FIN|RST segment: the connection was aborted.
        conn.end = "rst" if seg.flags & _RST else "fin"


def _segments(pcap: Path) -> Iterator[_Segment]:
    with pcap.open("rb") as f:
        try:
            reader = dpkt.pcap.Reader(f)
        except dpkt.NeedData:
            return  # empty, or killed before the 24-byte file header was complete
        except ValueError as e:
            raise ValueError(f"{pcap}: not a pcap file ({e}); tcpdump must write pcap") from e
        decode = _decoder(reader.datalink(), pcap)
        packets = iter(reader)
        while True:
            try:
                ts, buf = next(packets)
            except StopIteration:
                return
            except dpkt.NeedData:
                return  # a record header cut short: the end of a killed capture
            seg = _segment(float(ts), buf, decode)
            if seg is not None:
                yield seg


def _decoder(linktype: int, pcap: Path) -> Any:
    if linktype == _ETHERNET:
        return dpkt.ethernet.Ethernet
    if linktype == _LINUX_SLL:
        return dpkt.sll.SLL
    if linktype == _LINUX_SLL2:
        return dpkt.sll2.SLL2
    if linktype in _RAW:
        return _raw_ip
    raise ValueError(
        f"{pcap}: link type {linktype} is not supported (Ethernet 1, Linux cooked 113 or "
        "276, raw IP 101); capture with tcpdump -i any or -i <interface>"
    )


def _raw_ip(buf: bytes) -> Any:
    return dpkt.ip6.IP6(buf) if buf[:1] and buf[0] >> 4 == 6 else dpkt.ip.IP(buf)


def _segment(ts: float, buf: bytes, decode: Any) -> _Segment | None:
    """The TCP header fields of one frame, or None if it is not (complete) TCP over IP."""
    try:
        frame = decode(buf)
    except (dpkt.UnpackError, IndexError):
        return None  # the last record of a killed capture can be cut anywhere
    ip = frame if isinstance(frame, dpkt.ip.IP | dpkt.ip6.IP6) else frame.data
    # dpkt leaves .data as bytes when it cannot decode the next layer (other protocols,
    # or a header cut short by the snap length or a truncated file).
    if isinstance(ip, dpkt.ip.IP):
        family = socket.AF_INET
    elif isinstance(ip, dpkt.ip6.IP6):
        family = socket.AF_INET6
    else:
        return None
    tcp = ip.data
    if not isinstance(tcp, dpkt.tcp.TCP):
        return None
    return _Segment(
        ts=ts,
        src=socket.inet_ntop(family, ip.src),
        sport=tcp.sport,
        dst=socket.inet_ntop(family, ip.dst),
        dport=tcp.dport,
        flags=tcp.flags,
        seq=tcp.seq,
    )


# The probe's end types, in the wire's terms: a TLS alert travels as data, then a FIN.
_PROBE_END_ON_WIRE: dict[str, WireEnd] = {
    "fin": "fin",
    "tls-alert-fin": "fin",
    "rst": "rst",
    "open": "none",
}


def agreement(probe_samples: list[dict[str, Any]], wire: list[WireClose]) -> dict[str, Any]:
    """Join the probe's close delays with the wire's, by the client's port.

    When a port was used more than once (on either side), samples and connections are
    paired from the last backwards, each side in its own order: a port cannot be reused
    before the connection holding it has ended, so per port both lists are chronological.
    Leftovers, and samples without a port (failed before connecting), count as
    ``probe_only`` / ``wire_only``. The join ignores the client IP: a cell has one client
    host. ``diff_ms`` is probe minus wire; the statistics are over pairs where both sides
    measured a delay (``compared``); ``within_tolerance`` counts those where probe and wire
    are at most ``tolerance_ms`` apart (``calibration.WIRE_TOLERANCE_MS``: a larger
    difference is the instrument, not the proxy). ``end_mismatch`` counts pairs whose end
    types disagree (probe "error" samples are not compared).
    """
    probes: dict[int, list[dict[str, Any]]] = defaultdict(list)
    unbound = 0
    for sample in probe_samples:
        if sample.get("src_port") is None:
            unbound += 1
        else:
            probes[int(sample["src_port"])].append(sample)
    wires: dict[int, list[WireClose]] = defaultdict(list)
    for conn in wire:
        wires[conn.client_port].append(conn)

    pairs: list[tuple[dict[str, Any], WireClose]] = []
    probe_only, wire_only = unbound, 0
    for port in sorted(probes.keys() | wires.keys()):
        p, w = probes.get(port, []), wires.get(port, [])
        n = min(len(p), len(w))
        pairs.extend(zip(p[len(p) - n :], w[len(w) - n :], strict=True))
        probe_only += len(p) - n
        wire_only += len(w) - n

    per_connection = []
    diffs = []
    end_mismatch = 0
    for sample, conn in pairs:
        probe_ms = sample.get("delay_ms")
        diff = None
        if probe_ms is not None and conn.delay_ms is not None:
            diff = float(probe_ms) - conn.delay_ms
            diffs.append(abs(diff))
        expected = _PROBE_END_ON_WIRE.get(sample.get("end", ""))
        if expected is not None and expected != conn.end:
            end_mismatch += 1
        per_connection.append(
            {
                "src_port": conn.client_port,
                "variant": sample.get("variant"),
                "probe_ms": probe_ms,
                "wire_ms": conn.delay_ms,
                "diff_ms": diff,
                "probe_end": sample.get("end"),
                "wire_end": conn.end,
            }
        )
    stats = _percentiles(diffs, (50, 90))
    return {
        "joined": len(pairs),
        "probe_only": probe_only,
        "wire_only": wire_only,
        "compared": len(diffs),
        "abs_diff_ms": {"p50": stats["p50"], "p90": stats["p90"], "max": stats["max"]},
        "tolerance_ms": WIRE_TOLERANCE_MS,
        "within_tolerance": sum(d <= WIRE_TOLERANCE_MS for d in diffs),
        "end_mismatch": end_mismatch,
        "per_connection": per_connection,
    }


def summarise(wire: list[WireClose]) -> dict[str, Any]:
    """Counts by end type, first closer and each side's close sequence, and the
    close-delay distribution."""
    ends = Counter(c.end for c in wire)
    closers = Counter(c.first_closer or "none" for c in wire)
    sides = {
        "client": Counter(c.client_close for c in wire),
        "proxy": Counter(c.proxy_close for c in wire),
    }
    delays = [c.delay_ms for c in wire if c.delay_ms is not None]
    stats = _percentiles(delays, (50, 90, 99))
    return {
        "connections": len(wire),
        "end": {k: ends[k] for k in ("fin", "rst", "none")},
        "first_closer": {k: closers[k] for k in ("client", "proxy", "none")},
        "close_sequence": {
            side: {k: counts[k] for k in CLOSE_SEQUENCES} for side, counts in sides.items()
        },
        "delay_ms": {
            "count": len(delays),
            "min": min(delays) if delays else None,
            **stats,
        },
    }


def _percentiles(values: list[float], ps: tuple[int, ...]) -> dict[str, float | None]:
    """Nearest-rank percentiles and max: always an observed value, no interpolation."""
    ordered = sorted(values)
    out: dict[str, float | None] = {}
    for p in ps:
        out[f"p{p}"] = nearest_rank(ordered, p / 100) if ordered else None
    out["max"] = ordered[-1] if ordered else None
    return out
