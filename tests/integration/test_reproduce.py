"""`make reproduce` (python -m harness reproduce): two versions, one scenario, a verdict on
one screen, and --fail-on's exit status for CI."""

import subprocess
import sys

import pytest

from harness import ROOT


@pytest.mark.parametrize(
    ("a", "b", "verdict", "status"),
    [
        # --fail-on regression gates CI: exit 3 on the regression, 0 on the improvement.
        ("debian:bullseye", "debian:bookworm", "regression", 3),
        ("debian:bookworm", "debian:trixie", "improvement", 0),
    ],
)
def test_reproduce_chunked_stall_verdict(docker_engine, results_dir, a, b, verdict, status):
    proc = subprocess.run(
        # python -m harness, not make: make turns any failing status into its own 2.
        [sys.executable, "-m", "harness", "reproduce", "--a", a, "--b", b,
         "--scenario", "chunked-stall", "--fail-on", "regression",
         # one cell a side: the stall is 10 of 10 per stalling size since requests: 2, so
         # 20/40 against 0/40 (Fisher p=7.8e-08) needs no repetition; 3 took 150 s a case
         "--repetitions", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=1200,
        env={**__import__("os").environ, "HARNESS_RESULTS": str(results_dir)},
    )  # fmt: skip
    assert proc.returncode == status, proc.stderr[-3000:]
    assert proc.stderr.splitlines()[-1 if status == 0 else -2].startswith("verdicts: ")
    screen = proc.stdout
    assert f"verdict: {verdict}" in screen, screen[-3000:]
    # the evidence in words: how many connections stalled on each side
    assert "connections stalled" in screen
    assert "Fisher" in screen
