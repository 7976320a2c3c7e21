"""The thesis's figures for one subgroup of runs (same experiment, several strategies).

Nine panels of the main metrics against epochs, wall-clock time and training cost, and the
batch-accumulation panels (Appendix Fig. 6). Each strategy label has one colour for the
whole report; seeds are drawn as the mean line with a min–max band; runs that did not
complete are drawn alone, dotted, and never enter a mean. Uses matplotlib's object API on
the Agg canvas, so no global pyplot state and no display are needed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Optional, Sequence

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.collections import PolyCollection
from matplotlib.ticker import FormatStrFormatter, LogLocator, MaxNLocator, NullLocator, ScalarFormatter

from assist.report.keys import ARCHETYPE, label_order

# Archetype in near-black as the reference line; strategies from tab10 (its grey skipped).
_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
            "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5")
ARCHETYPE_COLOUR = "#222222"

ACC, LOSS, RATIO = "accuracy (fraction correct)", "cross-entropy loss (nats)", "test ÷ train"
# (panel title, y label, columns drawn: solid, then dashed)
PANELS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("Train accuracy", ACC, ("train_accuracy",)),
    ("Test accuracy", ACC, ("test_accuracy",)),
    ("Accuracy ratio (test ÷ train)", RATIO, ("ratio_accuracy",)),
    ("Train mean loss", LOSS, ("train_loss_mean",)),
    ("Test mean loss", LOSS, ("test_loss_mean",)),
    ("Mean loss ratio (test ÷ train)", RATIO, ("ratio_loss_mean",)),
    ("Train q=0.9 loss", LOSS, ("train_loss_q90",)),
    ("Test q=0.9 loss", LOSS, ("test_loss_q90",)),
    ("Worst loss (train solid, test dashed)", LOSS, ("train_loss_worst", "test_loss_worst")),
)
ACCUMULATION_PANELS = (
    ("Raw batches per optimizer step", "raw batches per step", ("raw_batches_per_step",)),
    ("Accepted samples discarded as overflow", "samples per epoch", ("overflow_discarded",)),
    ("Acceptance ratio", "accepted ÷ scored (fraction)", ("acceptance_ratio",)),
)
ACCUMULATION_COLUMNS = tuple(c for _, _, cols in ACCUMULATION_PANELS for c in cols)
X_AXES = ("epoch", "time", "cost")
PLOTTED_COLUMNS = tuple(dict.fromkeys(
    [c for _, _, cols in PANELS + ACCUMULATION_PANELS for c in cols] + ["wall_clock_s", "training_cost"]))
CAPTION = ("Lines: mean over the completed seeds of each strategy; shaded band: min–max over "
           "those seeds; dotted: a single run that did not complete (its status in the legend).")


def colour_map(labels: Iterable[str]) -> dict[str, str]:
    """One fixed colour per strategy label for the whole report (archetype always near-black)."""
    colours, others = {}, [l for l in label_order(labels) if l != ARCHETYPE]
    if ARCHETYPE in set(labels) or not others:
        colours[ARCHETYPE] = ARCHETYPE_COLOUR
    cmap = matplotlib.colormaps["hsv"]
    for i, label in enumerate(others):
        colours[label] = _PALETTE[i] if i < len(_PALETTE) else matplotlib.colors.to_hex(
            cmap((i - len(_PALETTE)) * 0.618 % 1.0))
    return colours


def add_derived(epochs: pd.DataFrame) -> pd.DataFrame:
    """Per-epoch test÷train ratios and training cost (samples scored + trained)."""
    out = epochs.copy()
    for metric in ("accuracy", "loss_mean"):
        train = pd.to_numeric(out.get(f"train_{metric}"), errors="coerce")
        test = pd.to_numeric(out.get(f"test_{metric}"), errors="coerce")
        if train is not None and test is not None:
            out[f"ratio_{metric}"] = (test / train.where(train != 0)).replace([np.inf, -np.inf], np.nan)
    scored = pd.to_numeric(out.get("cum_samples_scored"), errors="coerce")
    trained = pd.to_numeric(out.get("cum_samples_trained"), errors="coerce")
    if scored is not None and trained is not None:
        out["training_cost"] = scored.fillna(0) + trained
    return out


@dataclass
class Line:
    """What one legend entry draws: a label's completed seeds, or one unfinished run."""

    label: str
    frames: list[pd.DataFrame]
    completed: bool
    status: str = "completed"
    _stats: Optional[pd.DataFrame] = field(default=None, repr=False)

    @property
    def stats(self) -> pd.DataFrame:
        """Per epoch: mean, min and max over the frames of every plotted column (once)."""
        if self._stats is None:
            wanted = ["epoch", *(c for c in PLOTTED_COLUMNS if any(c in f for f in self.frames))]
            both = pd.concat([f.reindex(columns=wanted) for f in self.frames], ignore_index=True)
            both = both.apply(pd.to_numeric, errors="coerce").replace([np.inf, -np.inf], np.nan)
            self._stats = both.groupby("epoch").agg(["mean", "min", "max"])
        return self._stats

    @property
    def name(self) -> str:
        return self.label if self.completed else f"{self.label} [{self.status}]"


