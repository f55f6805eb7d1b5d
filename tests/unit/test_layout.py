"""The test tree itself: what would stop pytest collecting the suite."""

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_no_two_test_modules_share_a_name() -> None:
    # pytest imports test modules by basename (rootdir conftest, no __init__.py): two
    # tests/*/test_x.py made the whole collection fail with "import file mismatch".
    names = Counter(p.name for p in TESTS.rglob("test_*.py"))
    assert [name for name, n in names.items() if n > 1] == []
