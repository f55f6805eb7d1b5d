"""The chunked-stall trigger: on Debian's 2.6.12 a stalling chunk size stalls nearly all
of its connections and its control size none; 2.2.9 never stalls.

One small cell per version, the scenario's defaults but for two sizes: 32 (stalls on
2.6.12 with tune.bufsize 16384) and 31 (never does), 20 connections each. One slow-read
response at a time, about 1 in 30 got through at random (193 of 200 stalled over five
runs of the default matrix's cells); each connection now asks for a second response when
the first got through (`requests: 2`), and the issue's bound holds: at least 18 of 20
(90 %) in the cell.
"""

import json
import textwrap
from collections import defaultdict

from harness.analyse.probe_samples import stalled

MATRIX = textwrap.dedent(
    """
    name: chunked-stall-trigger
    versions: [debian:bullseye, debian:bookworm]
    baseline: debian:bullseye
    scenarios:
      - name: chunked-stall
        params: {chunk_sizes: [31, 32], per_size: 20}
    """
)


def per_size(cell_dir):
    """{chunk size: (stalled, connections)} from the cell's raw probe samples."""
    counts = defaultdict(lambda: [0, 0])
    for line in (cell_dir / "probe.jsonl").read_text().splitlines():
        sample = json.loads(line)
        size = sample["sweep"]["chunk_size"]
        counts[size][1] += 1
        counts[size][0] += stalled(sample)
    return {size: tuple(c) for size, c in counts.items()}


def test_a_stalling_size_stalls_on_2_6_12_and_its_control_never(harness, tmp_path):
    matrix = tmp_path / "trigger.yaml"
    matrix.write_text(MATRIX)
    proc = harness("matrix", str(matrix), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = harness.newest_run()
    cells = {c["version"]["reported"]: c for c in harness.cells(run_dir)}
    assert set(cells) == {"2.2.9", "2.6.12"}
    assert all(c["status"] == "ok" for c in cells.values())
    counts = {v: per_size(run_dir / c["cell"]) for v, c in cells.items()}
    assert counts["2.2.9"] == {31: (0, 20), 32: (0, 20)}, counts
    assert counts["2.6.12"][31] == (0, 20), counts
    hit, total = counts["2.6.12"][32]
    assert total == 20 and hit >= 18, counts  # >= 90 % of its connections, in this cell
    # every stall is HAProxy waiting for timeout server, logged sD--
    probe = cells["2.6.12"]["metrics"]["probe"]
    assert probe["stalled"] == hit
    assert cells["2.6.12"]["metrics"]["haproxy"]["termination_states"].get("sD--") == hit
    verdicts = json.loads((run_dir / "verdicts.json").read_text())
    stalls = [v["verdict"] for v in verdicts if v["metric"].endswith("connections stalled")]
    assert stalls == ["regression"], verdicts
