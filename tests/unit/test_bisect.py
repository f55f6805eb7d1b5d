"""The bisect's parts without Docker: the predicate language, the statistical judges,
the search (against a fake step function: it tests the algorithm, not Docker), the
repetition loop, the candidates, and the git spec on a repository made here."""

from __future__ import annotations

import json
import math
import random
import subprocess
from pathlib import Path
from typing import Any

import pytest

from harness import bisect, cli
from harness.analyse.record import CellRecord, load_cell
from harness.bisect import BuildFailed, Judgement, Observed, parse_predicate, search
from harness.errors import SpecError
from harness.plan import versions
from tests import records

# --- the predicate language ----------------------------------------------------------------


def _record(
    cell: str,
    status: str = "ok",
    stalled: int = 0,
    connections: int = 40,
    ends: dict[str, int] | None = None,
    close_wait_peak: int | None = None,
    spec: str = "debian:bookworm",
) -> CellRecord:
    """A chunked-stall cell record with the counts a signal reads."""
    probe = {"stalled": stalled, "connections": connections, "ends": ends or {"fin": connections}}
    metrics: dict[str, Any] = {"probe": probe}
    if close_wait_peak is not None:
        metrics["census"] = {"haproxy": {"totals": {"CLOSE-WAIT": {"peak": close_wait_peak}}}}
    return records.make({
        "cell": cell, "scenario": "chunked-stall", "status": status,
        "version": {"spec": spec, "label": spec},
        **({"metrics": metrics} if status == "ok" else {}),
    })  # fmt: skip


