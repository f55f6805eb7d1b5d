"""haproxy.log is every haproxy start's own log file, joined in start order."""

from harness.runner import _join_haproxy_logs


def test_parts_join_in_numeric_start_order_and_go_away(tmp_path):
    parts = tmp_path / "haproxy-logs"
    parts.mkdir()
    for n in (0, 1, 2, 10):  # 10 sorts before 2 as text; starts are numbered
        (parts / f"{n}.log").write_text(f"line of start {n}\n")
    _join_haproxy_logs(tmp_path)
    assert (tmp_path / "haproxy.log").read_text().splitlines() == [
        "line of start 0", "line of start 1", "line of start 2", "line of start 10",
    ]  # fmt: skip
    assert not parts.exists()
    _join_haproxy_logs(tmp_path)  # again (an interrupted cell): nothing to join, nothing lost
    assert len((tmp_path / "haproxy.log").read_text().splitlines()) == 4
