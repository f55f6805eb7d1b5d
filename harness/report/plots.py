"""The plots of report.html: matplotlib figures as inline SVG, nothing else.

Inline SVG, so the page opens offline from a CI artefact or a mail attachment; no
scripts, no fonts, nothing fetched. Labels drawn from a run's strings (parameters, cell
ids, flags) are matplotlib text, escaped by its SVG writer. The page around the figures
is harness.report.render's template.
"""

from __future__ import annotations

import hashlib
import html
import io
import json
import math
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from harness.analyse import compare
from harness.analyse.record import CellRecord
from harness.plan.spec import params_text
from harness.report import cache, workers
from harness.report import tables as report

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

Record = CellRecord

# Where each plot matters (DESIGN.md, "Scenarios the field notes ask for").
CENSUS_SIDES = ("client", "haproxy", "backend")
CENSUS_STATES = {  # state -> colour; the direction sets the line style
    "TIME-WAIT": "#d62728",
    "CLOSE-WAIT": "#ff7f0e",
    "FIN-WAIT-2": "#9467bd",
    "ESTAB": "#1f77b4",
}
DIRECTION_STYLE = {"in": "-", "out": "--"}

# Points per plotted series: enough for the eye, small enough to keep ~50 cells < 3 MB.
MAX_ECDF_POINTS = 400
MAX_MARKERS = 200  # beyond this, one marker per connection is a smear: draw the line only
MIN_DELAY_MS = 0.01  # log axis: a 0 ms close is drawn at 10 µs

