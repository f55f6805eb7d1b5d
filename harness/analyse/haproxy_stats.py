"""HAProxy's counters as its stats socket prints them (``show info``, ``show stat``),
read from a cell's ``haproxy-info.txt`` and ``haproxy-stat.csv``.

The formats are those of HAProxy's management guide (doc/management.txt): section 9.3
"Unix Socket commands" (``show info``: one "Name: value" per line) and 9.1 "CSV format"
(``show stat``: a CSV whose header line starts with '# ').
"""

from __future__ import annotations

import csv
import io
from typing import Any


def parse_info(text: str) -> dict[str, str]:
    """``show info`` as {name: value}, both stripped strings (lines without ':' skipped)."""
    info = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            info[key.strip()] = value.strip()
    return info


def parse_stat(text: str) -> list[dict[str, Any]]:
    """``show stat`` CSV (header starts with '# '), one dict per proxy/server row."""
    body = text.lstrip("# ")
    rows = []
    for row in csv.DictReader(io.StringIO(body)):
        rows.append({k: v for k, v in row.items() if k and v not in ("", None)})
    return rows
