"""Drawing the figures: matplotlib's object API on the Agg canvas (no pyplot state, no
display), PNG and SVG.

A report draws hundreds of identical layouts, so this module is built for throughput: one
reusable figure per layout and process, collections instead of one artist per curve, fixed
title and label positions, no minor ticks or mathtext, and a plain-text legend. Each of
these was measured to matter (see bench/report_scale.py).
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Mapping, Optional, Sequence

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection, PolyCollection
from matplotlib.figure import Figure
from matplotlib.ticker import FormatStrFormatter, LogLocator, MaxNLocator, NullLocator, ScalarFormatter
from PIL import Image

from assist.report.figures import LOSS, PANELS, FigureFiles, Line
from assist.files import atomic_open


def _x_axis(kind: str, lines: Sequence[Line]) -> tuple[str, float, str]:
    """Which column to use as x, the divisor to apply and the axis label with its unit."""
    if kind in ("epoch", "accumulation", "shares"):
        return "epoch", 1.0, "epoch"
    column = {"time": "wall_clock_s", "train_time": "train_time_s"}.get(kind, "training_cost")
    tops = [np.nanmax(l.arrays[column][2]) for l in lines
            if column in l.arrays and np.isfinite(l.arrays[column][2]).any()]
    top = max(tops, default=0.0)
    if kind in ("time", "train_time"):
        scale, unit = (3600.0, "h") if top > 3 * 3600 else (60.0, "min") if top > 180 else (1.0, "s")
        what = "training + evaluation" if kind == "time" else "training only"
        return column, scale, f"wall-clock time ({unit}, {what})"
    scale, unit = (1e6, "millions of") if top > 1e6 else (1e3, "thousands of") if top > 1e3 else (1.0, "")
    return column, scale, f"training cost ({unit} samples scored + trained)".replace("( ", "(")


def _draw(ax, lines: Sequence[Line], colours: Mapping[str, str], x: str, scale: float,
          columns: Sequence[str]) -> Optional[float]:
    """Draw ``columns`` of every line on ``ax``; return the smallest value drawn (None when
    nothing was). Means go into one LineCollection per line style and bands into one
    PolyCollection: one artist each instead of one per strategy, which is cheaper to draw."""
    segments: dict[str, tuple[list, list]] = {"-": ([], []), "--": ([], [])}
    bands: tuple[list, list] = ([], [])
    low = np.inf
    for line in lines:
        data = line.arrays
        if x not in data:
            continue
        xs = data[x][0] / scale
        colour = colours.get(line.label, "#777777")
        for column, style in zip(columns, ("-", "--")):
            if column not in data:
                continue
            mean, lo, hi = data[column]
            keep = np.isfinite(mean) & np.isfinite(xs)
            if not keep.any():
                continue
            low = min(low, float(mean[keep].min()))
            if not line.completed:  # alone and dotted, with markers so one epoch still shows
                ax.plot(xs[keep], mean[keep], ":", color=colour, lw=1.3, marker=".", ms=3)
                continue
            segments[style][0].append(np.column_stack([xs[keep], mean[keep]]))
            segments[style][1].append(colour)
            if len(line.frames) > 1:
                band = np.concatenate([np.column_stack([xs, lo])[keep], np.column_stack([xs, hi])[keep][::-1]])
                band = band[np.isfinite(band).all(axis=1)]
                if len(band):
                    low = min(low, float(band[:, 1].min()))
                    bands[0].append(band)
                    bands[1].append(colour)
    if bands[0]:
        ax.add_collection(PolyCollection(bands[0], facecolors=bands[1], alpha=0.18, linewidths=0))
    for style, (segs, cols) in segments.items():
        if segs:
            ax.add_collection(LineCollection(segs, colors=cols, linestyles=style, linewidths=1.6))
    return None if low == np.inf else low


def _legend_entries(lines: Sequence[Line], colours: Mapping[str, str]) -> list[tuple[str, str]]:
    entries: dict[str, str] = {}
    for line in lines:
        count = f" (n={len(line.frames)})" if line.completed else ""
        entry = ("━━ " if line.completed else "┅┅ ") + line.name + count
        entries.setdefault(entry, colours.get(line.label, "#777777"))
    return list(entries.items())


LEGEND_PT = 10      # legend text: about 12 px at the figures' 90 dpi, readable at 100% zoom
LEGEND_ROW_IN = 0.27
# The panel figures fill the HTML report's column on a 1,400 px screen (report/html.py) at
# their natural size: 14.6 in at 90 dpi is 1,314 px.
DPI = 90
FIGURE_WIDTH_IN = 14.6
FIGURE_PX = round(FIGURE_WIDTH_IN * DPI)
# The title wraps into lines of at most this many characters (about 7.6 px each at 11 pt, so a
# line keeps clear of both edges) and each further line adds this much height.
TITLE_CHARS = int(FIGURE_PX * 0.9 / 8)
TITLE_LINE_IN = 0.2


def title_lines(title: str) -> list[str]:
    """A figure title wrapped to fit the figure's width (a long group label never runs off)."""
    return textwrap.wrap(title, TITLE_CHARS) or [""]