@pytest.mark.parametrize(
    ("text", "metric", "op", "threshold", "percent"),
    [
        ("stalled connections > 0", "stalled_connections", ">", 0, False),
        ("stalled > 0", "stalled_connections", ">", 0, False),
        ("close delay p50 > 1 s", "close_delay_p50", ">", 1000, False),
        ("close_delay_p90>=250ms", "close_delay_p90", ">=", 250, False),
        ("latency p99 < 1500 us", "latency_p99", "<", 1.5, False),
        ("CLOSE-WAIT peak > 10", "close_wait_peak", ">", 10, False),
        ("FIN-WAIT-2 peak > 0", "fin_wait2_peak", ">", 0, False),
        ("5xx > 5%", "responses_5xx", ">", 5, True),
        ("requests per s < 900", "requests_per_s", "<", 900, False),
    ],
)
def test_predicates_parse(text: str, metric: str, op: str, threshold: float, percent: bool) -> None:
    p = parse_predicate(text)
    assert (p.metric.name, p.op, p.percent) == (metric, op, percent)
    assert p.threshold == pytest.approx(threshold)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("stalled conections > 0", "did you mean stalled_connections"),
        ("close delay p50 > 1", "give the number a unit"),
        ("CLOSE-WAIT peak > 10 ms", "takes no unit"),
        ("stalled > 150%", "at most 100%"),
        ("stalled connections", "is not a signal"),
        ("--output=/etc/passwd > 1", "is not a signal"),
        ("stalled > 0; rm -rf /", "is not a signal"),
        ("stalled > " + "9" * 300, "is not a signal"),
        ("", "is not a signal"),
    ],
)
def test_bad_predicates_are_refused_with_the_form_and_the_table(text: str, words: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_predicate(text)
    assert words in str(err.value)
    assert "close_wait_peak" in str(err.value) or "unit" in str(err.value)


def test_verdict_signals() -> None:
    assert isinstance(bisect.parse_signal("regression", 0.01), bisect.VerdictSignal)
    assert bisect.parse_signal("change", 0.05).first_end == "good"
    assert bisect.parse_signal("stalled > 0", 0.01).first_end == "bad"


# --- the judges ------------------------------------------------------------------------------


def test_one_stall_is_bad_and_no_stall_is_good_only_with_enough_connections() -> None:
    p = parse_predicate("stalled connections > 0")
    # the bad version: 40 of 400 connections stall; at 99 % its share is at least 0.068
    bad_ref = Observed(10, hits=40, total=400)
    assert p.judge(Observed(1, hits=1, total=40), bad_ref, 0.01).decision == "bad"
    # 0 of 40: a share of 0.068 shows none in 40 with probability 0.932^40 = 0.06
    assert p.judge(Observed(1, hits=0, total=40), bad_ref, 0.01).decision == "undecided"
    # 0 of 80: 0.932^80 = 0.004 < 0.01
    assert p.judge(Observed(2, hits=0, total=80), bad_ref, 0.01).decision == "good"
    # without the bad version's share nothing can be called good
    assert p.judge(Observed(5, hits=0, total=100), None, 0.01).decision == "undecided"
    # a bad version seen stalling twice in 40 proves little about its rate (>= 0.004)
    few = Observed(1, hits=2, total=40)
    assert p.judge(Observed(5, hits=0, total=200), few, 0.01).decision == "undecided"


def test_a_share_threshold_is_tested_not_compared() -> None:
    p = parse_predicate("5xx > 10%")
    ref = Observed(1, hits=80, total=100)
    # 12 % of 100 is not significantly above 10 %
    assert p.judge(Observed(1, hits=12, total=100), ref, 0.01).decision == "undecided"
    assert p.judge(Observed(1, hits=30, total=100), ref, 0.01).decision == "bad"
    assert p.judge(Observed(1, hits=2, total=100), ref, 0.01).decision == "good"


def test_a_count_per_cell_threshold() -> None:
    p = parse_predicate("responses_5xx > 10")  # 10 per cell of 100 requests: 10 %
    assert p.share_threshold(Observed(2, hits=0, total=200)) == pytest.approx(0.1)


def test_quantile_judge_uses_the_order_statistic_test() -> None:
    p = parse_predicate("close delay p50 > 1 s")
    # 10 of 11 above: P(>= 10 of 11 | median at 1 s) = 12/2048 = 0.006
    slow = Observed(1, samples=(20000.0,) * 10 + (0.4,))
    assert p.judge(slow, None, 0.01).decision == "bad"
    assert p.judge(Observed(1, samples=(0.4,) * 10), None, 0.01).decision == "good"
    # 5 samples cannot reach p < 0.01 (0.5^5 = 0.03): undecided, not guessed
    assert p.judge(Observed(1, samples=(20000.0,) * 5), None, 0.01).decision == "undecided"
    half = Observed(1, samples=(20000.0,) * 10 + (0.4,) * 10)
    assert p.judge(half, None, 0.01).decision == "undecided"


def test_per_cell_metrics_need_every_cell_to_agree() -> None:
    p = parse_predicate("CLOSE-WAIT peak > 10")
    assert p.judge(Observed(2, per_cell=(40, 55)), None, 0.01).decision == "bad"
    assert p.judge(Observed(2, per_cell=(0, 3)), None, 0.01).decision == "good"
    assert p.judge(Observed(2, per_cell=(0, 55)), None, 0.01).decision == "undecided"


def test_metrics_are_read_from_cell_records_and_raw_files(tmp_path: Path) -> None:
    (tmp_path / "c1").mkdir()
    (tmp_path / "c1" / "probe.jsonl").write_text(
        '{"delay_ms": 3.5, "end": "fin"}\n{"delay_ms": 20001, "end": "fin"}\n'
    )
    record = _record(
        "c1", stalled=3, connections=40, ends={"fin": 38, "open": 2}, close_wait_peak=12
    )
    failed = _record("c2", status="failed")
    base = tmp_path
    assert parse_predicate("stalled > 0").observe([record, failed], base) == Observed(1, 3, 40)
    assert parse_predicate("open connections > 0").observe([record], base).hits == 2
    assert parse_predicate("close delay p50 > 1s").observe([record], base).samples == (
        3.5,
        20001.0,
    )
    assert parse_predicate("CLOSE-WAIT peak > 10").observe([record], base).per_cell == (12.0,)


# --- the search against a fake step function -------------------------------------------------


@pytest.mark.parametrize("count", [2, 3, 5, 8, 17, 64, 100])
def test_search_finds_every_first_bad_in_log2_steps(count: int) -> None:
    for first_bad in range(1, count):
        calls: list[int] = []

        def judge(i: int, first_bad: int = first_bad, calls: list[int] = calls) -> Any:
            calls.append(i)
            return "bad" if i >= first_bad else "good"

        result = search(count, judge)
        assert result.found and result.first_bad == first_bad
        assert result.last_good == first_bad - 1
        assert len(calls) <= math.ceil(math.log2(count - 1)) if count > 2 else not calls
        assert 0 not in calls and count - 1 not in calls


def test_skipped_and_undecided_steps_are_left_out_never_guessed() -> None:
    # candidates 0..9, first bad 6; 5 cannot be built, 4 stays undecided
    outcomes = {4: "undecided", 5: "skipped"}

    def judge(i: int) -> Any:
        return outcomes.get(i, "bad" if i >= 6 else "good")

    result = search(10, judge)
    assert not result.found
    assert (result.last_good, result.first_bad, result.could_be) == (3, 6, (4, 5))
    # a skipped candidate that does not matter does not stop the answer
    result = search(10, lambda i: "skipped" if i == 2 else ("bad" if i >= 6 else "good"))
    assert result.found and result.first_bad == 6


def test_decide_repeats_rounds_until_decided_or_undecided() -> None:
    p = parse_predicate("stalled > 0")
    bad_ref = Observed(10, hits=40, total=400)
    rounds: list[int] = []

    def no_stall_round(r: int) -> list[dict[str, Any]]:
        rounds.append(r)
        return [_record(f"c{r}", stalled=0, connections=40)]

    def judge(ev: bisect.Evidence) -> Judgement:
        return p.judge(p.observe(ev.records, ev.base), bad_ref, 0.01)

    ev = bisect.Evidence("x", Path("."))
    judgement, used = bisect.decide(ev, no_stall_round, judge, max_rounds=5)
    # 0/40 is undecided (0.932^40 = 0.06), 0/80 good (0.004)
    assert (judgement.decision, used, len(ev.records)) == ("good", 2, 2)
    ev = bisect.Evidence("x", Path("."))
    judgement, used = bisect.decide(ev, no_stall_round, judge, max_rounds=1)
    assert (judgement.decision, used) == ("undecided", 1)

    def broken(r: int) -> list[dict[str, Any]]:
        raise BuildFailed("make: *** [Makefile:1] Error 1")

    judgement, used = bisect.decide(bisect.Evidence("x", Path(".")), broken, judge, 3)
    assert judgement.decision == "skipped" and "Error 1" in judgement.why


class FakeCells:
    """Cells of a fake HAProxy: version i stalls each connection with probability
    ``rates[i]``; version ``broken`` cannot be built. Seeded: the same every run."""

    def __init__(
        self, specs: list[versions.VersionSpec], rates: list[float], broken: int = -1, n: int = 40
    ):
        self.n = n
        self.rate = {s.text: r for s, r in zip(specs, rates, strict=True)}
        self.broken = specs[broken].text if broken >= 0 else None
        self.rng = random.Random(7)
        self.runs: list[str] = []

    def __call__(self, spec: versions.VersionSpec, folder: Path) -> list[dict[str, Any]]:
        self.runs.append(spec.text)
        if spec.text == self.broken:
            raise BuildFailed(f"building {spec.text} failed")
        stalled = sum(self.rng.random() < self.rate[spec.text] for _ in range(self.n))
        return [_record("001-cell", stalled=stalled, connections=self.n)]


def _fake_specs(n: int) -> list[versions.VersionSpec]:
    return [versions.VersionSpec("image", f"haproxy:9.{i}.0", f"9.{i}.0") for i in range(n)]


def _bisect(
    tmp_path: Path, rates: list[float], broken: int = -1, rounds: int = 3, n: int = 40
) -> Any:
    specs = _fake_specs(len(rates))
    fake = FakeCells(specs, rates, broken, n)
    job = bisect.Bisect(
        tmp_path, specs, [s.label for s in specs], "chunked-stall", {"per_size": 10},
        bisect.parse_signal("stalled connections > 0", 0.01), 0.01, rounds, fake,
    )  # fmt: skip
    return job.run(), fake


def test_a_probabilistic_signal_bisects_to_the_first_bad_version(tmp_path: Path) -> None:
    # 9.5.0 brings a stall in 3 % of connections: a round of 200 shows one nearly always,
    # and ruling it out on a good version takes several rounds
    rates = [0.0] * 5 + [0.03] * 4
    outcome, _ = _bisect(tmp_path, rates, rounds=6, n=200)
    assert outcome.result.found
    assert outcome.candidates[outcome.result.first_bad].startswith("9.5.0")
    assert "first bad: 9.5.0" in outcome.answer
    searched = [s for s in outcome.steps if s.number > 0]
    assert len(searched) <= math.ceil(math.log2(len(rates) - 1))
    # good steps needed more than one round: 0/200 does not rule out a 3 % stall at 1 %
    assert any(s.decision == "good" and s.cells > 1 for s in outcome.steps)
    text = bisect.markdown(outcome)
    for step in outcome.steps:
        assert step.evidence in text and step.label in text
    assert "| end" in text


def test_a_build_failure_is_skipped_and_the_answer_says_what_it_could_be(tmp_path: Path) -> None:
    rates = [0.0, 0.0, 0.0, 0.5, 0.5]
    outcome, _ = _bisect(tmp_path, rates, broken=3)
    assert not outcome.result.found
    skipped = [s for s in outcome.steps if s.decision == "skipped"]
    assert [s.label for s in skipped] == ["9.3.0 (image:haproxy:9.3.0)"]
    assert "one of 9.3.0" in outcome.answer and "9.4.0" in outcome.answer


def test_ends_the_signal_does_not_tell_apart_stop_the_bisect(tmp_path: Path) -> None:
    outcome, fake = _bisect(tmp_path, [0.0, 0.0, 0.0])  # the "bad" version never stalls
    assert outcome.result is None and outcome.answer.startswith("stopped: the bad version")
    assert fake.runs == ["image:haproxy:9.2.0"] * 3  # three rounds of the bad end, nothing else
    outcome, _ = _bisect(tmp_path, [0.5, 0.5, 0.5])  # the "good" version stalls too
    assert outcome.answer.startswith("stopped: the good version")


# --- candidates -----------------------------------------------------------------------------


def test_release_candidates_between_two_debian_releases() -> None:
    good, bad = versions.parse("debian:bullseye"), versions.parse("debian:trixie")
    specs, notes = bisect.release_candidates(good, bad, reachable=lambda url: False)
    assert [s.text for s in specs] == ["debian:bullseye", "debian:bookworm", "debian:trixie"]
    assert any("source:2.6.15" in n for n in notes)
    # tarballs that answer join, in version order; reversed ends walk downwards, and a
    # version Debian ships is its package (the ends' kind), not the tarball
    specs, notes = bisect.release_candidates(bad, good, reachable=lambda url: True)
    assert [s.text for s in specs] == [
        "debian:trixie", "source:2.6.17", "source:2.6.16", "source:2.6.15",
        "debian:bookworm", "debian:bullseye",
    ]  # fmt: skip
    assert not notes
    # Debian's moving suites are release points too: five between bullseye and experimental
    specs, _ = bisect.release_candidates(
        good, versions.parse("debian:experimental"), reachable=lambda url: False
    )
    assert [s.expected for s in specs] == ["2.2.9", "2.6.12", "3.0.11", "3.2.26", "3.4.7"]
    with pytest.raises(SpecError, match="two different versions"):
        bisect.release_candidates(good, versions.parse("source:2.2.9"))


# --- the git spec and the commit range -------------------------------------------------------


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = tmp_path / "haproxy"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    (repo / "VERSION").write_text("2.6.12\n")
    (repo / "Makefile").write_text("all:\n")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "upstream 2.6.12")
    for i in range(1, 6):
        (repo / f"f{i}.c").write_text(f"int f{i};\n")
        _git(repo, "add", ".")
        _git(repo, "commit", "-q", "-m", f"change {i}")
    return repo