# one per version, run-wide: matplotlib's "tab10" (matplotlib._cm._tab10_data), written
# out so that a report whose figures are all kept never imports matplotlib (0.5-1 s)
VERSION_COLOURS = (
    (0.12156862745098039, 0.4666666666666667, 0.7058823529411765),
    (1.0, 0.4980392156862745, 0.054901960784313725),
    (0.17254901960784313, 0.6274509803921569, 0.17254901960784313),
    (0.8392156862745098, 0.15294117647058825, 0.1568627450980392),
    (0.5803921568627451, 0.403921568627451, 0.7411764705882353),
    (0.5490196078431373, 0.33725490196078434, 0.29411764705882354),
    (0.8901960784313725, 0.4666666666666667, 0.7607843137254902),
    (0.4980392156862745, 0.4980392156862745, 0.4980392156862745),
    (0.7372549019607844, 0.7411764705882353, 0.13333333333333333),
    (0.09019607843137255, 0.7450980392156863, 0.8117647058823529),
)
PARAM_STYLES = (("o", "-"), ("s", "--"), ("^", ":"), ("D", "-."), ("v", (0, (5, 1, 1, 1))))
NORMAL_FLAG_COLOUR = "#9ecae1"  # "----", the normal end: pale, so the others stand out
FLAG_COLOURS = ("#d62728", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf")

RC = {
    "svg.fonttype": "none",  # text as <text>, not glyph outlines: several times smaller
    "text.parse_math": False,  # a "$" in a parameter must stay a "$", not start mathtext
    "font.size": 8,
    "axes.titlesize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.frameon": False,
    "path.simplify": True,
    # matplotlib names ten fallbacks in every <text>; the page's viewer has its own.
    "font.sans-serif": ["DejaVu Sans", "Arial"],
}
# matplotlib's group ids ("figure_1", "axes_1", ...) repeat in every SVG; inline they would
# be duplicate ids in one document. Nothing references them.
_GROUP_ID = re.compile(r' id="[\w.]+_\d+"')
_NOOP_ROTATE = re.compile(r' transform="rotate\(-?0 [-\d.]+ [-\d.]+\)"')
_GEOMETRY = re.compile(r'( (?:d|x|y|width|height|viewBox|transform)=")([^"]*)"')
_DECIMALS = re.compile(r"(\.\d\d)\d+")
_SVG_META = {"Creator": None, "Date": None, "Format": None, "Type": None}


def _mpl() -> ModuleType:
    """matplotlib with its Agg backend (headless: reports are rebuilt on servers and in
    CI), imported when a figure is first drawn, not when the report starts."""
    import matplotlib

    matplotlib.use("Agg")
    return matplotlib


def _new_figure(**kwargs: Any) -> Figure:
    _mpl()
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


# --- SVG -------------------------------------------------------------------------------------


@contextmanager
def _style(key: str) -> Iterator[None]:
    """rcParams for one figure; the salt and id come from `key`, so output is deterministic
    and ids differ between the figures of one page."""
    tag = "plot-" + hashlib.sha256(key.encode()).hexdigest()[:12]
    with _mpl().rc_context({**RC, "svg.hashsalt": tag, "svg.id": tag}):
        yield


def _svg(fig: Figure, tight: bool = True) -> str:
    """The figure as inline SVG; ``tight=False`` for a figure whose margins are set by
    hand (``subplots_adjust``): a tight bounding box draws the figure twice."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata=_SVG_META, bbox_inches="tight" if tight else None)
    text = buf.getvalue()
    # Inline SVG takes no XML prolog or doctype.
    return _compact(_GROUP_ID.sub("", text[text.index("<svg") :]))


def _round_numbers(match: re.Match[str]) -> str:
    return match.group(1) + _DECIMALS.sub(r"\1", match.group(2)) + '"'


def _compact(svg: str) -> str:
    """About half the bytes: coordinates to 0.01 pt, no-op rotations and indentation gone.
    Only attribute values are rounded; text (tick labels, legends) is left as drawn."""
    svg = _NOOP_ROTATE.sub("", svg)
    svg = _GEOMETRY.sub(_round_numbers, svg)
    svg = re.sub(r"\s*\n\s*", " ", svg)
    return re.sub(r">\s+<", "><", svg).strip()


def _figure(svg: str, caption: str) -> str:
    return f"<figure>{svg}<figcaption>{caption}</figcaption></figure>"


# --- labels and colours ----------------------------------------------------------------------


def _ok(rows: list[Record]) -> list[Record]:
    return [r for r in rows if r.ok]


def _params_label(record: Record, keys: list[str]) -> str:
    return params_text(report.param_values(record, keys), keys)


def _cell_label(record: Record, keys: list[str], reps: bool) -> str:
    parts = [record.version.label, _params_label(record, keys)]
    if reps:
        parts.append(f"r{record.repetition}")
    return " ".join(p for p in parts if p)


class Palette:
    """One colour per version and one marker/line style per parameter set, run-wide."""

    def __init__(self, records: list[Record]) -> None:
        labels = list(dict.fromkeys(r.version.label for r in records))
        self.version = {v: VERSION_COLOURS[i % len(VERSION_COLOURS)] for i, v in enumerate(labels)}
        flags = sorted(
            {f for r in records if r.m.haproxy for f in r.m.haproxy.termination_states} - {"----"}
        )
        self.flag = {f: FLAG_COLOURS[i % len(FLAG_COLOURS)] for i, f in enumerate(flags)}
        self.flag["----"] = NORMAL_FLAG_COLOUR


# --- plots -----------------------------------------------------------------------------------


def _read_delays(path: Path) -> tuple[list[float], int]:
    """Close delays in ms, and how many connections had none (still open, errors)."""
    delays: list[float] = []
    missing = 0
    if not path.exists():
        return delays, missing
    for line in path.read_text().splitlines():
        try:
            sample = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a killed client: the others still count
        delay = sample.get("delay_ms") if isinstance(sample, dict) else None
        if isinstance(delay, int | float):
            delays.append(float(delay))
        else:
            missing += 1
    return delays, missing


def _ecdf(values: list[float]) -> tuple[list[float], list[float]]:
    xs = sorted(max(v, MIN_DELAY_MS) for v in values)
    n = len(xs)
    if n > MAX_ECDF_POINTS:  # evenly spaced ranks keep the shape, min and max
        idx = sorted({round(i * (n - 1) / (MAX_ECDF_POINTS - 1)) for i in range(MAX_ECDF_POINTS)})
        return [xs[i] for i in idx], [(i + 1) / n for i in idx]
    return xs, [(i + 1) / n for i in range(n)]


def close_delay_plot(run_dir: Path, name: str, rows: list[Record], palette: Palette) -> str:
    """ECDF of per-connection close delays, one series per version and parameter set."""
    rows = _ok(rows)
    keys = report.varying(rows)
    series: dict[tuple[str, str], tuple[list[float], int]] = {}
    for r in rows:
        delays, missing = _read_delays(run_dir / r.cell / "probe.jsonl")
        key = (r.version.label, _params_label(r, keys))
        pooled, none = series.get(key, ([], 0))
        series[key] = (pooled + delays, none + missing)  # repetitions pooled, as in verdicts
    series = {k: v for k, v in series.items() if v[0]}
    if not series:
        return ""
    styles = {
        p: PARAM_STYLES[i % len(PARAM_STYLES)]
        for i, p in enumerate(dict.fromkeys(p for _, p in series))
    }
    with _style(f"{run_dir.name}/delay/{name}"):
        fig = _new_figure(figsize=(7.5, 3.2))
        ax = fig.subplots()
        for (label, params), (delays, missing) in series.items():
            xs, ys = _ecdf(delays)
            marker, line = styles[params]
            legend = f"{label} {params}".strip() + f" (n={len(delays)}"
            legend += f", {missing} without a close)" if missing else ")"
            ax.plot(
                xs,
                ys,
                drawstyle="steps-post",
                color=palette.version[label],
                ls=line,
                lw=1.2,
                marker=marker if len(xs) <= MAX_MARKERS else None,
                ms=3.5,
                mfc="none",
                label=legend,
            )
        # an injected delay (the calibration target's) is the answer the probe must find
        if any("fin_delay_ms" in r.params for r in rows):
            for ms in sorted({r.params.get("fin_delay_ms") for r in rows} - {None}):
                ax.axvline(max(float(ms), MIN_DELAY_MS), color="#555", lw=0.8, ls=":")
        scale = _duration_axis(ax, [v for d, _ in series.values() for v in d])
        ax.set_ylim(0, 1.02)
        ax.set_xlabel(f"close delay{scale}: client FIN → proxy FIN/RST")
        ax.set_ylabel("fraction of connections ≤ x")
        ax.grid(True, which="major", lw=0.3, color="#ccc")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=7)
        return _figure(
            _svg(fig),
            "Close delay per connection, as an ECDF: each marker is one connection, the "
            "curve's height the share closed by then. A step at the right edge is a "
            "timeout.",
        )


def _duration_axis(ax: Axes, values_ms: list[float]) -> str:
    """x in µs/ms/s, on a log scale when the values span a decade or more (a 0.4 ms close
    next to a 20 s timeout); returns the axis label's suffix."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    positive = [v for v in values_ms if v > 0]
    if not positive or max(positive) / max(min(positive), MIN_DELAY_MS) < 10:
        # A narrow range (2000.2 ms against 2004.3 ms) needs every digit: plain ms.
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        return ", ms"
    ax.set_xscale("log")
    # set_xscale resets the formatters, so they are set after it.
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: compare.format_duration(v)))
    if max(positive) / max(min(positive), MIN_DELAY_MS) < 100:
        # Within two decades, 1-2-5 labels: 0.1 ms and 1 ms alone would say little.
        ax.xaxis.set_minor_formatter(FuncFormatter(_two_five))
        ax.tick_params(axis="x", which="minor", pad=5.1)  # minor ticks are shorter: align
    else:
        ax.xaxis.set_minor_formatter(NullFormatter())
    return " (log scale)"


