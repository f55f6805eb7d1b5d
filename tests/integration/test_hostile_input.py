"""Hostile input (issue 10), one test per kind, through the real CLI on a real engine.

Each of these once crashed, hung or blamed the wrong thing. Each must now be refused
like any bad input (``Cli.refused`` in test_bad_input.py): exit 2, a message naming
what, where and how to fix it, no traceback, no stack started, nothing left behind,
earlier results untouched. Every CLI call has a timeout: a hang fails, never blocks.
The matrix texts are kept here, as data (HOSTILE_* below).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from harness.stack.compose import client
from tests.integration.test_bad_input import OK_HEAD, Cli

DATA = Path(__file__).resolve().parents[1] / "data"

# A refusal is one short message: never a page of digits, brackets or 'lol's.
SHORT = 1500
TIMEOUT = 30


@pytest.fixture(scope="module", autouse=True)
def engine() -> None:
    client()  # a missing engine is an error here, never a skip


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path)


def _matrix(cli: Cli, text: str) -> tuple[Path, str]:
    path = cli.tmp / "hostile.yaml"
    path.write_text(text)
    return path, str(path)


# --- 1. an entry limited to no version --------------------------------------------------


def test_scenario_entry_with_an_empty_versions_list(cli: Cli) -> None:
    # Once zero cells, then IndexError in the CLI.
    path, name = _matrix(cli, OK_HEAD + "scenarios:\n  - name: smoke\n    versions: []\n")
    err = cli.refused(
        cli("matrix", name, timeout=TIMEOUT),
        f"error: {path}",
        "scenarios.0.versions (line 5)",
        "list at least one of the matrix's versions, or drop versions:",
    )
    assert len(err) < SHORT


# --- 2. numbers of hundreds and thousands of digits ---------------------------------------

HOSTILE_NUMBERS = [
    pytest.param(
        OK_HEAD + "repetitions: " + "9" * 300 + "\nscenarios: [{name: smoke}]\n",
        ["(line 3, column 14)", "(300 digits) is too large", "beyond 64 bits"],
        id="300-digits-in-repetitions",
    ),
    pytest.param(
        # Beyond Python's 4,300-digit limit: once a ValueError inside PyYAML.
        OK_HEAD + "scenarios:\n  - name: smoke\n    params: {size: " + "9" * 5000 + "}\n",
        ["(line 5, column 20)", "(5,000 digits) is too large", "write the number it means"],
        id="5000-digits-in-a-parameter",
    ),
    pytest.param(
        OK_HEAD + "load: {users: -" + "1" * 5000 + "}\nscenarios: [{name: smoke}]\n",
        ["(line 3, column 15)", "is too large"],
        id="5000-digits-negative",
    ),
    pytest.param(
        # Hex has no digit limit in Python: a huge int, then repr of it in a message.
        OK_HEAD + "scenarios:\n  - {name: smoke, params: {size: 0x" + "f" * 300 + "}}\n",
        ["(line 4, column", "is too large"],
        id="300-hex-digits",
    ),
]


@pytest.mark.parametrize(("text", "parts"), HOSTILE_NUMBERS)
def test_number_of_many_digits(cli: Cli, text: str, parts: list[str]) -> None:
    path, name = _matrix(cli, text)
    err = cli.refused(cli("matrix", name, timeout=TIMEOUT), f"error: {path}", *parts)
    assert len(err) < SHORT, len(err)


# --- 3. deep nesting ------------------------------------------------------------------------


@pytest.mark.parametrize("opening", ["[", "{a: "], ids=["lists", "mappings"])
def test_matrix_nested_20000_deep(cli: Cli, opening: str) -> None:
    # Once a RecursionError in PyYAML's composer.
    path, name = _matrix(cli, OK_HEAD + "scenarios: [{name: smoke}]\nx: " + opening * 20000)
    err = cli.refused(
        cli("matrix", name, timeout=TIMEOUT),
        f"error: {path} (line 4, column",
        "nested more than 64 levels deep",
        "close the brackets",
    )
    assert len(err) < SHORT, len(err)


# --- 4. NaN and infinity ---------------------------------------------------------------------

HOSTILE_FLOATS = [
    pytest.param(
        OK_HEAD + "scenarios:\n  - name: half-close\n    params: {deadline_s: .nan}\n",
        "(line 5): scenarios[0].params.deadline_s (scenario 'half-close'): Input should be a "
        "finite number, got nan",
        id="deadline-nan",
    ),
    pytest.param(
        # Once an OverflowError with a traceback, after the images were built.
        OK_HEAD + "scenarios:\n  - name: half-close\n    params: {deadline_s: .inf}\n",
        "(line 5): scenarios[0].params.deadline_s (scenario 'half-close'): Input should be a "
        "finite number, got inf",
        id="deadline-inf",
    ),
    pytest.param(
        OK_HEAD + "load:\n  duration_s: .nan\nscenarios: [{name: smoke}]\n",
        "load.duration_s (line 4): Input should be a finite number (got nan)",
        id="load-duration-nan",
    ),
    pytest.param(
        OK_HEAD + "load: {mode: open, rate: .inf}\nscenarios: [{name: smoke}]\n",
        "load.rate (line 3): Input should be a finite number (got inf)",
        id="load-rate-inf",
    ),
    pytest.param(
        # Once accepted: the run started, its verdicts computed against infinity.
        OK_HEAD + "verdicts:\n  min_ratio: .inf\nscenarios: [{name: smoke}]\n",
        "verdicts.min_ratio (line 4): Input should be a finite number (got inf)",
        id="verdicts-min-ratio-inf",
    ),
    pytest.param(
        OK_HEAD + "verdicts: {alpha: .NaN}\nscenarios: [{name: smoke}]\n",
        "verdicts.alpha (line 3): Input should be a finite number (got nan)",
        id="verdicts-alpha-nan",
    ),
    pytest.param(
        OK_HEAD + "cell_timeout_s: -.inf\nscenarios: [{name: smoke}]\n",
        "cell_timeout_s (line 3): Input should be a finite number (got -inf)",
        id="cell-timeout-minus-inf",
    ),
    pytest.param(
        OK_HEAD + "cell_timeout_s: 1.0e+999\nscenarios: [{name: smoke}]\n",
        "cell_timeout_s (line 3): Input should be a finite number (got inf)",
        id="float-overflow-1e999",
    ),
]


@pytest.mark.parametrize(("text", "where"), HOSTILE_FLOATS)
def test_nan_and_infinity(cli: Cli, text: str, where: str) -> None:
    path, name = _matrix(cli, text)
    cli.refused(
        cli("matrix", name, timeout=TIMEOUT),
        f"error: {path}",
        where,
        "finite number",
    )


# --- 5. paths that are not regular files, or too large ---------------------------------------


@pytest.mark.parametrize("kind", ["dev-zero", "fifo", "directory", "two-mebibytes"])
def test_matrix_path_that_is_no_matrix_file(cli: Cli, kind: str) -> None:
    # /dev/zero was read forever; a FIFO blocked on open (no writer ever comes).
    if kind == "dev-zero":
        path, what = Path("/dev/zero"), "a character device, not a regular file"
    elif kind == "fifo":
        path, what = cli.tmp / "matrix.yaml", "a FIFO (named pipe), not a regular file"
        os.mkfifo(path)
    elif kind == "directory":
        path, what = cli.tmp / "matrices", "a directory, not a regular file"
        path.mkdir()
    else:
        path, what = cli.tmp / "big.yaml", "2,097,152 bytes, more than a matrix file may hold"
        path.write_bytes(
            (OK_HEAD + "scenarios: [{name: smoke}]\n#").encode().ljust(2 * 2**20, b"x")
        )
    cli.refused(cli("matrix", str(path), timeout=TIMEOUT), f"error: {path}: {what}", "not read")


# --- 6. billion laughs -----------------------------------------------------------------------

# Nine levels of nine aliases in under 1 KB: 9**9 = 387,420,489 'lol's once expanded.
HOSTILE_LAUGHS = (
    OK_HEAD
    + "scenarios: [{name: smoke}]\n"
    + "description: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
    + "".join(
        f"{key}: &{key} [{', '.join([f'*{prev}'] * 9)}]\n"
        for prev, key in zip("abcdefgh", "bcdefghi", strict=True)
    )
)


def test_billion_laughs(cli: Cli) -> None:
    assert len(HOSTILE_LAUGHS) < 1024
    path, name = _matrix(cli, HOSTILE_LAUGHS)
    err = cli.refused(
        cli("matrix", name, timeout=TIMEOUT),
        f"error: {path} (line 9, column 4)",  # f: 9**6 values, the first level over the limit
        "anchors and aliases (&name, *name) expanded",
        "more than 100,000 values",
        "use fewer aliases",
    )
    assert len(err) < SHORT, len(err)
    assert "lol, lol" not in err


def test_alias_inside_its_own_anchor(cli: Cli) -> None:
    path, name = _matrix(cli, OK_HEAD + "scenarios: &s [{name: smoke}, *s]\n")
    cli.refused(
        cli("matrix", name, timeout=TIMEOUT),
        f"error: {path} (line 3, column",
        "an alias (*name) sits inside the node its anchor (&name) names: a loop",
    )


# --- 7. run.json of the wrong shape ----------------------------------------------------------

HOSTILE_RUN_JSON = [
    pytest.param("[1, 2]\n", "it holds a list, not a mapping", id="a-list"),
    pytest.param('"run"\n', "it holds a str, not a mapping", id="a-string"),
    pytest.param('{"run": "x"}\n', "at matrix, field required", id="no-matrix"),
    # the typed manifest names its first missing key (run), then how many more
    pytest.param('{"matrix": [1]}\n', "field required (got {'matrix': [1]", id="list"),
    pytest.param(
        '{"matrix": {"name": "t"}, "matrix_file": 7}\n',
        "field required (got {'matrix': {'name': 't'}, 'matrix_file': 7",
        id="matrix-file-a-number",
    ),
    pytest.param('{"matrix": ' + "[" * 20000 + "}\n", "nested too deep", id="nested-20000"),
]


@pytest.mark.parametrize(("text", "what"), HOSTILE_RUN_JSON)
def test_resume_a_run_whose_run_json_has_the_wrong_shape(cli: Cli, text: str, what: str) -> None:
    run = cli.tmp / "elsewhere" / "20250101T000000Z-damaged"
    run.mkdir(parents=True)
    (run / "run.json").write_text(text)
    cli.refused(
        cli("matrix", "--resume", str(run), timeout=TIMEOUT),
        f"error: {run / 'run.json'}: not ",  # "not the run.json ..." / "not JSON ..."
        what,
        "estore",  # how to fix it: "Restore it" / "restore the file from a copy"
    )
    assert [p.name for p in run.iterdir()] == ["run.json"]
    assert (run / "run.json").read_text() == text


def test_resume_a_run_whose_recorded_matrix_is_invalid(cli: Cli) -> None:
    # The error names run.json, not the matrix file the run once came from.
    run = cli.tmp / "elsewhere" / "20250101T000000Z-edited"
    run.mkdir(parents=True)
    matrix = {"name": "t", "versions": ["debian:bookworm"], "scenarios": [{"name": "smoke"}]}
    # A run.json the harness could have written, but for its matrix's load.
    recorded = json.loads((DATA / "run-chunked-stall" / "run.json").read_text())
    text = json.dumps(recorded | {"matrix_file": str(cli.tmp / "m.yaml"), "matrix": matrix | {
        "load": {"duration_s": 0}}})  # fmt: skip
    (run / "run.json").write_text(text)
    cli.refused(
        cli("matrix", "--resume", str(run), timeout=TIMEOUT),
        f"error: {run / 'run.json'} (its matrix:): the matrix is not valid",
        "load.duration_s: Input should be greater than 0 (got 0)",
    )
    assert [p.name for p in run.iterdir()] == ["run.json"]


# --- 8. merge keys are YAML, duplicates are not ----------------------------------------------


def test_merge_key_is_read_as_yaml(cli: Cli) -> None:
    # The second entry gets name and params from the first through '<<: *base' (once
    # "not valid YAML"); the bad parameter it inherits proves the merge was resolved.
    path, name = _matrix(
        cli,
        OK_HEAD
        + "scenarios:\n"
        + "  - &base {name: smoke, params: {size: 128}}\n"
        + "  - <<: *base\n"
        + "    params: {sizee: 1}\n",
    )
    err = cli.refused(
        cli("matrix", name, timeout=TIMEOUT),
        f"error: {path} (line 6): scenarios[1].params.sizee: scenario 'smoke' has no parameter",
    )
    assert "not valid YAML" not in err


def test_duplicate_key_beside_a_merge_key_is_still_refused(cli: Cli) -> None:
    path, name = _matrix(
        cli,
        OK_HEAD
        + "scenarios:\n"
        + "  - &base {name: smoke}\n"
        + "  - <<: *base\n"
        + "    params: {size: 1}\n"
        + "    params: {size: 2}\n",
    )
    cli.refused(
        cli("matrix", name, timeout=TIMEOUT),
        f"error: {path} (line 7, column 5)",
        "'params' is given twice in one mapping (first on line 6)",
    )


# --- 9. image references Docker would refuse -------------------------------------------------

HOSTILE_IMAGE_REFS = [
    pytest.param("HAProxy:2.6.15", id="uppercase"),
    pytest.param("--help", id="an-option"),
    pytest.param("-q", id="a-short-option"),
    pytest.param("haproxy :2.6.15", id="a-space"),
    pytest.param("haproxy:2.6.15\n--help", id="a-newline"),
    pytest.param("haproxy:-2.6", id="tag-starting-with-a-dash"),
    pytest.param("haproxy@sha256:abc", id="short-digest"),
]


@pytest.mark.parametrize("ref", HOSTILE_IMAGE_REFS)
def test_malformed_image_reference(cli: Cli, ref: str) -> None:
    # Once "the Docker engine stopped answering", with a run folder left behind.
    cli.refused(
        cli("run", "--haproxy", f"image:{ref}", "--duration", "1", timeout=TIMEOUT),
        "error: --haproxy: ",
        "is not an image reference Docker accepts",
        "[host[:port]/]name[:tag][@sha256:<64 hex digits>]",
        "E.g. image:haproxy:2.6.15",
    )


def test_malformed_image_reference_in_a_matrix(cli: Cli) -> None:
    path, name = _matrix(
        cli,
        "name: t\nversions:\n  - debian:bookworm\n  - 'image:--help'\nscenarios: [{name: smoke}]\n",
    )
    cli.refused(
        cli("matrix", name, timeout=TIMEOUT),
        f"error: {path} (line 4): versions[1]: '--help' is not an image reference Docker accepts",
    )
