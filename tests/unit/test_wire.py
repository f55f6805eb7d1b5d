"""Close delays from packet captures: real loopback captures and dpkt-written edge cases.

The real captures under tests/data/wire/ were made by make_fixtures.py there (tcpdump
4.99.3 / libpcap 1.10.3, the sidecar's filter, snap length 128). Their exact values are
pinned below; regenerating them means updating those tables.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import dpkt
import pytest

from harness.analyse import calibration
from harness.analyse.wire import WireClose, agreement, close_delays, summarise

DATA = Path(__file__).parents[1] / "data" / "wire"
PORTS = {8080, 8443}

# (client port, end, first closer, delay ms rounded to the µs the pcap records)
EXPECTED: dict[str, list[tuple[int, str, str, float | None]]] = {
    "lo_fin": [
        (50840, "fin", "client", 0.113),
        (50852, "fin", "client", 50.243),
        (50866, "fin", "client", 200.292),
        (50874, "fin", "client", 20.28),  # FIN on a 4000-byte segment cut to 128 bytes
    ],
    "lo_rst": [(50878, "rst", "client", 0.121), (50888, "rst", "client", 50.293)],
    "lo_server_first": [(50896, "fin", "proxy", None), (50908, "fin", "proxy", None)],
    "lo_port_reuse": [(50918, "rst", "client", 10.148), (50918, "rst", "client", 10.165)],
    "any_sll2": [
        (50928, "fin", "client", 0.128),
        (50938, "fin", "client", 50.23),
        (50952, "rst", "client", 50.148),
    ],
    "any_sll": [
        (50968, "fin", "client", 0.103),
        (50974, "fin", "client", 50.239),
        (50984, "rst", "client", 50.181),
    ],
}
LINKTYPES = {
    "lo_fin": 1,
    "lo_rst": 1,
    "lo_server_first": 1,
    "lo_port_reuse": 1,
    "any_sll2": 276,
    "any_sll": 113,
}


def _probe(name: str) -> list[dict]:
    lines = (DATA / f"{name}.probe.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def _linktype(path: Path) -> int:
    with path.open("rb") as f:
        return dpkt.pcap.Reader(f).datalink()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_real_capture_exact(name: str) -> None:
    pcap = DATA / f"{name}.pcap"
    assert _linktype(pcap) == LINKTYPES[name]  # the fixture exercises the link type it claims
    wire = close_delays(pcap, PORTS)
    got = [
        (
            c.client_port,
            c.end,
            c.first_closer,
            None if c.delay_ms is None else round(c.delay_ms, 3),
        )
        for c in wire
    ]
    assert got == EXPECTED[name]
    for c in wire:
        assert (c.client_ip, c.server_ip, c.server_port) == ("127.0.0.1", "127.0.0.1", 8080)
        assert c.syn_ts is not None and c.client_fin_ts is not None
        assert c.proxy_end_ts is not None
        assert c.syn_ts < min(c.client_fin_ts, c.proxy_end_ts)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_real_capture_agrees_with_client_clock(name: str) -> None:
    """Wire vs. the client's monotonic clock within 2 ms; wire vs. injected sleep ±10 ms."""
    samples = _probe(name)
    wire = close_delays(DATA / f"{name}.pcap", PORTS)
    result = agreement(samples, wire)
    timed = [s for s in samples if s["delay_ms"] is not None]
    assert result["joined"] == len(samples) == len(wire)
    assert (result["probe_only"], result["wire_only"], result["end_mismatch"]) == (0, 0, 0)
    assert result["compared"] == result["within_tolerance"] == len(timed)
    for row, sample in zip(result["per_connection"], samples, strict=True):
        assert row["src_port"] == sample["src_port"]
        if sample["injected_ms"] is None:
            assert row["wire_ms"] is None
            continue
        assert abs(row["diff_ms"]) <= 2.0
        assert abs(row["wire_ms"] - sample["injected_ms"]) <= 10.0


def test_real_agreement_exact_numbers() -> None:
    result = agreement(_probe("lo_fin"), close_delays(DATA / "lo_fin.pcap", PORTS))
    diffs = {k: round(v, 3) for k, v in result["abs_diff_ms"].items()}
    assert diffs == {"p50": 0.116, "p90": 0.246, "max": 0.246}
    assert [round(r["diff_ms"], 3) for r in result["per_connection"]] == [
        0.053,
        0.116,
        0.133,
        0.246,
    ]


