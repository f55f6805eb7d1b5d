"""The pure parsing pieces behind refusing hostile input (issue 10): matrix files,
run.json, version specs and the quoting of input in messages. No Docker here; the same
inputs through the real CLI are in tests/integration/test_hostile_input.py."""

from __future__ import annotations

import json
import math
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from harness import quote, results
from harness.errors import HarnessError, SpecError
from harness.plan import spec, versions

HEAD = "name: t\nversions: [debian:bookworm]\n"


def load(tmp_path: Path, text: str) -> spec.Plan:
    path = tmp_path / "m.yaml"
    path.write_text(text)
    return spec.load(path, "run1")


def refused(tmp_path: Path, text: str, *parts: str) -> str:
    with pytest.raises(SpecError) as err:
        load(tmp_path, text)
    message = str(err.value)
    for part in parts:
        assert part in message, message
    assert len(message) < 1500, len(message)
    return message


@pytest.fixture
def alarm() -> Iterator[None]:
    """A hang fails the test within 10 s instead of blocking the suite."""

    def fail(*_: object) -> None:
        raise TimeoutError("hung")

    previous = signal.signal(signal.SIGALRM, fail)
    signal.alarm(10)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


# --- 1. no cells ----------------------------------------------------------------------


def test_entry_versions_empty_is_refused(tmp_path: Path) -> None:
    refused(
        tmp_path,
        HEAD + "scenarios:\n  - name: smoke\n    versions: []\n",
        "scenarios.0.versions (line 5)",
        "list at least one of the matrix's versions, or drop versions:",
    )
    # null is the default: every version
    assert load(tmp_path, HEAD + "scenarios:\n  - name: smoke\n    versions: null\n").cells


def test_a_matrix_of_no_cells_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # Validation refuses every way to it today; expand() checks its result anyway.
    raw = {"name": "t", "versions": ["debian:bookworm"], "scenarios": [{"name": "smoke"}]}
    matrix = spec.Matrix.model_validate(raw)
    matrix.scenarios[0].versions = []  # what the model accepted before
    monkeypatch.setattr(spec.Matrix, "model_validate", lambda _raw: matrix)
    with pytest.raises(SpecError, match="the matrix expands to no cell"):
        spec.expand(raw, "run1")


# --- 2. big numbers -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "digits"),
    [("9" * 20, "20"), ("9" * 300, "300"), ("9" * 5000, "5,000"), ("-" + "1" * 4301, "4,301")],
)
def test_big_integers_are_refused_with_line_and_column(
    tmp_path: Path, number: str, digits: str
) -> None:
    refused(
        tmp_path,
        HEAD + f"repetitions: {number}\nscenarios: [{{name: smoke}}]\n",
        "(line 3, column 14): the number",
        f"({digits} digits) is too large",
    )
    # The largest 64-bit integer still parses, and meets the parameter's own bound.
    refused(
        tmp_path,
        HEAD + f"scenarios: [{{name: smoke, params: {{size: {2**63 - 1}}}}}]\n",
        "scenarios[0].params.size (scenario 'smoke'): Input should be less than or equal to "
        f"100000000, got {2**63 - 1}",
    )


@pytest.mark.parametrize("number", ["0x" + "f" * 30, "0b" + "1" * 64, "1" + "_0" * 30])
def test_big_integers_in_other_notations(tmp_path: Path, number: str) -> None:
    refused(
        tmp_path,
        HEAD + f"scenarios: [{{name: smoke, params: {{size: {number}}}}}]\n",
        "(line 3, column 42)",
        "is too large",
    )


def test_big_integer_as_a_mapping_key(tmp_path: Path) -> None:
    refused(tmp_path, HEAD + "scenarios: [{name: smoke}]\n" + "9" * 300 + ": 1\n", "too large")


def test_a_matrix_of_too_many_cells_is_refused(tmp_path: Path) -> None:
    grid = ", ".join(f"k{i}: [{', '.join(map(str, range(10)))}]" for i in range(8))
    text = HEAD + f"scenarios: [{{name: smoke, grid: {{{grid}}}}}]\n"
    refused(tmp_path, text, "expands to 100,000,000 cells, more than 10,000")