def test_git_specs_resolve_to_a_commit(repo: Path) -> None:
    spec = versions.parse(f"git:{repo}@HEAD~2")
    sha = _git(repo, "rev-parse", "HEAD~2")
    assert (spec.kind, spec.git_path, spec.git_commit, spec.expected) == (
        "git", str(repo), sha, "2.6.12",
    )  # fmt: skip
    assert spec.text == f"git:{repo}@{sha}"
    assert spec.label == f"2.6.12 (git {sha[:12]})"
    assert versions.parse(spec.text) == spec  # the text is a spec of its own


@pytest.mark.parametrize(
    "rev", ["-rf", "--output=/tmp/x", "HEAD..main", "main@{1}", "a b", "x;id", "nosuchbranch"]
)
def test_hostile_or_unknown_revisions_are_refused(repo: Path, rev: str) -> None:
    with pytest.raises(SpecError) as err:
        versions.parse(f"git:{repo}@{rev}")
    assert "git:<path>@<rev>" in str(err.value)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        # git archive pipes its tar through this (the harness builds a git spec's image
        # from `git archive --format=tar.gz`): it ran before this check
        ("tar.tar.gz.command", "sh -c 'touch {marker}; gzip -cn'"),
        ("filter.x.smudge", "sh -c 'touch {marker}; cat'"),
        ("diff.x.textconv", "sh -c 'touch {marker}; cat'"),
        ("core.fsmonitor", "sh -c 'touch {marker}'"),
        ("include.path", "{marker}.cfg"),
        ("core.sshcommand", "touch {marker}"),
    ],
)
def test_a_checkout_whose_config_names_a_program_is_refused_before_git_runs_in_it(
    repo: Path, tmp_path: Path, key: str, value: str
) -> None:
    """A shared matrix or run folder can name any checkout, one it shipped too: its own
    configuration must not get git to run a program on the user's host. Every git the
    harness runs goes through versions.git (the parse, the image build's archive, the
    bisect's listing)."""
    marker = tmp_path / "ran"
    sha = _git(repo, "rev-parse", "HEAD")
    _git(repo, "config", key, value.format(marker=marker))
    with pytest.raises(SpecError, match=f"sets '{key}' in its own configuration"):
        versions.parse(f"git:{repo}@HEAD")
    for args in (("archive", "--format=tar.gz", sha), ("show", f"{sha}:VERSION")):
        with pytest.raises(SpecError, match="use a fresh clone"):
            versions.git(repo, *args)
    assert not marker.exists()
    _git(repo, "config", "--unset", key)
    assert versions.parse(f"git:{repo}@HEAD").git_commit == sha  # a plain clone is taken