def test_server_first_keeps_proxy_end_before_client_fin() -> None:
    for c in close_delays(DATA / "lo_server_first.pcap", PORTS):
        assert c.proxy_end_ts is not None and c.client_fin_ts is not None
        assert c.proxy_end_ts < c.client_fin_ts
        assert c.delay_ms is None


def test_fin_on_snapped_data_segment_is_read() -> None:
    """The last lo_fin connection's FIN rides on 4000 bytes of data, cut by -s 128."""
    with (DATA / "lo_fin.pcap").open("rb") as f:
        last = list(dpkt.pcap.Reader(f))[-1][1]
    frame = dpkt.ethernet.Ethernet(last)
    assert len(last) == 128 and frame.data.len == 4052  # IP total length: 20 + 32 + 4000
    assert frame.data.data.flags & dpkt.tcp.TH_FIN


def test_ports_outside_server_ports_are_ignored() -> None:
    assert close_delays(DATA / "lo_fin.pcap", {8443}) == []


def test_real_summary() -> None:
    assert summarise(close_delays(DATA / "lo_fin.pcap", PORTS)) == {
        "connections": 4,
        "end": {"fin": 4, "rst": 0, "none": 0},
        "first_closer": {"client": 4, "proxy": 0, "none": 0},
        "close_sequence": {
            "client": {"fin": 4, "rst": 0, "fin-rst": 0, "none": 0},
            "proxy": {"fin": 4, "rst": 0, "fin-rst": 0, "none": 0},
        },
        "delay_ms": {
            "count": 4,
            "min": pytest.approx(0.113, abs=5e-4),
            "p50": pytest.approx(20.28, abs=5e-4),
            "p90": pytest.approx(200.292, abs=5e-4),
            "p99": pytest.approx(200.292, abs=5e-4),
            "max": pytest.approx(200.292, abs=5e-4),
        },
    }


# --- synthetic captures written with dpkt -----------------------------------------------

CLIENT, PROXY = "10.0.0.2", "10.0.0.1"
S, F, R, A = dpkt.tcp.TH_SYN, dpkt.tcp.TH_FIN, dpkt.tcp.TH_RST, dpkt.tcp.TH_ACK


def _tcp(src: str, sport: int, dst: str, dport: int, flags: int, seq: int = 0) -> dpkt.ip.IP:
    tcp = dpkt.tcp.TCP(sport=sport, dport=dport, flags=flags, seq=seq)
    return dpkt.ip.IP(
        src=socket.inet_aton(src), dst=socket.inet_aton(dst), p=dpkt.ip.IP_PROTO_TCP, data=tcp
    )


def c2p(flags: int, seq: int = 0, port: int = 40000) -> dpkt.ip.IP:
    return _tcp(CLIENT, port, PROXY, 8080, flags, seq)


def p2c(flags: int, port: int = 40000) -> dpkt.ip.IP:
    return _tcp(PROXY, 8080, CLIENT, port, flags)


def _write(path: Path, packets: list[tuple[float, bytes]], linktype: int = 1, **kw) -> Path:
    with path.open("wb") as f:
        writer = dpkt.pcap.Writer(f, snaplen=128, linktype=linktype, **kw)
        for ts, pkt in packets:
            writer.writepkt(pkt, ts=ts)
    return path


def _eth(ip: dpkt.Packet) -> bytes:
    return bytes(dpkt.ethernet.Ethernet(src=b"\x02" * 6, dst=b"\x04" * 6, data=ip))


