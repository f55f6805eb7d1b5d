import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from harness import ROOT


def pytest_collection_modifyitems(items):
    for item in items:
        if "integration" in item.path.parts:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(autouse=True)
def _signal_handlers_restored():
    """A test that calls harness.cli.main in-process installs its SIGINT/SIGTERM
    handlers (they raise): put back what the next test expects, so no test inherits
    them (a forked Pool in a later test hung on them)."""
    kept = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in kept.items():
        signal.signal(sig, handler)


@pytest.fixture(scope="session", autouse=True)
def _own_cache_secret(tmp_path_factory):
    """The report cache's secret (harness.report.cache) in a folder of the session's, not
    the user's ~/.cache; `python -m harness` run by the tests inherits it."""
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))


@pytest.fixture(scope="session")
def docker_engine():
    """The real engine. Missing Docker is an error here, never a skip."""
    from harness.stack.compose import CommandLog, client
    from harness.stack.project import describe_removed, leftovers, partition, remove_stale

    dc = client()  # raises EngineError with "run make engine"
    # What runs killed before this session left (a SIGKILL, a reboot) is not this
    # session's leak: it goes, and says so. A live run's stack would make every
    # leak check below fail for someone else's objects: say that instead.
    removed = remove_stale(CommandLog(Path(os.devnull)))
    if removed:
        print(f"\n{describe_removed(removed)}")
    _, live = partition()
    assert not live, (
        f"another harness run is using this Docker engine ({', '.join(live)}): the tests "
        "check that they leave nothing behind, which they cannot while it runs. Wait for "
        "it to end, then run the tests again."
    )
    yield dc
    left = leftovers(None)
    assert not any(left.values()), f"the harness left things behind in Docker: {left}"


@pytest.fixture(scope="session")
def results_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("results")


class Harness:
    """Runs `python -m harness ...` as a user would, with results in a temporary folder."""

    def __init__(self, results: Path) -> None:
        self.results = results

    def __call__(self, *args: str, timeout: float = 1200) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "HARNESS_RESULTS": str(self.results)}
        return subprocess.run(
            [sys.executable, "-m", "harness", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def cells(self, run_stdout_or_dir: str | Path) -> list[dict]:
        return [
            json.loads(p.read_text()) for p in sorted(Path(run_stdout_or_dir).glob("*/cell.json"))
        ]

    def matrix_ok(self, text: str, folder: Path, timeout: float = 600) -> tuple[Path, list[dict]]:
        """Run the matrix ``text`` (written to ``folder``); assert the run and every cell
        ended ok; return the run folder and its cell records."""
        matrix = folder / "matrix.yaml"
        matrix.write_text(text)
        proc = self("matrix", str(matrix), timeout=timeout)
        assert proc.returncode == 0, proc.stderr[-3000:]
        run_dir = self.newest_run()
        records = self.cells(run_dir)
        for record in records:
            assert record["status"] == "ok", record.get("error")
        return run_dir, records

    def newest_run(self) -> Path:
        runs = [p for p in self.results.iterdir() if (p / "run.json").exists()]
        return max(runs, key=lambda p: (p / "run.json").stat().st_mtime)


@pytest.fixture(scope="session")
def harness(docker_engine, results_dir):
    return Harness(results_dir)