def test_big_integers_from_a_dict_are_refused_too() -> None:
    # run.json and the CLI build matrices without the loader.
    raw = {"name": "t", "versions": ["debian:bookworm"], "scenarios": [{"name": "smoke"}]}
    with pytest.raises(SpecError) as err:
        spec.expand(raw | {"repetitions": 10**5000}, "run1")
    assert "repetitions: Input should be less than or equal to 100 (got <a number of about " in str(
        err.value
    )


# --- 3. nesting -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        HEAD + "scenarios: [{name: smoke}]\nx: " + "[" * 20000,
        HEAD + "scenarios: [{name: smoke}]\nx: " + "{a: " * 20000,
        "- " * 20000 + "x\n",
    ],
    ids=["flow-lists", "flow-mappings", "block-lists"],
)
def test_deep_nesting_is_refused(tmp_path: Path, text: str) -> None:
    refused(tmp_path, text, "nested more than 64 levels deep")
    # Up to the limit, it is only a question for the schema.
    text = HEAD + "scenarios: [{name: smoke}]\nx: " + "[" * 60 + "]" * 60 + "\n"
    refused(tmp_path, text, "x (line 4): Extra inputs are not permitted")


# --- 4. NaN and infinity --------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("load: {duration_s: .nan}\nscenarios: [{name: smoke}]\n", "load.duration_s (line 3)"),
        ("load: {spawn_rate: .inf}\nscenarios: [{name: smoke}]\n", "load.spawn_rate (line 3)"),
        ("verdicts: {min_ratio: .inf}\nscenarios: [{name: smoke}]\n", "verdicts.min_ratio"),
        ("verdicts: {min_effect: .NAN}\nscenarios: [{name: smoke}]\n", "verdicts.min_effect"),
        ("cell_timeout_s: 1.0e+999\nscenarios: [{name: smoke}]\n", "cell_timeout_s (line 3)"),
        ("cell_timeout_s: -.inf\nscenarios: [{name: smoke}]\n", "cell_timeout_s (line 3)"),
    ],
)
def test_nan_and_infinity_are_refused_in_the_matrix_fields(
    tmp_path: Path, text: str, where: str
) -> None:
    # NaN passed every bound (all comparisons with it are false), infinity every open one.
    refused(tmp_path, HEAD + text, where, "Input should be a finite number", "write a finite")


@pytest.mark.parametrize(
    ("model", "values"),
    [
        (spec.Load, {"duration_s": math.nan}),
        (spec.Load, {"rate": math.inf}),
        (spec.Verdicts, {"min_ratio": math.inf}),
        (spec.Verdicts, {"alpha": math.nan}),
    ],
)
def test_models_refuse_nan_and_infinity(model: type, values: dict[str, float]) -> None:
    with pytest.raises(ValidationError, match="finite number"):
        model(**values)


@pytest.mark.parametrize("text", ["1.0e999", "1e999", "'1.0e999'"])
def test_text_that_reads_as_infinity_is_refused(tmp_path: Path, text: str) -> None:
    # The matrix loader reads floats as YAML 1.2 does (1.0e999 is a float: inf), and
    # pydantic's lax mode reads the quoted text as inf too: both refused.
    err = refused(
        tmp_path,
        HEAD + f"cell_timeout_s: {text}\nscenarios: [{{name: smoke}}]\n",
        "cell_timeout_s (line 3): Input should be a finite number (got ",
        "write a finite number",
    )
    assert "(got inf)" in err or "(got '1.0e999')" in err


@pytest.mark.parametrize(("text", "value"), [("1.0e9", 1e9), ("1e3", 1e3), ("-2e-3", -0.002)])
def test_floats_without_an_exponent_sign_are_numbers(text: str, value: float) -> None:
    # PyYAML follows YAML 1.1, where these are strings: `duration_s: 1.0e9` was refused
    # as "not a valid number" instead of by its bound.
    assert spec.yaml.load(f"a: {text}", Loader=spec._MatrixLoader) == {"a": value}
    assert spec.yaml.safe_load(f"a: {text}") == {"a": text}  # SafeLoader itself unchanged


def test_matrix_model_refuses_an_infinite_cell_timeout() -> None:
    with pytest.raises(ValidationError, match="finite number"):
        spec.Matrix(
            name="t", versions=["x"], scenarios=[{"name": "smoke"}], cell_timeout_s=math.inf
        )