def _two_five(value: float, _: Any) -> str:
    mantissa = round(value / 10 ** math.floor(math.log10(value)), 6) if value > 0 else 0
    return compare.format_duration(value) if mantissa in (2, 5) else ""


def census_plot(run_dir: Path, record: Record, labels: dict[str, str]) -> str:
    """TCP states over time in each container, one panel per side (a small multiple)."""
    census = record.m.census or {}
    panels: list[tuple[str, dict[str, list[list[float]]]]] = []
    for side in CENSUS_SIDES:
        states = census[side].states if side in census else {}
        lines = {
            key: [[float(t), float(c)] for t, c in entry.timeline]
            for state in CENSUS_STATES
            for direction in DIRECTION_STYLE
            if (key := f"{state}/{direction}") in states
            and (entry := states[key]).timeline
            and any(c for _, c in entry.timeline)
        }
        panels.append((side, lines))
    if not any(lines for _, lines in panels):
        return ""
    with _style(f"{run_dir.name}/census/{record.cell}"):
        fig = _new_figure(figsize=(10, 2.0))
        axes: list[Axes] = list(fig.subplots(1, len(panels), sharex=True))
        seen: dict[str, Any] = {}
        for ax, (side, lines) in zip(axes, panels, strict=True):
            for key, timeline in lines.items():  # at most 200 points: census.downsample
                state, direction = key.split("/")
                (handle,) = ax.plot(
                    [p[0] for p in timeline],
                    [p[1] for p in timeline],
                    drawstyle="steps-post",
                    color=CENSUS_STATES[state],
                    ls=DIRECTION_STYLE[direction],
                    lw=1.1,
                )
                seen.setdefault(key, handle)
            ax.axvline(0, color="#999", lw=0.6, ls=":")  # t=0: the load starts
            ax.set_title(side if lines else f"{side}: none of these states", loc="left")
            ax.set_ylim(bottom=0)
            ax.set_xlabel("s since load start")
        axes[0].set_ylabel("sockets")
        fig.suptitle(labels[record.cell], x=0.01, ha="left", fontsize=9)
        order = [k for s in CENSUS_STATES for d in DIRECTION_STYLE if (k := f"{s}/{d}") in seen]
        fig.legend(
            [seen[k] for k in order],
            order,
            loc="center left",
            bbox_to_anchor=(0.91, 0.5),
            fontsize=7,
        )
        # Margins for the title, the axis labels and the legend, set by hand: the census
        # plots are most of a report's drawing, and a tight box would draw each twice.
        fig.subplots_adjust(wspace=0.25, top=0.78, right=0.9, left=0.06, bottom=0.24)
        return _svg(fig, tight=False)


