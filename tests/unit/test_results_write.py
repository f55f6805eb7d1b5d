"""results.write_json: one mode for every results file, durable, and no debris on failure."""

import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness import ROOT, results
from harness.errors import ResultsError


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_json_files_get_the_mode_of_every_other_results_file(tmp_path):
    results.write_json(tmp_path / "cell.json", {"status": "ok"})
    (tmp_path / "locust.log").write_text("written as the rest are\n")
    assert _mode(tmp_path / "cell.json") == 0o644
    assert _mode(tmp_path / "cell.json") == _mode(tmp_path / "locust.log")
    assert json.loads((tmp_path / "cell.json").read_text()) == {"status": "ok"}


def test_replacing_a_file_keeps_the_mode_and_leaves_only_it(tmp_path):
    target = tmp_path / "run.json"
    results.write_json(target, {"n": 1})
    results.write_json(target, {"n": 2})
    assert json.loads(target.read_text()) == {"n": 2}
    assert _mode(target) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]


def test_the_file_and_then_its_folder_are_synced_to_disk(tmp_path, monkeypatch):
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    results.write_json(tmp_path / "timing.json", {"load_start": 1.0})
    assert synced == ["file", "dir"]


@pytest.mark.parametrize(
    "data",
    [
        pytest.param({1: "a", "b": 2}, id="keys-json-cannot-sort"),
        pytest.param({"self": None}, id="circular"),
    ],
)
def test_a_value_json_cannot_encode_leaves_no_file(tmp_path, data):
    if "self" in data:
        data["self"] = data  # a circular reference
    with pytest.raises((TypeError, ValueError)):
        results.write_json(tmp_path / "cell.json", data)
    assert list(tmp_path.iterdir()) == []


def test_an_earlier_file_survives_a_failed_encode(tmp_path):
    results.write_json(tmp_path / "cell.json", {"status": "ok"})
    with pytest.raises(TypeError):
        results.write_json(tmp_path / "cell.json", {1: "a", "b": 2})
    assert json.loads((tmp_path / "cell.json").read_text()) == {"status": "ok"}
    assert [p.name for p in tmp_path.iterdir()] == ["cell.json"]


def test_a_disk_that_fills_mid_write_leaves_no_temp_file_and_names_the_path(tmp_path):
    # A real short write: a process whose files may not grow past 4 KiB (RLIMIT_FSIZE)
    # gets EFBIG from write(2), as a full disk gives ENOSPC, halfway through the file.
    child = textwrap.dedent(
        f"""
        import resource, signal, sys
        from pathlib import Path
        from harness import results
        from harness.errors import ResultsError
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
        try:
            results.write_json(Path({str(tmp_path)!r}) / "cell.json", {{"x": "y" * 100_000}})
        except ResultsError as exc:
            print(exc.path, exc, sep="\\n")
            sys.exit(3)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", child], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 3, proc.stderr
    path, message = proc.stdout.splitlines()
    assert path == str(tmp_path / "cell.json")
    assert message.startswith(
        f"{tmp_path / 'cell.json'}: results cannot be written (File too large)"
    )
    assert list(tmp_path.iterdir()) == []


def test_a_folder_that_cannot_be_written_is_a_results_error(tmp_path):
    (tmp_path / "a-file").write_text("")
    with pytest.raises(ResultsError) as caught:
        results.write_json(tmp_path / "a-file" / "cell.json", {})
    assert f"{tmp_path / 'a-file'}" in str(caught.value)
    assert "results cannot be written (" in str(caught.value)