# --- 5. what the path points at -------------------------------------------------------


def test_dev_zero_is_not_read(alarm: None) -> None:
    with pytest.raises(SpecError, match="/dev/zero: a character device, not a regular file"):
        spec.load(Path("/dev/zero"), "run1")


def test_a_fifo_is_not_opened(tmp_path: Path, alarm: None) -> None:
    fifo = tmp_path / "m.yaml"
    os.mkfifo(fifo)
    with pytest.raises(SpecError, match="a FIFO \\(named pipe\\), not a regular file"):
        spec.load(fifo, "run1")


def test_a_directory_is_not_read(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="a directory, not a regular file: it is not read"):
        spec.load(tmp_path, "run1")


def test_files_above_one_mebibyte_are_not_read(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_bytes((HEAD + "scenarios: [{name: smoke}]\n#").encode().ljust(spec.MAX_BYTES + 1))
    with pytest.raises(SpecError, match="1,048,577 bytes, more than a matrix file may hold"):
        spec.load(path, "run1")
    path.write_bytes((HEAD + "scenarios: [{name: smoke}]\n#").encode().ljust(spec.MAX_BYTES, b"x"))
    assert spec.load(path, "run1").cells


# --- 6. aliases -----------------------------------------------------------------------

LAUGHS = (
    HEAD
    + "scenarios: [{name: smoke}]\n"
    + "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
    + "".join(
        f"{key}: &{key} [{', '.join([f'*{prev}'] * 9)}]\n"
        for prev, key in zip("abcdefgh", "bcdefghi", strict=True)
    )
)


def test_billion_laughs_is_refused_quickly(tmp_path: Path, alarm: None) -> None:
    assert len(LAUGHS) < 1024
    t0 = time.monotonic()
    message = refused(
        tmp_path,
        LAUGHS,
        "(line 9, column 4): with its anchors and aliases (&name, *name) expanded",
        "more than 100,000 values",
    )
    assert time.monotonic() - t0 < 2
    assert "lol" not in message.split("\n")[0]
    # Below the limit, aliases are fine: 1,000 of one entry, about 4,000 values.
    text = HEAD + "scenarios: [&s {name: smoke}" + ", *s" * 999 + "]\n"
    assert len(load(tmp_path, text).cells) == 1000


def test_an_alias_inside_its_own_anchor_is_refused(tmp_path: Path) -> None:
    refused(tmp_path, HEAD + "scenarios: &s [{name: smoke}, *s]\n", "(line 3, column 12)", "loop")


# --- 8. merge keys and duplicates -----------------------------------------------------


def test_merge_keys_are_flattened_explicit_keys_win(tmp_path: Path) -> None:
    plan = load(
        tmp_path,
        HEAD
        + "scenarios:\n"
        + "  - &base {name: smoke, params: {size: 128, keepalive: false}}\n"
        + "  - <<: *base\n"
        + "    params: {size: 256}\n"
        + "  - {<<: [*base], versions: [debian:bookworm]}\n",
    )
    assert [c.params["size"] for c in plan.cells] == [128, 256, 128]
    assert [c.params["keepalive"] for c in plan.cells] == [False, True, False]


def test_duplicate_keys_beside_merge_keys_are_still_refused(tmp_path: Path) -> None:
    text = HEAD + "scenarios:\n  - &b {name: smoke}\n  - <<: *b\n    name: smoke\n    name: x\n"
    refused(tmp_path, text, "(line 7, column 5)", "'name' is given twice", "first on line 6")


# --- clipped messages -----------------------------------------------------------------


def test_a_syntax_error_on_a_megabyte_line_is_clipped(tmp_path: Path) -> None:
    text = HEAD + "scenarios: [{name: smoke}]\nx: [" + "a, " * 300_000 + "]]\n"
    message = refused(tmp_path, text, "(line 4, column", "not valid YAML")
    assert max(len(line) for line in message.splitlines()) < 300


# --- 7. run.json ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "what"),
    [
        ([1, 2], "it holds a list, not a mapping; got [1, 2]"),
        (None, "it holds a NoneType, not a mapping"),
        ({}, "its matrix: Field required"),
        ({"matrix": "x"}, "its matrix: Input should be a valid dictionary"),
        ({"matrix": {}, "matrix_file": ["a"]}, "its matrix_file: Input should be a valid string"),
    ],
)
def test_recorded_refuses_run_json_of_the_wrong_shape(data: object, what: str) -> None:
    path = Path("/r/run.json")
    with pytest.raises(SpecError) as err:
        spec.recorded(data, path)
    assert str(err.value).startswith(f"{path}: not the run.json the harness writes ({what}")