def flags_plot(
    run_dir: Path, name: str, rows: list[Record], palette: Palette, labels: dict[str, str]
) -> str:
    """Termination-flag counts per cell, as one horizontal stacked bar each."""
    cells = [
        (labels[r.cell], r.m.haproxy.termination_states if r.m.haproxy else {}) for r in _ok(rows)
    ]
    cells = [(label, counts) for label, counts in cells if counts]
    if not cells:
        return ""
    flags = sorted({f for _, counts in cells for f in counts}, key=lambda f: (f != "----", f))
    with _style(f"{run_dir.name}/flags/{name}"):
        fig = _new_figure(figsize=(7.5, 0.9 + 0.32 * len(cells)))
        ax = fig.subplots()
        ys = list(range(len(cells)))[::-1]  # first cell on top, as in the tables
        left = [0.0] * len(cells)
        for flag in flags:
            widths = [float(counts.get(flag, 0)) for _, counts in cells]
            ax.barh(
                ys,
                widths,
                left=left,
                height=0.6,
                color=palette.flag.get(flag, "#333"),
                label="---- (normal)" if flag == "----" else flag,
                edgecolor="white",
                lw=0.5,
            )
            left = [a + b for a, b in zip(left, widths, strict=True)]
        ax.set_yticks(ys, [label for label, _ in cells])
        ax.set_xlabel("log lines (requests) per termination state")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=7, title="flags")
        return _figure(_svg(fig), "Termination states in HAProxy's log, per cell.")