def _columns(entries: Sequence[tuple[str, str]]) -> int:
    """Three columns of legend entries, or two when a long label would run into the next."""
    return 3 if max((len(entry) for entry, _ in entries), default=0) <= 44 else 2


def _place_legend(fig: Figure, entries: list[tuple[str, str]], height: float) -> None:
    """Coloured texts in rows under the panels: ``━━`` a mean over seeds, ``┅┅`` a single
    unfinished run. Plain texts, because matplotlib's Legend layout costs as much as a whole
    panel on every save."""
    for text in [t for t in fig.texts if t.get_gid() == "legend"]:
        text.remove()
    columns = _columns(entries)
    rows = _rows(len(entries), columns)
    for i, (entry, colour) in enumerate(entries):
        row, col = divmod(i, columns)
        fig.text(0.06 + col * (0.93 / columns), (0.12 + LEGEND_ROW_IN * (rows - 1 - row)) / height,
                 entry, color=colour, fontsize=LEGEND_PT, va="bottom", gid="legend")


def _rows(count: int, columns: int = 3) -> int:
    return -(-count // columns)


# One reusable figure per panel layout and process: creating axes and their tick objects
# costs more than drawing them, and a report draws hundreds of identical layouts.
_KIND_TITLES = {"epoch": "per epoch", "time": "against wall-clock time",
                "cost": "against training cost", "accumulation": "batch accumulation",
                "shares": "who gets trained"}
# One font family (not a fallback list, which is searched on every text draw); no glyph
# hinting (text is ~60% of a draw; this saves ~15%); SVG text kept as text, and a fixed
# hash salt so that the same runs give the same SVG bytes.
_RC = {"font.family": ["DejaVu Sans"], "text.hinting": "none",
       "svg.fonttype": "none", "svg.hashsalt": "assist"}
_TEMPLATES: dict[tuple[str, ...], tuple[Figure, list]] = {}


def _template(panels) -> tuple[Figure, list]:
    key = tuple(title for title, _, _ in panels)
    if key not in _TEMPLATES:
        nrows = -(-len(panels) // 3)
        fig = Figure(figsize=(FIGURE_WIDTH_IN, 2.7 * nrows + 1.2), dpi=DPI)
        FigureCanvasAgg(fig)
        axes = list(fig.subplots(nrows, 3, squeeze=False).flat)
        for i, (ax, (title, ylabel, _)) in enumerate(zip(axes, panels)):
            # Fixed title and label positions skip matplotlib's costly automatic placement.
            ax.set_title(title, fontsize=10, y=1.0, pad=4)
            ax.set_ylabel(ylabel, fontsize=8)
            ax.yaxis.set_label_coords(-0.16, 0.5)
            ax.xaxis.set_label_coords(0.5, -0.13)
            # Grid lines stand in for tick marks (not drawn: cost); x tick labels and the
            # x label on the bottom row only.
            ax.tick_params(labelsize=7, bottom=False, left=False, labelbottom=i >= len(panels) - 3)
            ax.grid(True, color="#e2e2e2", lw=0.6)
            ax.spines[["top", "right"]].set_visible(False)
            _linear(ax)
        for ax in axes[len(panels):]:
            ax.set_visible(False)
        fig.suptitle("", fontsize=11)  # created first, so every use draws texts in one order
        _TEMPLATES[key] = (fig, axes[: len(panels)])
    return _TEMPLATES[key]


def _linear(ax) -> None:
    ax.set_yscale("linear")
    ax.xaxis.set_major_locator(MaxNLocator(5))  # each tick label is a text to lay out
    ax.yaxis.set_major_locator(MaxNLocator(5))
    ax.yaxis.set_major_formatter(ScalarFormatter())


def _log(ax) -> None:
    ax.set_yscale("log")  # losses span orders of magnitude over training
    ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0), numticks=6))
    ax.yaxis.set_minor_locator(NullLocator())  # minor ticks cost more than they tell
    ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))  # mathtext 10^k: slow to lay out


def _reset(ax) -> None:
    for artist in [*ax.lines, *ax.collections, *ax.texts]:
        artist.remove()


def render_panels(lines: Sequence[Line], colours: Mapping[str, str], kind: str, title: str,
                  panels=PANELS, stem: Optional[Path] = None,
                  formats: Sequence[str] = ("png", "svg")) -> Optional[FigureFiles]:
    """One figure of ``panels`` against ``kind`` x; None when nothing could be drawn."""
    with matplotlib.rc_context(_RC):
        return _render(lines, colours, kind, title, panels, stem, formats)