def test_recorded_reads_the_matrix_and_its_file() -> None:
    matrix = {"name": "t"}
    assert spec.recorded({"matrix": matrix, "x": 1}, Path("r")) == (matrix, None)
    assert spec.recorded({"matrix": matrix, "matrix_file": "m.yaml"}, Path("r"))[1] == Path(
        "m.yaml"
    )


@pytest.mark.parametrize(
    ("text", "why"), [("[" * 20000, "nested too deep"), ("9" * 5000, "Exceeds the limit")]
)
def test_read_json_beyond_pythons_limits(tmp_path: Path, text: str, why: str) -> None:
    path = tmp_path / "run.json"
    path.write_text(text)
    with pytest.raises(HarnessError, match=f"not JSON the harness wrote \\({why}"):
        results.read_json(path)


def test_expand_names_the_given_place() -> None:
    raw = json.loads('{"name": "t", "versions": ["debian:bookworm"], "scenarios": "x"}')
    with pytest.raises(SpecError, match=r"^r/run.json \(its matrix:\): the matrix is not valid"):
        spec.expand(raw, "run1", Path("m.yaml"), where="r/run.json (its matrix:)")


# --- 9. image references --------------------------------------------------------------


@pytest.mark.parametrize(
    "ref",
    [
        "haproxy",
        "haproxy:2.6.15",
        "haproxy:2.6.15-bookworm",
        "library/haproxy:lts",
        "docker.io/library/haproxy:3.0",
        "registry.example.com:5000/team/sub_team/ha-proxy__x.y:v1_2.3-rc1",
        "Registry.Example.com/haproxy",
        "localhost:5000/haproxy@sha256:" + "0" * 64,
        "haproxy:2.6@sha256:" + "a" * 64,
        "[::1]:5000/haproxy:2.6",
        "harness-bad-input.invalid/haproxy:2.6.15",
        "x:" + "t" * 128,
    ],
)
def test_valid_image_references(ref: str) -> None:
    assert versions.parse(f"image:{ref}").value == ref


@pytest.mark.parametrize(
    "ref",
    [
        "HAProxy:2.6.15",
        "--help",
        "-q",
        "haproxy :2.6",
        "haproxy:2.6\n",
        "haproxy:2.6\n--help",
        "haproxy:-x",
        "haproxy:.x",
        "haproxy:" + "t" * 129,
        "haproxy@sha256:abc",
        "haproxy@md5:" + "0" * 32,
        "team//haproxy",
        "haproxy/",
        "-registry.example.com/haproxy",
        "a" * 256,
        "haproxy:2.6.15;rm -rf /",
    ],
)
def test_invalid_image_references(ref: str) -> None:
    with pytest.raises(SpecError) as err:
        versions.parse(f"image:{ref}", "versions[0]")
    message = str(err.value)
    assert message.startswith(f"versions[0]: {quote.shown(ref)} is not an image reference Docker")
    assert "E.g. image:haproxy:2.6.15" in message


def test_a_huge_spec_is_quoted_short() -> None:
    with pytest.raises(SpecError) as err:
        versions.parse("x" * 1_000_000)
    assert len(str(err.value)) < 400


# --- shown ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (10**5000, "<a number of about 5,001 digits>"),
        (-(10**70), "<a number of about 71 digits>"),
        (12345, "12345"),
        (True, "True"),
        ([1, 2], "[1, 2]"),
    ],
    ids=["5001-digits", "71-digits", "small", "bool", "list"],  # pytest's own ids print ints
)
def test_shown(value: object, expected: str) -> None:
    assert quote.shown(value) == expected


@pytest.mark.parametrize(
    "value",
    ["x" * 10**6, [10**5000] * 10**5, {"k": [[[[[["deep"]]]]]]}, list(range(10**5))],
    ids=["long-string", "huge-ints", "deep", "long-list"],
)
def test_shown_is_short_whatever_it_is_given(value: object) -> None:
    assert len(quote.shown(value)) <= 60
