"""A scenario is declared in one place (plan/scenarios.py: parameters, knobs, and what the
report shows of it); the report stage asks it instead of branching on its name."""

import re
from pathlib import Path

from harness import ROOT
from harness.analyse.record import load_cell
from harness.plan import scenarios
from harness.plan.scenarios import SCENARIOS
from harness.report import tables

REPORT = ROOT / "harness" / "report"
CALIBRATION_OR_FAULT = {
    "injected", "probe-off-wire", "target-late", "calibration-verdict", "fault-kind", "fault-at",
}  # fmt: skip


def test_every_name_a_scenario_shows_resolves_in_the_report():
    for name, scenario in SCENARIOS.items():
        shows = scenario.shows
        missing = [key for key in shows.columns if key not in tables.CATALOGUE]
        assert not missing, f"{name}: columns {missing} are not in tables.CATALOGUE"
        if shows.phenomenon:
            assert shows.phenomenon in tables.PHENOMENA, name
        assert shows.columns, f"{name} shows no column"
        # the verdict metric is what the comparisons use
        if shows.verdict:
            assert tables.METRIC[name] == (shows.verdict.kind, shows.verdict.what)
        else:
            assert name not in tables.METRIC


def test_the_report_never_branches_on_a_scenario_name():
    # `== "half-close"`, `in ("calibration", ...)`, or a table keyed by scenario name
    names = "|".join(re.escape(n) for n in SCENARIOS)
    branch = re.compile(
        rf"""(==|!=)\s*["']({names})["']|\bin\s*[(\[{{]\s*["']({names})["']"""
        rf"""|^\s*["']({names})["']\s*:\s*[\[(]"""
    )
    found = [
        f"{path.relative_to(ROOT)}:{i}: {line.strip()}"
        for path in sorted(REPORT.glob("*.py"))
        for i, line in enumerate(path.read_text().splitlines(), start=1)
        if branch.search(line)
    ]
    assert found == []


def test_the_branch_check_catches_a_branch():
    names = "|".join(re.escape(n) for n in SCENARIOS)
    branch = re.compile(rf"""(==|!=)\s*["']({names})["']""")
    assert branch.search('    if name == "chunked-stall":')


def test_a_scenario_removed_since_a_run_is_shown_with_the_load_columns():
    assert tables.shows("no-such-scenario") is scenarios.UNKNOWN_SHOWS
    assert set(scenarios.UNKNOWN_SHOWS.columns) <= set(tables.CATALOGUE)


def test_no_scenario_is_named_in_report_code():
    # The report asks the scenario (its Shows) instead of branching on its name: a name
    # appears there only in comments and docstrings.
    import ast

    report = Path(tables.__file__).parent
    for path in report.glob("*.py"):
        tree = ast.parse(path.read_text())
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef))
            and node.body
            and isinstance(node.body[0], ast.Expr)
            and isinstance(node.body[0].value, ast.Constant)
        }
        compared = {  # `name == "chunked-stall"`, `x in ("smoke", ...)`, SCENARIOS["smoke"]
            id(c)
            for node in ast.walk(tree)
            if isinstance(node, ast.Compare)
            or (isinstance(node, ast.Subscript) and "SCENARIOS" in ast.unparse(node.value))
            for c in ast.walk(node)
            if isinstance(c, ast.Constant)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                if id(node) in docstrings:
                    continue
                named = [
                    n
                    for n in SCENARIOS
                    if f"`{n}`" in node.value or (id(node) in compared and node.value == n)
                ]
                assert not named, f"{path.name}:{node.lineno} names {named}"


def test_columns_render_for_a_recorded_cell():
    # every catalogue column reads a real record without raising (missing data: "-" or None)
    recorded = Path(__file__).resolve().parents[1] / "data" / "run-chunked-stall"
    record = load_cell(next(recorded.glob("*2.6.12*/cell.json")))
    for key, (_header, read) in tables.CATALOGUE.items():
        if key in CALIBRATION_OR_FAULT:
            continue  # they read parameters only those scenarios have
        read(record)