def test_port_reuse_and_syn_retransmission(tmp_path: Path) -> None:
    packets = [
        (100.000, c2p(S, seq=1000)),
        (100.900, c2p(S, seq=1000)),  # retransmitted SYN: same connection
        (100.901, p2c(S | A)),
        (101.000, c2p(F | A, seq=1001)),
        (101.020, c2p(F | A, seq=1001)),  # retransmitted FIN: the first one counts
        (101.050, p2c(F | A)),
        (101.060, p2c(R | A)),  # a later RST does not change end or timestamp
        (102.000, c2p(S, seq=5000)),  # new ISN on the same 4-tuple: a new connection
        (102.001, p2c(S | A)),
        (102.100, c2p(F | A, seq=5001)),
        (102.400, p2c(R | A)),
    ]
    pcap = _write(tmp_path / "reuse.pcap", [(ts, _eth(ip)) for ts, ip in packets])
    first, second = close_delays(pcap, PORTS)
    assert (first.syn_ts, first.client_fin_ts, first.proxy_end_ts) == (100.0, 101.0, 101.05)
    assert (first.end, first.first_closer) == ("fin", "client")
    assert first.delay_ms == pytest.approx(50.0, abs=1e-6)
    assert (second.syn_ts, second.end) == (102.0, "rst")
    assert second.delay_ms == pytest.approx(300.0, abs=1e-6)
    assert first.client_port == second.client_port == 40000

    # The probe saw the port twice too: pairs are matched from the last backwards.
    probe = [
        {"src_port": 40000, "variant": "v", "delay_ms": 50.5, "end": "fin"},
        {"src_port": 40000, "variant": "v", "delay_ms": 301.0, "end": "rst"},
    ]
    result = agreement(probe, [first, second])
    assert [round(r["diff_ms"], 6) for r in result["per_connection"]] == [0.5, 1.0]
    # Only the last probe sample: it pairs with the last connection; the first is wire-only.
    result = agreement(probe[1:], [first, second])
    assert (result["joined"], result["probe_only"], result["wire_only"]) == (1, 0, 1)
    assert result["per_connection"][0]["wire_ms"] == pytest.approx(300.0, abs=1e-6)


def test_proxy_first_no_syn_and_open(tmp_path: Path) -> None:
    packets = [
        (10.0, c2p(S, seq=1, port=40001)),
        (10.5, p2c(F | A, port=40001)),  # the proxy closes first
        (10.6, c2p(F | A, port=40001)),
        (11.0, c2p(F | A, port=40002)),  # capture began after this connection's SYN
        (11.2, p2c(F | A, port=40002)),
        (12.0, c2p(S, seq=7, port=40003)),
        (12.5, c2p(F | A, port=40003)),  # the proxy never answers: still open
        (13.0, c2p(S, seq=9, port=40004)),  # nobody closes
    ]
    pcap = _write(tmp_path / "mixed.pcap", [(ts, _eth(ip)) for ts, ip in packets])
    a, b, c, d = close_delays(pcap, PORTS)
    assert (a.first_closer, a.end, a.delay_ms, a.proxy_end_ts) == ("proxy", "fin", None, 10.5)
    assert (b.syn_ts, b.first_closer) == (None, "client")
    assert b.delay_ms == pytest.approx(200.0, abs=1e-6)
    assert (c.end, c.proxy_end_ts, c.delay_ms, c.first_closer) == ("none", None, None, "client")
    assert (d.end, d.first_closer, d.client_fin_ts) == ("none", None, None)
    assert summarise([a, b, c, d]) == {
        "connections": 4,
        "end": {"fin": 2, "rst": 0, "none": 2},
        "first_closer": {"client": 2, "proxy": 1, "none": 1},
        "close_sequence": {
            "client": {"fin": 3, "rst": 0, "fin-rst": 0, "none": 1},
            "proxy": {"fin": 2, "rst": 0, "fin-rst": 0, "none": 2},
        },
        "delay_ms": {
            "count": 1,
            "min": pytest.approx(200.0),
            "p50": pytest.approx(200.0),
            "p90": pytest.approx(200.0),
            "p99": pytest.approx(200.0),
            "max": pytest.approx(200.0),
        },
    }


