"""`make reproduce`: two versions, one scenario, a verdict on one screen."""

import subprocess

import pytest

from harness import ROOT


@pytest.mark.parametrize(
    ("a", "b", "verdict"),
    [
        ("debian:bullseye", "debian:bookworm", "regression"),
        ("debian:bookworm", "debian:trixie", "improvement"),
    ],
)
def test_reproduce_chunked_stall_verdict(docker_engine, results_dir, a, b, verdict):
    proc = subprocess.run(
        ["make", "-s", "reproduce", f"A={a}", f"B={b}", "SCENARIO=chunked-stall"],
        cwd=ROOT, capture_output=True, text=True, timeout=1200,
        env={**__import__("os").environ, "HARNESS_RESULTS": str(results_dir)},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    screen = proc.stdout
    assert f"verdict: {verdict}" in screen, screen[-3000:]
    # the evidence in words: how many connections stalled on each side
    assert "connections stalled" in screen
    assert "Fisher" in screen