def load_plot(
    run_dir: Path, name: str, rows: list[Record], palette: Palette, labels: dict[str, str]
) -> str:
    """Locust scenarios: req/s, and p50/p99 latency on a log axis, per cell."""
    cells = [r for r in _ok(rows) if r.m.load is not None]
    loads = [r.m.load for r in cells if r.m.load is not None]
    if not cells:
        return ""
    with _style(f"{run_dir.name}/load/{name}"):
        fig = _new_figure(figsize=(9, 0.9 + 0.32 * len(cells)))
        rps_ax, lat_ax = fig.subplots(1, 2, sharey=True)
        ys = list(range(len(cells)))[::-1]
        colours = [palette.version[r.version.label] for r in cells]
        rps_ax.barh(ys, [load.rps or 0 for load in loads], height=0.6, color=colours)
        rps_ax.set_yticks(ys, [labels[r.cell] for r in cells])
        rps_ax.set_xlabel("requests/s")
        for key, marker, what in (("p50_ms", "o", "p50"), ("p99_ms", "|", "p99")):
            points = [
                (y, v) for y, load in zip(ys, loads, strict=True) if (v := getattr(load, key))
            ]
            if points:
                lat_ax.scatter(
                    [v for _, v in points],
                    [y for y, _ in points],
                    marker=marker,
                    s=36,
                    color="#333",
                    label=what,
                    zorder=3,
                )
        for y, load in zip(ys, loads, strict=True):  # the p50-p99 range as a line
            p50, p99 = load.p50_ms, load.p99_ms
            if p50 and p99:
                lat_ax.plot([p50, p99], [y, y], color="#999", lw=1)
        scale = ""
        if lat_ax.collections:
            latencies = [v for load in loads for v in (load.p50_ms, load.p99_ms) if v]
            scale = _duration_axis(lat_ax, latencies)
            lat_ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=7)
        lat_ax.set_xlabel(f"latency{scale}")
        for ax in (rps_ax, lat_ax):
            ax.grid(True, axis="x", lw=0.3, color="#ccc")
        return _figure(
            _svg(fig),
            "Throughput and latency per cell (req/s: Locust's; latency: the client's µs HDR "
            "histogram, or Locust's whole-ms buckets in a run recorded before it).",
        )


def _guarded(what: str, draw: Callable[[], str]) -> str:
    """A plot that cannot be drawn from odd data costs that plot, not the report: the
    tables are the record, and a rebuild after a long matrix must not die on a figure."""
    try:
        return draw()
    except Exception as exc:
        return f'<p class="note">{esc(what)} not drawn: {esc(type(exc).__name__)}: {esc(exc)}</p>'


# Figures already drawn, kept in the run's cache (harness.report.cache: authenticated,
# so a run folder from elsewhere cannot put its own SVG into report.html) under the
# sha256 of all they are drawn from: the run folder's name (the SVG ids' salt), the
# scenario or cell, labels, palette, the records (and the probe files a close-delay plot
# reads), the harness's source and matplotlib's version (cache.code_version). A figure
# is a pure function of those, so a report made again (`harness report` after the run's
# own) reuses it: drawing was 2.5 s of CPU of a default-matrix run's report besides the
# census figures' 6-7 s. A change to any input draws it anew.
FIGURE = "figure"


def _cached(run_dir: Path, inputs: list[str | bytes], draw: Callable[[], str]) -> str:
    """``draw()``, or the SVG it gave for the same ``inputs`` before."""
    entry_key = cache.key([run_dir.name, *inputs])
    kept = cache.read(run_dir, FIGURE, entry_key)
    if kept is not None:
        try:
            return kept.decode()
        except UnicodeDecodeError:
            pass
    svg = draw()
    cache.write(run_dir, FIGURE, entry_key, svg.encode())
    return svg


