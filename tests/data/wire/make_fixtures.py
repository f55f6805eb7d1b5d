"""Regenerate the real packet captures under tests/data/wire/ (needs root and tcpdump).

    apt-get install -y tcpdump
    .venv/bin/python tests/data/wire/make_fixtures.py

For each fixture a tiny TCP server on 127.0.0.1:8080 answers one request per
connection, then closes as the case says; tcpdump captures with the sidecar's filter
(only SYN/FIN/RST on the frontend ports, snap length 128, immediate mode). The client
measures the close delay the way the probe does: monotonic clock from just before
shutdown(SHUT_WR) to recv() returning EOF or raising ECONNRESET. It writes one JSON
line per connection next to the pcap: src_port, variant, delay_ms, end, injected_ms
(the server's sleep after reading the client's FIN; null when the server closes first).

Re-running changes ports and timestamps: update the exact values in test_wire.py.
"""

from __future__ import annotations

import json
import signal
import socket
import struct
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).parent
HOST = "127.0.0.1"
PORT = 8080
FILTER = "(tcp port 8080 or tcp port 8443) and (tcp[tcpflags] & (tcp-syn|tcp-fin|tcp-rst) != 0)"
REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


@dataclass(frozen=True)
class Case:
    variant: str
    close: str  # "fin" | "rst": how the server ends it
    after_ms: int | None  # sleep after the client's FIN; None: server closes first
    big_response_with_fin: bool = False  # 4000 bytes corked, so the FIN rides on data


def serve(listener: socket.socket, cases: list[Case]) -> None:
    for case in cases:
        conn, _ = listener.accept()
        conn.recv(4096)
        if case.close == "rst":
            # SO_LINGER on, 0 s: close() sends RST instead of FIN.
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        if case.after_ms is None:
            conn.sendall(RESPONSE)
            conn.close()
            continue
        if case.big_response_with_fin:
            # The response goes out after the client's FIN, held by TCP_CORK until
            # close(): the FIN is on a data segment longer than the 128-byte snap length.
            while conn.recv(4096):
                pass
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
            conn.sendall(b"x" * 4000)
            time.sleep(case.after_ms / 1000)
            conn.close()
            continue
        conn.sendall(RESPONSE)
        while conn.recv(4096):  # until the client's FIN
            pass
        time.sleep(case.after_ms / 1000)
        conn.close()


def client(case: Case, bind_port: int = 0) -> dict[str, object]:
    s = socket.socket()
    if bind_port:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((HOST, bind_port))
    s.connect((HOST, PORT))
    port = s.getsockname()[1]
    s.sendall(REQUEST)
    end = "fin"
    delay_ms = None
    if case.after_ms is None:
        while s.recv(4096):  # the server closes first
            pass
        s.close()
        return _sample(port, case, None, "fin")
    if not case.big_response_with_fin:
        got = b""
        while len(got) < len(RESPONSE):
            got += s.recv(4096)
    t0 = time.monotonic()
    s.shutdown(socket.SHUT_WR)
    try:
        while s.recv(65536):
            pass
    except ConnectionResetError:
        end = "rst"
    delay_ms = (time.monotonic() - t0) * 1000
    s.close()
    return _sample(port, case, delay_ms, end)


def _sample(port: int, case: Case, delay_ms: float | None, end: str) -> dict[str, object]:
    return {
        "src_port": port,
        "variant": case.variant,
        "delay_ms": None if delay_ms is None else round(delay_ms, 3),
        "end": end,
        "injected_ms": case.after_ms,
    }


def capture(
    name: str, iface: str, cases: list[Case], linktype: str | None = None, reuse_port: bool = False
) -> None:
    pcap = HERE / f"{name}.pcap"
    # --immediate-mode: without it TPACKET_V3 hands packets over in blocks (1 s timeout)
    # and a SIGINT before the block is handed over loses them, -U or not.
    cmd = ["tcpdump", "-i", iface, "-s", "128", "-U", "--immediate-mode", "-w", str(pcap)]
    if linktype:
        cmd += ["-y", linktype]
    dump = subprocess.Popen([*cmd, FILTER], stderr=subprocess.PIPE, text=True)
    try:
        samples = _run(dump, cases, reuse_port)
    finally:
        # Never leave a tcpdump behind: it would keep writing into the next file.
        dump.send_signal(signal.SIGINT)
        dump.wait()
    with (HERE / f"{name}.probe.jsonl").open("w") as f:
        f.writelines(json.dumps(s) + "\n" for s in samples)
    print(name, linktype or iface, [(s["variant"], s["delay_ms"]) for s in samples])


def _run(dump: subprocess.Popen[str], cases: list[Case], reuse_port: bool) -> list[dict]:
    assert dump.stderr is not None
    # "listening on lo, ..." once the socket is bound; -y prints "data link type" first.
    while "listening" not in (line := dump.stderr.readline()):
        assert line, "tcpdump exited before listening"
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((HOST, PORT))
    listener.listen()
    server = threading.Thread(target=serve, args=(listener, cases))
    server.start()
    samples = []
    fixed = 0
    for case in cases:
        sample = client(case, fixed)
        # Port reuse: bind the next client to the same port; RST left no TIME_WAIT.
        fixed = int(sample["src_port"]) if reuse_port else 0  # type: ignore[call-overload]
        samples.append(sample)
        time.sleep(0.05)
    server.join()
    listener.close()
    time.sleep(0.2)  # let the last RST/FIN reach tcpdump
    return samples


def main() -> None:
    fin = [Case(f"fin-after-{d}ms", "fin", d) for d in (0, 50, 200)]
    capture("lo_fin", "lo", [*fin, Case("fin-with-data-after-20ms", "fin", 20, True)])
    capture("lo_rst", "lo", [Case(f"rst-after-{d}ms", "rst", d) for d in (0, 50)])
    capture("lo_server_first", "lo", [Case("server-closes-first", "fin", None)] * 2)
    capture("lo_port_reuse", "lo", [Case("reuse-rst-after-10ms", "rst", 10)] * 2, reuse_port=True)
    mixed = [
        Case("fin-after-0ms", "fin", 0),
        Case("fin-after-50ms", "fin", 50),
        Case("rst-after-50ms", "rst", 50),
    ]
    capture("any_sll2", "any", mixed, "LINUX_SLL2")
    capture("any_sll", "any", mixed, "LINUX_SLL")


if __name__ == "__main__":
    main()