def test_only_versions_git_runs_git_in_a_checkout_a_spec_names() -> None:
    """The check above holds for every git the harness runs only if they all go through
    versions.git: no other module starts a git process (provenance.py reads the
    harness's own checkout)."""
    harness = Path(__file__).resolve().parents[2] / "harness"
    starts = {
        p.relative_to(harness).as_posix()
        for p in harness.rglob("*.py")
        if '["git",' in p.read_text() or '"git", "' in p.read_text()
    }
    assert starts == {"plan/versions.py", "stack/provenance.py"}, starts


def test_a_path_that_is_no_checkout_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="not a git checkout"):
        versions.parse(f"git:{tmp_path}@HEAD")


def test_commit_candidates_are_the_ancestry_path_with_subjects(repo: Path) -> None:
    good, bad = versions.parse(f"git:{repo}@HEAD~5"), versions.parse(f"git:{repo}@HEAD")
    commits = bisect.commit_candidates(good, bad)
    assert [c.subject for c in commits] == ["upstream 2.6.12"] + [
        f"change {i}" for i in range(1, 6)
    ]
    assert commits[0].sha == good.git_commit and commits[-1].sha == bad.git_commit
    with pytest.raises(SpecError, match="not an ancestor"):
        bisect.commit_candidates(bad, good)
    specs, labels, _ = bisect.plan_bisect(good.text, bad.text, "half-close", {}, None)
    assert len(specs) == 6 and labels[3].endswith("change 3")