def _render(lines, colours, kind, title, panels, stem, formats) -> Optional[FigureFiles]:
    x, scale, xlabel = _x_axis(kind, lines)
    fig, axes = _template(panels)
    drew_any = False
    for i, (ax, (_, ylabel, columns)) in enumerate(zip(axes, panels)):
        _reset(ax)
        low = _draw(ax, lines, colours, x, scale, columns)
        drew = low is not None
        drew_any |= drew
        if i >= len(panels) - 3:
            ax.set_xlabel(xlabel, fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(5, integer=x == "epoch"))
        want_log = drew and ylabel == LOSS and low > 0
        if want_log != (ax.get_yscale() == "log"):  # switching scales is not free
            (_log if want_log else _linear)(ax)
        if drew:
            ax.relim()
            ax.autoscale_view()
        else:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="#888")
    if not drew_any:
        return None
    entries = _legend_entries(lines, colours)
    legend_in = LEGEND_ROW_IN * _rows(len(entries), _columns(entries)) + 0.15
    heading = title_lines(f"{title} — {_KIND_TITLES[kind]}")
    title_in = 0.8 + TITLE_LINE_IN * (len(heading) - 1)
    height = 2.6 * _rows(len(panels)) + 0.3 + title_in + legend_in
    fig.set_size_inches(FIGURE_WIDTH_IN, height)
    _place_legend(fig, entries, height)
    fig.suptitle("\n".join(heading))
    fig.subplots_adjust(left=0.06, right=0.99, top=1 - title_in / height,
                        bottom=(legend_in + 0.5) / height, hspace=0.3, wspace=0.2)
    result = FigureFiles(kind, title)
    if stem is not None:
        for fmt in formats:
            path = stem.with_name(f"{stem.name}_{kind}.{fmt}")
            if fmt == "png":
                _save_png(fig, path)
            else:
                with atomic_open(path, durable=False) as handle:
                    fig.savefig(handle, format=fmt, metadata={"Date": None} if fmt == "svg" else None)
            result.files[fmt] = path
    return result


def render_curves(lines: Sequence[Line], colours: Mapping[str, str], title: str, path: Path,
                  column: str = "test_accuracy", kinds: Sequence[str] = ("train_time", "cost"),
                  ylim: Optional[tuple[float, float]] = None, marks: Mapping[str, float] = {}) -> Path:
    """One figure, one panel per x axis in ``kinds``, of ``column`` for every line (the
    panels' mean line and min-max band), saved as PNG at ``path`` (the budget-curve benchmark);
    ``ylim`` zooms in, ``marks`` draws labelled horizontal lines (targets)."""
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(6 * len(kinds), 5.2))
        FigureCanvasAgg(fig)
        axes = fig.subplots(1, len(kinds), squeeze=False)[0]
        for ax, kind in zip(axes, kinds):
            x, scale, xlabel = _x_axis(kind, lines)
            _draw(ax, lines, colours, x, scale, (column,))
            ax.relim()
            ax.autoscale_view()
            if ylim is not None:
                ax.set_ylim(*ylim)
            for i, (name, value) in enumerate(marks.items()):  # labels above, below, above ...
                ax.axhline(value, color="#888888", lw=0.8, ls="--")
                ax.annotate(name, (1.0, value), xycoords=("axes fraction", "data"), ha="right",
                            va="top" if i % 2 else "bottom", fontsize=8, color="#555555")
            ax.set_xlabel(xlabel, fontsize=9)
            ax.set_ylabel(column.replace("_", " "), fontsize=9)
            ax.grid(alpha=0.3)
        entries = _legend_entries(lines, colours)
        height = 5.2
        legend_in = LEGEND_ROW_IN * _rows(len(entries), _columns(entries)) + 0.15
        fig.set_size_inches(6 * len(kinds), height + legend_in)
        _place_legend(fig, entries, height + legend_in)
        fig.suptitle(title, fontsize=11)
        fig.subplots_adjust(left=0.07, right=0.99, top=1 - 0.6 / (height + legend_in),
                            bottom=(legend_in + 0.55) / (height + legend_in), wspace=0.2)
        _save_png(fig, path)
    return path


def _save_png(fig: Figure, path: Path) -> None:
    """Draw on the Agg canvas and store a 256-colour PNG: a third of the RGBA file's size
    (the HTML report embeds hundreds of them) and faster to compress."""
    fig.canvas.draw()
    rgb = Image.fromarray(np.asarray(fig.canvas.buffer_rgba())[..., :3])
    with atomic_open(path, durable=False) as handle:
        rgb.quantize(256, method=Image.Quantize.FASTOCTREE).save(handle, format="PNG")