@dataclass
class FigureFiles:
    kind: str  # "epoch", "time", "cost" or "accumulation"
    title: str
    files: dict[str, Path] = field(default_factory=dict)  # format -> path


def _x_axis(kind: str, lines: Sequence[Line]) -> tuple[str, float, str]:
    """Which column to use as x, the divisor to apply and the axis label with its unit."""
    if kind in ("epoch", "accumulation"):
        return "epoch", 1.0, "epoch"
    column = "wall_clock_s" if kind == "time" else "training_cost"
    tops = [l.stats[(column, "max")].max() for l in lines if (column, "max") in l.stats]
    top = max((t for t in tops if not pd.isna(t)), default=0.0)
    if kind == "time":
        scale, unit = (3600.0, "h") if top > 3 * 3600 else (60.0, "min") if top > 180 else (1.0, "s")
        return column, scale, f"wall-clock time ({unit}, training + evaluation)"
    scale, unit = (1e6, "millions of") if top > 1e6 else (1e3, "thousands of") if top > 1e3 else (1.0, "")
    return column, scale, f"training cost ({unit} samples scored + trained)".replace("( ", "(")


def _draw(ax, lines: Sequence[Line], colours: Mapping[str, str], x: str, scale: float,
          columns: Sequence[str]) -> bool:
    drew = False
    for line in lines:
        stats = line.stats
        if x != "epoch" and (x, "mean") not in stats:
            continue
        xs = stats.index.to_numpy(float) if x == "epoch" else stats[(x, "mean")].to_numpy(float) / scale
        colour = colours.get(line.label, "#777777")
        for column, style in zip(columns, ("-", "--")):
            if (column, "mean") not in stats:
                continue
            ys = stats[(column, "mean")].to_numpy(float)
            keep = np.isfinite(ys) & np.isfinite(xs)
            if not keep.any():
                continue
            if line.completed:
                ax.plot(xs[keep], ys[keep], style, color=colour, lw=1.6)
                if len(line.frames) > 1:
                    lo, hi = stats[(column, "min")].to_numpy(float), stats[(column, "max")].to_numpy(float)
                    band = np.concatenate([np.column_stack([xs, lo])[keep], np.column_stack([xs, hi])[keep][::-1]])
                    band = band[np.isfinite(band).all(axis=1)]
                    # A bare polygon: fill_between's masking machinery costs ~10x more.
                    ax.add_collection(PolyCollection([band], facecolors=colour, alpha=0.18, lw=0))
            else:
                ax.plot(xs[keep], ys[keep], ":", color=colour, lw=1.3, marker=".", ms=3)
            drew = True
    return drew


def _legend_entries(lines: Sequence[Line], colours: Mapping[str, str]) -> list[tuple[str, str]]:
    entries: dict[str, str] = {}
    for line in lines:
        count = f" (n={len(line.frames)})" if line.completed else ""
        entry = ("━━ " if line.completed else "┅┅ ") + line.name + count
        entries.setdefault(entry, colours.get(line.label, "#777777"))
    return list(entries.items())


def _place_legend(fig: Figure, entries: list[tuple[str, str]], height: float) -> None:
    """Coloured texts in rows of three under the panels: ``━━`` a mean over seeds, ``┅┅`` a
    single unfinished run. Plain texts, because matplotlib's Legend layout costs as much as
    a whole panel on every save."""
    for text in [t for t in fig.texts if t.get_gid() == "legend"]:
        text.remove()
    for i, (entry, colour) in enumerate(entries):
        row, col = divmod(i, 3)
        fig.text(0.06 + col * 0.31, (0.12 + 0.22 * (_rows(len(entries)) - 1 - row)) / height,
                 entry, color=colour, fontsize=8, va="bottom", gid="legend")