# --- the verdict signal on recorded cells ------------------------------------------------------

RECORDED = Path(__file__).resolve().parents[1] / "data" / "run-chunked-stall"


def _evidence(version: str) -> bisect.Evidence:
    """The recorded chunked-stall cell of one Debian version, as a bisect step holds it."""
    folder = next(RECORDED.glob(f"*-{version}-*"))
    record = load_cell(folder / "cell.json")
    return bisect.Evidence(record.version.spec, RECORDED, [record])


def _cell(spec: str, stalled: int, connections: int = 40) -> CellRecord:
    return _record(f"cell-{spec}", stalled=stalled, connections=connections, spec=spec)


def test_the_verdict_signal_judges_steps_against_the_good_and_the_bad_version(
    tmp_path: Path,
) -> None:
    signal = bisect.parse_signal("regression", 0.01)

    def ev(spec: str, stalled: int) -> bisect.Evidence:
        return bisect.Evidence(spec, tmp_path, [_cell(spec, stalled)])

    good, bad = ev("debian:bullseye", 0), ev("debian:bookworm", 19)
    assert signal.judge_step(good, good, None, 0.01).decision == "good"
    judged = signal.judge_step(bad, good, None, 0.01)
    assert judged.decision == "bad" and "regression" in judged.value
    assert "19/40" in judged.why
    # no stall: the bad version is a regression against it, so it is good
    assert signal.judge_step(ev("debian:trixie", 0), good, bad, 0.01).decision == "good"
    # with no bad version to hold it against, "no change" is not "good"
    assert signal.judge_step(ev("debian:trixie", 0), good, None, 0.01).decision == "undecided"