def test_close_sequence_keeps_the_rst_after_a_fin(tmp_path: Path) -> None:
    # option nolinger: HAProxy's FIN, then its RST. Counting the first of them alone
    # called 8,483 such closes "fin" (issue 11); each side's whole sequence is kept.
    packets = [
        (1.0, c2p(S, seq=1, port=40001)),
        (1.1, p2c(F | A, port=40001)),  # the proxy's FIN ...
        (1.2, p2c(R | A, port=40001)),  # ... then its RST: fin-rst
        (1.3, c2p(R, port=40001)),  # the client answers with a bare RST
        (2.0, c2p(S, seq=5, port=40002)),
        (2.1, p2c(R | A, port=40002)),  # an RST without FIN
        (2.2, p2c(F | A, port=40002)),  # nothing a side sends after its RST counts
        (3.0, c2p(S, seq=9, port=40003)),
        (3.1, c2p(F | A, port=40003)),
        (3.2, p2c(F | A, port=40003)),
        (3.3, p2c(F | A, port=40003)),  # a retransmitted FIN is still a FIN
    ]
    pcap = _write(tmp_path / "nolinger.pcap", [(ts, _eth(ip)) for ts, ip in packets])
    a, b, c = close_delays(pcap, PORTS)
    assert (a.end, a.proxy_close, a.client_close) == ("fin", "fin-rst", "rst")
    assert (b.end, b.proxy_close, b.client_close) == ("rst", "rst", "none")
    assert (c.end, c.proxy_close, c.client_close) == ("fin", "fin", "fin")
    assert summarise([a, b, c])["close_sequence"] == {
        "client": {"fin": 1, "rst": 1, "fin-rst": 0, "none": 1},
        "proxy": {"fin": 1, "rst": 1, "fin-rst": 1, "none": 0},
    }


def test_truncated_capture(tmp_path: Path) -> None:
    packets = [
        (1.0, c2p(S, seq=1)),
        (1.1, c2p(F | A)),
        (1.2, p2c(F | A)),
    ]
    full = _write(tmp_path / "full.pcap", [(ts, _eth(ip)) for ts, ip in packets]).read_bytes()
    cut = tmp_path / "cut.pcap"
    # Cut at every byte: tcpdump killed mid-write must never crash the analysis.
    for n in range(len(full) + 1):
        cut.write_bytes(full[:n])
        close_delays(cut, PORTS)
    cut.write_bytes(b"")
    assert close_delays(cut, PORTS) == []
    cut.write_bytes(full[:24])  # file header only
    assert close_delays(cut, PORTS) == []
    cut.write_bytes(full[:-1])  # the proxy's FIN record lost its last byte
    (conn,) = close_delays(cut, PORTS)
    assert (conn.client_fin_ts, conn.proxy_end_ts, conn.end) == (1.1, None, "none")
    assert len(full) == 24 + 3 * (16 + 54)  # Ethernet 14 + IPv4 20 + TCP 20 per record
    cut.write_bytes(full[:-62])  # cut inside the proxy's FIN's 16-byte record header
    (conn,) = close_delays(cut, PORTS)
    assert (conn.client_fin_ts, conn.proxy_end_ts) == (1.1, None)


def test_ipv6_over_sll2_and_ipv4_over_sll(tmp_path: Path) -> None:
    c6, p6 = "2001:db8::2", "2001:db8::1"

    def v6(src: str, sport: int, dst: str, dport: int, flags: int) -> dpkt.ip6.IP6:
        tcp = dpkt.tcp.TCP(sport=sport, dport=dport, flags=flags)
        return dpkt.ip6.IP6(
            src=socket.inet_pton(socket.AF_INET6, src),
            dst=socket.inet_pton(socket.AF_INET6, dst),
            nxt=dpkt.ip.IP_PROTO_TCP,
            hlim=64,
            data=tcp,
            plen=len(tcp),
        )

    six = [
        (5.0, v6(c6, 40010, p6, 8443, S)),
        (5.1, v6(c6, 40010, p6, 8443, F | A)),
        (5.125, v6(p6, 8443, c6, 40010, R | A)),
    ]
    sll2 = [
        (ts, bytes(dpkt.sll2.SLL2(ethtype=dpkt.ethernet.ETH_TYPE_IP6, data=ip))) for ts, ip in six
    ]
    (conn,) = close_delays(_write(tmp_path / "v6.pcap", sll2, linktype=276), PORTS)
    assert (conn.client_ip, conn.server_ip, conn.server_port, conn.end) == (c6, p6, 8443, "rst")
    assert conn.delay_ms == pytest.approx(25.0, abs=1e-6)

    four = [(1.0, c2p(S)), (1.1, c2p(F | A)), (1.3, p2c(F | A))]
    sll = [(ts, bytes(dpkt.sll.SLL(ethtype=0x0800, data=ip))) for ts, ip in four]
    (conn,) = close_delays(_write(tmp_path / "sll.pcap", sll, linktype=113), PORTS)
    assert conn.delay_ms == pytest.approx(200.0, abs=1e-6)


