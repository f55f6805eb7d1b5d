"""Run ids: unique within one second, safe for folders, compose projects and mounts;
a run folder is held by one process at a time."""

import os
import re
import subprocess
import sys
import textwrap

import pytest

from harness import ROOT, results
from harness.errors import ResultsError

SAFE = re.compile(r"^[A-Za-z0-9._-]+$")


@pytest.fixture
def results_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(results, "RESULTS_DIR", tmp_path)
    monkeypatch.setattr(results, "_ISSUED", {})
    return tmp_path


def test_run_ids_of_one_second_differ_and_each_has_its_own_folder(results_dir):
    ids = [results.new_run_id("default") for _ in range(50)]
    assert len(set(ids)) == 50
    assert len({i.split("-")[0] for i in ids}) <= 2  # within a second or two
    assert sorted(p.name for p in results_dir.iterdir()) == sorted(ids)


@pytest.mark.parametrize(
    "name", ["a: b", "odd\nname", "../../etc", "x" * 200, "::", "spaced name.v2"]
)
def test_a_matrix_file_name_reaches_the_run_id_only_as_safe_characters(results_dir, name):
    run_id = results.new_run_id(name)
    assert SAFE.match(run_id), run_id
    assert len(run_id) <= 64
    assert (results_dir / run_id).parent == results_dir


def test_a_held_run_folder_is_refused_to_a_second_process(results_dir):
    run = results_dir / results.new_run_id("held")
    child = textwrap.dedent(
        f"""
        from pathlib import Path
        from harness import results
        from harness.errors import ResultsError
        try:
            with results.locked(Path({str(run)!r})):
                print("got it")
        except ResultsError as exc:
            print(exc)
        """
    )

    def second() -> str:
        proc = subprocess.run(
            [sys.executable, "-c", child], cwd=ROOT, capture_output=True, text=True, timeout=60
        )
        return proc.stdout.strip()

    with results.locked(run):
        refused = second()
    assert refused.startswith(f"{run}: another harness process is using this run folder")
    assert second() == "got it"  # released when the first is done


def test_the_lock_goes_with_the_process_however_it_ends(results_dir):
    run = results_dir / results.new_run_id("killed")
    holder = subprocess.Popen(
        [sys.executable, "-c", f"""
import time
from pathlib import Path
from harness import results
with results.locked(Path({str(run)!r})):
    print("held", flush=True)
    time.sleep(60)
"""],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ResultsError), results.locked(run):
            pass
    finally:
        holder.kill()
        holder.wait()
    with results.locked(run):
        pass
    assert os.path.exists(run / results.LOCK_FILE)