def test_a_verdict_without_the_power_to_decide_is_undecided() -> None:
    """The recorded cells: 2.6.12 stalled 5 of 49 connections, 2.2.9 none (Fisher
    p=0.06): no significant change at 0.01, which is not a good version."""
    signal = bisect.parse_signal("regression", 0.01)
    judged = signal.judge_step(_evidence("2.6.12"), _evidence("2.2.9"), None, 0.01)
    assert judged.decision == "undecided"
    assert "no significant change" in judged.value


def test_a_commit_subject_cannot_break_the_report(repo: Path) -> None:
    (repo / "x.c").write_text("int x;\n")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "a | b \x1b[31mred")
    good, bad = versions.parse(f"git:{repo}@HEAD~1"), versions.parse(f"git:{repo}@HEAD")
    assert bisect.commit_candidates(good, bad)[-1].subject == "a / b ?[31mred"


# --- the command line, before anything starts ------------------------------------------------


def _cli(*args: str) -> int:
    return cli.main(["bisect", "--scenario", "half-close", *args])


def test_the_command_lists_the_commits_of_a_dry_run(repo: Path, capsys: Any) -> None:
    status = _cli(
        "--good", f"git:{repo}@HEAD~5", "--bad", f"git:{repo}@main",
        "--signal", "close delay p50 > 1 s", "--param", "connections=8", "--dry-run",
    )  # fmt: skip
    out = capsys.readouterr().out
    assert status == 0, out
    assert "upstream 2.6.12" in out and "change 5" in out
    assert "6 candidates, about 3 step(s) between the ends" in out


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--signal", "close delay p50 > 1"], "give the number a unit"),
        (["--signal", "stalled > 0", "--param", "connections=0"], "connections"),
        (["--signal", "stalled > 0", "--param", "nope=1"], "nope"),
        (["--signal", "stalled > 0", "--alpha", "0.7"], "--alpha"),
        (["--signal", "stalled > 0", "--max-rounds", "0"], "--max-rounds"),
    ],
)
def test_bad_input_exits_2_before_anything_starts(
    repo: Path, capsys: Any, args: list[str], words: str
) -> None:
    good, bad = f"git:{repo}@HEAD~5", f"git:{repo}@main"
    assert _cli("--good", good, "--bad", bad, *args) == 2
    assert words in capsys.readouterr().err


def test_a_bad_revision_exits_2(repo: Path, capsys: Any) -> None:
    assert _cli("--good", f"git:{repo}@--all", "--bad", f"git:{repo}@main", "--signal",
                "stalled > 0") == 2  # fmt: skip
    assert "is not a git spec" in capsys.readouterr().err


def test_latency_samples_come_from_the_analyse_stage(tmp_path: Path) -> None:
    """An old folder with Locust's ms buckets only: the same samples the report uses."""
    (tmp_path / "c1").mkdir()
    (tmp_path / "c1" / "locust.json").write_text(
        json.dumps([{"name": "/", "response_times": {"2": 3, "40": 1}}])
    )
    record = _record("c1")
    got = parse_predicate("latency p50 > 10 ms").observe([record], tmp_path)
    assert sorted(got.samples) == [2.0, 2.0, 2.0, 40.0]
