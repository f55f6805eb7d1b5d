"""The layout: the test tree pytest collects, and the stages' import contract.

The harness is four stages that import one way (README "Layout"): plan <- stack,
plan <- analyse <- report, only the stack talks to Docker, no stage calls back into
the runner or the CLI. pyproject.toml's [tool.importlinter] contracts say so and
`make lint` checks them with `lint-imports`; these tests check them too, and check that
the contracts themselves reject a backward import (a contract that allowed everything
would pass the first test as well).
"""

import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
ROOT = TESTS.parent

# Every module a contract names must exist, or lint-imports stops before checking.
SKELETON = (
    "harness/runner.py",
    "harness/cli.py",
    "harness/plan/spec.py",
    "harness/stack/project.py",
    "harness/analyse/census.py",
    "harness/report/tables.py",
    "harness/report/plots.py",
    "harness/report/model.py",
    "harness/report/render.py",
    "harness/report/rebuild.py",
    "harness/report/site.py",
)


def lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    """`lint-imports` over the package `harness` found in `cwd`, with `cwd`/pyproject.toml."""
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from importlinter.cli import lint_imports_command; "
            "sys.exit(lint_imports_command())",
            "--no-cache",
            "--no-logo",
        ],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(cwd)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_no_two_test_modules_share_a_name() -> None:
    # pytest imports test modules by basename (rootdir conftest, no __init__.py): two
    # tests/*/test_x.py made the whole collection fail with "import file mismatch".
    names = Counter(p.name for p in TESTS.rglob("test_*.py"))
    assert [name for name, n in names.items() if n > 1] == []


def test_the_stages_import_one_way() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "backward_import", "contract"),
    [
        ("harness/plan/spec.py", "import harness.stack.project", "The stack builds on the plan"),
        ("harness/plan/spec.py", "import harness.analyse.census", "Records flow one way"),
        ("harness/analyse/census.py", "import harness.stack.project", "Only the stack talks"),
        ("harness/analyse/census.py", "import docker", "Only the stack talks to Docker"),
        ("harness/analyse/census.py", "import harness.report.tables", "Records flow one way"),
        ("harness/report/tables.py", "import harness.stack.project", "Only the stack talks"),
        ("harness/report/tables.py", "import harness.report.plots", "Inside the report"),
        ("harness/report/plots.py", "import harness.report.render", "Inside the report"),
        ("harness/stack/project.py", "import harness.analyse.census", "neither judges"),
        ("harness/analyse/census.py", "import harness.runner", "never call back"),
    ],
)
def test_the_contracts_reject_a_backward_import(
    tmp_path: Path, module: str, backward_import: str, contract: str
) -> None:
    # The project's own contracts, over a skeleton of the harness with one wrong import.
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    for path in map(Path, SKELETON):
        for package in reversed(path.parents[:-1]):  # harness, then harness/<stage>
            (tmp_path / package).mkdir(exist_ok=True)
            (tmp_path / package / "__init__.py").touch()
        (tmp_path / path).write_text('"""A stand-in."""\n')
    (tmp_path / module).write_text(f"{backward_import}\n")
    result = lint_imports(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    broken = result.stdout.split("Broken contracts", 1)[-1]
    assert contract in broken
    assert module.removesuffix(".py").replace("/", ".") in broken