def test_nanosecond_pcap_and_raw_ip(tmp_path: Path) -> None:
    packets = [(1.0, bytes(c2p(S))), (1.1, bytes(c2p(F | A))), (1.100250001, bytes(p2c(R)))]
    (conn,) = close_delays(_write(tmp_path / "raw.pcap", packets, linktype=101, nano=True), PORTS)
    assert isinstance(conn.proxy_end_ts, float)
    assert conn.delay_ms == pytest.approx(0.250001, abs=1e-6)


def test_unusable_files_say_why(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="link type 105"):
        close_delays(_write(tmp_path / "wifi.pcap", [], linktype=105), PORTS)
    bogus = tmp_path / "bogus.pcap"
    bogus.write_bytes(b"not a capture at all, just text")
    with pytest.raises(ValueError, match="not a pcap file"):
        close_delays(bogus, PORTS)


def _wc(port: int, delay: float | None, end: str = "fin") -> WireClose:
    return WireClose(
        client_ip=CLIENT,
        client_port=port,
        server_ip=PROXY,
        server_port=8080,
        syn_ts=0.0,
        client_fin_ts=1.0,
        proxy_end_ts=None if delay is None else 1.0 + delay / 1000,
        end=end,  # type: ignore[arg-type]
        delay_ms=delay,
        first_closer="client",
    )


def test_agreement_counts_and_nearest_rank() -> None:
    wire = [_wc(1, 10.0), _wc(2, 20.0), _wc(3, 30.0, "rst"), _wc(4, None, "none"), _wc(9, 1.0)]
    probe = [
        {"src_port": 1, "variant": "a", "delay_ms": 10.5, "end": "fin"},
        {"src_port": 2, "variant": "a", "delay_ms": 23.0, "end": "tls-alert-fin"},
        {"src_port": 3, "variant": "b", "delay_ms": 29.0, "end": "fin"},  # end disagrees
        {"src_port": 4, "variant": "b", "delay_ms": None, "end": "open"},
        {"src_port": 5, "variant": "b", "delay_ms": 7.0, "end": "error"},
        {"src_port": None, "variant": "b", "delay_ms": None, "end": "error"},  # never connected
    ]
    result = agreement(probe, wire)
    assert {k: v for k, v in result.items() if k != "per_connection"} == {
        "joined": 4,
        "probe_only": 2,
        "wire_only": 1,
        "compared": 3,
        "abs_diff_ms": {"p50": 1.0, "p90": 3.0, "max": 3.0},
        "tolerance_ms": 2.0,
        "within_tolerance": 2,  # 0.5 and 1.0 ms off; 3.0 ms is not
        "end_mismatch": 1,
    }
    assert result["per_connection"][1] == {
        "src_port": 2,
        "variant": "a",
        "probe_ms": 23.0,
        "wire_ms": 20.0,
        "diff_ms": 3.0,
        "probe_end": "tls-alert-fin",
        "wire_end": "fin",
    }


def test_summary_percentiles_nearest_rank() -> None:
    stats = summarise([_wc(p, float(p)) for p in range(1, 101)])["delay_ms"]
    assert stats == {"count": 100, "min": 1.0, "p50": 50.0, "p90": 90.0, "p99": 99.0, "max": 100.0}
    empty = summarise([])
    assert empty["connections"] == 0 and empty["delay_ms"]["p50"] is None


def test_agreement_counts_a_difference_of_exactly_the_tolerance_as_within() -> None:
    tol = calibration.WIRE_TOLERANCE_MS
    wire = [_wc(1, 10.0), _wc(2, 10.0), _wc(3, 10.0)]
    probe = [
        {"src_port": 1, "variant": "fin", "delay_ms": 10.0 + tol, "end": "fin"},
        {"src_port": 2, "variant": "fin", "delay_ms": 10.0 - tol - 0.001, "end": "fin"},
        {"src_port": 3, "variant": "fin", "delay_ms": 10.0, "end": "fin"},
    ]
    result = agreement(probe, wire)
    assert (result["compared"], result["within_tolerance"]) == (3, 2)
    assert result["tolerance_ms"] == tol