def _census_cached(run_dir: Path, record: Record, labels: dict[str, str]) -> str:
    """:func:`census_plot`, from the run's cache when its inputs are unchanged."""
    census = [f"{k}={cache.canonical(v)}" for k, v in sorted((record.m.census or {}).items())]
    inputs = ["census", record.cell, labels[record.cell], *census]
    return _cached(run_dir, inputs, lambda: census_plot(run_dir, record, labels))


def _scenario_inputs(
    run_dir: Path,
    kind: str,
    name: str,
    rows: list[Record],
    palette: Palette,
    labels: dict[str, str],
) -> list[str | bytes]:
    """What one of a scenario's figures is drawn from: its rows (records), their labels,
    the run-wide palette and, for close delays, each cell's probe.jsonl."""
    inputs: list[str | bytes] = [kind, name, json.dumps(labels, sort_keys=True)]
    inputs += [json.dumps([palette.version, palette.flag], sort_keys=True)]
    inputs += [cache.canonical(r) for r in rows]
    if kind == "close-delay":
        for r in rows:
            probe = run_dir / r.cell / "probe.jsonl"
            inputs.append(cache.file_digest(probe) if probe.is_file() else b"absent")
    return inputs


def _scenario_cached(
    run_dir: Path,
    kind: str,
    name: str,
    rows: list[Record],
    palette: Palette,
    labels: dict[str, str],
    draw: Callable[[], str],
) -> str:
    """One of a scenario's figures (``kind``), from the run's cache when its inputs are
    unchanged, guarded (:func:`_guarded`: an error is a note, and is not kept)."""

    def cached() -> str:
        inputs = _scenario_inputs(run_dir, kind, name, rows, palette, labels)
        return _cached(run_dir, inputs, draw)

    return _guarded(f"{kind} plot", cached)


def _census_guarded(args: tuple[Path, Record, dict[str, str]]) -> str:
    """:func:`census_plot` of one cell (cached), guarded (module level: it pickles)."""
    run_dir, record, labels = args
    return _guarded(f"TCP states of {record.cell}", lambda: _census_cached(run_dir, record, labels))


def figures(
    run_dir: Path,
    name: str,
    rows: list[Record],
    palette: Palette,
    draw: workers.Map[str] = workers.serial,
) -> list[str]:
    """The SVG figures of one scenario's cells (``<figure>`` elements, in page order):
    what its Shows names (close delays, TCP states), load and flags. A figure that
    cannot be drawn is a note saying why, not a failed report. ``draw`` maps the
    per-cell figures (TCP states: most of a report's drawing time) over worker processes
    (:func:`harness.report.workers.pool`), or draws them here."""
    shows = report.shows(name)
    keys = report.varying(rows)
    reps = any(r.repetition != 1 for r in rows)
    labels = {r.cell: _cell_label(r, keys, reps) for r in rows}
    plots = []
    if "close-delay" in shows.plots:
        plots.append(
            _scenario_cached(run_dir, "close-delay", name, rows, palette, labels,
                             lambda: close_delay_plot(run_dir, name, rows, palette))
        )  # fmt: skip
    if any(r.load.mode != "probe" for r in rows):
        plots.append(
            _scenario_cached(run_dir, "throughput", name, rows, palette, labels,
                             lambda: load_plot(run_dir, name, rows, palette, labels))
        )  # fmt: skip
    plots.append(
        _scenario_cached(run_dir, "flags", name, rows, palette, labels,
                         lambda: flags_plot(run_dir, name, rows, palette, labels))
    )  # fmt: skip
    if "census" in shows.plots:
        timelines = draw(_census_guarded, [(run_dir, r, labels) for r in _ok(rows)])
        if any(timelines):
            plots.append(
                _figure(
                    "".join(timelines),
                    "TCP states per container over time (solid: accepted by it, dashed: opened "
                    "from it; dotted line: load starts). One row per cell.",
                )
            )
    return [p for p in plots if p]
