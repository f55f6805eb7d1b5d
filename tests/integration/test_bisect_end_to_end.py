"""``python -m harness bisect`` on real builds and real cells.

The commit bisect runs offline on a git repository made here from the upstream tarball
Debian ships (haproxy_2.6.12.orig.tar.gz, the catalogue's pinned sha256), plus commits
of our own: harmless ones, one that breaks the build, and one, planted, that makes
HAProxy wait 300 ms before closing a client connection after the client's FIN. The
bisect must name the planted commit, skip the broken one, and say so in its report.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import docker.errors
import pytest

from harness.stack import images
from harness.stack.compose import client

PLANTED = "mux-h1: wait 300 ms before closing a client connection after its FIN"
# The place: h1_process() releasing an idle frontend connection once the client's FIN
# (read0) arrived. A blocking sleep there holds the close back (and the thread with it).
RELEASE = "\t\t\t/* Otherwise we can release the H1 connection */\n\t\t\tgoto release;\n"
DELAYED = (
    "\t\t\t/* Otherwise we can release the H1 connection */\n"
    "\t\t\tif (!(h1c->flags & H1C_F_IS_BACK) && conn_xprt_read0_pending(conn))\n"
    "\t\t\t\tusleep(300000);\n"
    "\t\t\tgoto release;\n"
)


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=harness test",
         "-c", "user.email=test@harness.invalid", *args],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip


def _commit(repo: Path, subject: str) -> str:
    _git(repo, "commit", "-q", "-a", "-m", subject)
    return _git(repo, "rev-parse", "HEAD")


@pytest.fixture(scope="module")
def planted_repo(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Path, dict[str, str]]]:
    """2.6.12 from Debian's pool, then: a doc change, a commit that does not build, its
    fix, the planted delay, another doc change. Yields the repo and the commits; then
    removes the images and staged archives built from them (new commits each run: they
    would pile up)."""
    tarball = images.obtain_tarball("2.6.12")  # haproxy/tarballs/ or Debian's pool
    root = tmp_path_factory.mktemp("git")
    with tarfile.open(tarball) as tar:
        tar.extractall(root, filter="data")
    repo = root / "haproxy-2.6.12"
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", "-A")
    commits = {"upstream": _commit(repo, "upstream 2.6.12, Debian's orig tarball")}
    readme = repo / "README"
    readme.write_text(readme.read_text() + "\nA line of our own.\n")
    commits["doc"] = _commit(repo, "README: a line of our own")
    version_c = repo / "src" / "version.c"
    good_version_c = version_c.read_text()
    version_c.write_text(good_version_c + "\nthis does not compile;\n")
    commits["broken"] = _commit(repo, "version.c: a line that does not compile")
    version_c.write_text(good_version_c)
    commits["fixed"] = _commit(repo, "version.c: compiles again")
    mux = repo / "src" / "mux_h1.c"
    source = mux.read_text()
    assert source.count(RELEASE) == 1, "the planted change's place moved"
    mux.write_text(source.replace(RELEASE, DELAYED))
    commits["planted"] = _commit(repo, PLANTED)
    readme.write_text(readme.read_text() + "Another line.\n")
    commits["after"] = _commit(repo, "README: another line")
    yield repo, commits
    for sha in commits.values():
        tag = f"harness-haproxy:2.6.12-git-{sha[:12]}"
        with suppress(docker.errors.ImageNotFound):
            client().images.remove(tag, force=True)
        shutil.rmtree(images.BUILD_DIR / "haproxy-git" / tag.split(":", 1)[1], ignore_errors=True)


def test_bisect_names_the_planted_commit(harness, planted_repo):
    repo, commits = planted_repo
    proc = harness(
        "bisect",
        "--good", f"git:{repo}@{commits['upstream']}",
        "--bad", f"git:{repo}@main",
        "--scenario", "half-close",
        "--param", "connections=8",
        "--signal", "close delay p50 > 100 ms",
        timeout=3000,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    planted = commits["planted"]
    assert f"**first bad: {planted[:12]} {PLANTED[:60]}" in proc.stdout, proc.stdout
    folder = next(p for p in harness.results.glob("*-bisect-half-close"))
    record = json.loads((folder / "bisect.json").read_text())
    assert record["first_bad"] == f"{planted[:12]} {PLANTED[:60]}"
    steps = {s["label"].split()[0]: s for s in record["steps"]}
    # the ends, then: the broken commit (the middle) skipped, "fixed" good, planted bad
    assert steps[commits["broken"][:12]]["decision"] == "skipped"
    assert steps[commits["fixed"][:12]]["decision"] == "good"
    assert steps[planted[:12]]["decision"] == "bad"
    assert steps[commits["upstream"][:12]]["decision"] == "good"
    assert steps[commits["after"][:12]]["decision"] == "bad"
    assert len(record["steps"]) == 5
    # every step's evidence is an ordinary run folder, with its cells and report
    for step in record["steps"]:
        evidence = folder / step["evidence"]
        assert evidence.is_dir()
        if step["decision"] != "skipped":
            assert list(evidence.glob("*/report.md")), step
            assert list(evidence.glob("*/*/cell.json")), step
    # the signal's value in the report: the planted commit's p50 is the sleep
    assert "p50 " in steps[planted[:12]]["value"]
    p50 = float(steps[planted[:12]]["value"].split()[1])
    assert p50 >= 300, steps[planted[:12]]
    # the build of the commit before it reports the commit in its version
    vv = next((folder / steps[commits["fixed"][:12]]["evidence"]).glob("*/*/haproxy-vv.txt"))
    assert f"2.6.12-g{commits['fixed'][:8]}" in vv.read_text()


def test_release_bisect_over_debian_finds_the_release_that_fixed_the_stall(harness):
    """Over every release Debian serves, from bookworm's 2.6.12 (stalls on a full buffer
    at a chunk boundary) to experimental's 3.4.7: "bad" here is the property looked for,
    no stall (fewer than 20 % of connections), so the answer is the first release
    without it. 3.0.11 (trixie) is the first Debian ships after the fix (2.6.16)."""
    proc = harness(
        "bisect",
        "--good", "debian:bookworm",
        "--bad", "debian:experimental",
        "--scenario", "chunked-stall",
        "--signal", "stalled connections < 20%",
        timeout=3000,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "**first bad: 3.0.11 (debian:trixie) (last good: 2.6.12 (debian:bookworm))" in (
        proc.stdout
    ), proc.stdout
    folder = max(harness.results.glob("*-bisect-chunked-stall"))
    record = json.loads((folder / "bisect.json").read_text())
    assert record["candidates"] == [
        "2.6.12 (debian:bookworm)", "3.0.11 (debian:trixie)", "3.2.26 (debian:sid)",
        "3.4.7 (debian:experimental)",
    ]  # fmt: skip
    # the ends, then 3.0.11 or 3.2.26 first (the middle), then the other if needed
    assert 3 <= len(record["steps"]) <= 4
    by_label = {s["label"]: s for s in record["steps"]}
    stalled = by_label["2.6.12 (debian:bookworm)"]["value"]
    assert int(stalled.split("/")[0]) >= 8, stalled  # sizes 32 and 40 stall, 31 and 39 not
    assert by_label["3.0.11 (debian:trixie)"]["decision"] == "bad"