def _rows(count: int) -> int:
    return -(-count // 3)


# One reusable figure per panel layout and process: creating axes and their tick objects
# costs more than drawing them, and a report draws hundreds of identical layouts.
_PLAIN = FormatStrFormatter("%g")
# One font family (not a fallback list, which is searched on every text draw); SVG text kept
# as text, and a fixed hash salt so that the same runs give the same SVG bytes.
_RC = {"font.family": ["DejaVu Sans"], "svg.fonttype": "none", "svg.hashsalt": "assist"}
_TEMPLATES: dict[tuple[str, ...], tuple[Figure, list]] = {}


def _template(panels) -> tuple[Figure, list]:
    key = tuple(title for title, _, _ in panels)
    if key not in _TEMPLATES:
        nrows = -(-len(panels) // 3)
        fig = Figure(figsize=(12, 2.7 * nrows + 1.2), dpi=72)
        FigureCanvasAgg(fig)
        axes = list(fig.subplots(nrows, 3, squeeze=False).flat)
        for ax, (title, ylabel, _) in zip(axes, panels):
            # Fixed title and label positions skip matplotlib's costly automatic placement.
            ax.set_title(title, fontsize=10, y=1.0, pad=4)
            ax.set_ylabel(ylabel, fontsize=8)
            ax.yaxis.set_label_coords(-0.16, 0.5)
            ax.xaxis.set_label_coords(0.5, -0.13)
            ax.tick_params(labelsize=7)
        for ax in axes[len(panels):]:
            ax.set_visible(False)
        _TEMPLATES[key] = (fig, axes[: len(panels)])
    return _TEMPLATES[key]


def _reset(ax) -> None:
    for artist in [*ax.lines, *ax.collections, *ax.texts]:
        artist.remove()
    ax.set_yscale("linear")
    ax.xaxis.set_major_locator(MaxNLocator(6))
    ax.yaxis.set_major_locator(MaxNLocator(6))
    ax.yaxis.set_major_formatter(ScalarFormatter())
    ax.grid(True, alpha=0.3, lw=0.5)  # grid lines stand in for tick marks (not drawn: cost)
    ax.tick_params(bottom=False, left=False)


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
        drew = _draw(ax, lines, colours, x, scale, columns)
        drew_any |= drew
        bottom = i >= len(panels) - 3  # x tick labels and x label on the bottom row only
        ax.set_xlabel(xlabel if bottom else "", fontsize=8)
        ax.tick_params(labelbottom=bottom)
        if drew and ylabel == LOSS:
            low = min((l.get_ydata().min() for l in ax.get_lines()), default=0)
            if low > 0:
                ax.set_yscale("log")  # losses span orders of magnitude over training
                ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0), numticks=8))
                ax.yaxis.set_minor_locator(NullLocator())  # minor ticks cost more than they tell
                ax.yaxis.set_major_formatter(_PLAIN)  # mathtext 10^k labels are slow to lay out
        if drew:
            ax.relim()
            ax.autoscale_view()
        else:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="#888")
    if not drew_any:
        return None
    entries = _legend_entries(lines, colours)
    legend_in = 0.22 * _rows(len(entries)) + 0.15
    height = 2.6 * _rows(len(panels)) + 1.1 + legend_in
    fig.set_size_inches(12, height)
    _place_legend(fig, entries, height)
    fig.suptitle(title, fontsize=11)
    fig.subplots_adjust(left=0.07, right=0.99, top=1 - 0.8 / height,
                        bottom=(legend_in + 0.5) / height, hspace=0.3, wspace=0.24)
    result = FigureFiles(kind, title)
    if stem is not None:
        for fmt in formats:
            path = stem.with_name(f"{stem.name}_{kind}.{fmt}")
            fig.savefig(path, format=fmt, dpi=90, metadata={"Date": None} if fmt == "svg" else None)
            result.files[fmt] = path
    return result


def subgroup_lines(epochs_by_run: Mapping[str, pd.DataFrame], runs: pd.DataFrame) -> list[Line]:
    """The lines of one subgroup: per label its completed runs, then each unfinished run."""
    lines = []
    for label in label_order(runs["label"]):
        members = runs[runs["label"] == label]
        done = [epochs_by_run[r] for r in members.index[members["status"] == "completed"]
                if r in epochs_by_run]
        if done:
            lines.append(Line(label, done, True))
        for run in members.index[members["status"] != "completed"]:
            if run in epochs_by_run:
                lines.append(Line(label, [epochs_by_run[run]], False, members.at[run, "status"]))
    return lines


def has_accumulation(lines: list[Line]) -> bool:
    return any(c in f and f[c].notna().any() for l in lines for f in l.frames for c in ACCUMULATION_COLUMNS)
