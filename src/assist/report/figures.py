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
from matplotlib.lines import Line2D

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


@dataclass
class FigureFiles:
    kind: str  # "epoch", "time", "cost" or "accumulation"
    title: str
    files: dict[str, Path] = field(default_factory=dict)  # format -> path


def _x_column(kind: str, frames: Sequence[pd.DataFrame]) -> tuple[str, float, str]:
    """Which column to use as x, the divisor to apply and the axis label with its unit."""
    if kind == "epoch":
        return "epoch", 1.0, "epoch"
    if kind == "time":
        top = max((f["wall_clock_s"].max() for f in frames if "wall_clock_s" in f), default=0)
        top = 0 if pd.isna(top) else top
        scale, unit = (3600.0, "h") if top > 3 * 3600 else (60.0, "min") if top > 180 else (1.0, "s")
        return "wall_clock_s", scale, f"wall-clock time ({unit}, training + evaluation)"
    top = max((f["training_cost"].max() for f in frames if "training_cost" in f), default=0)
    top = 0 if pd.isna(top) else top
    scale, unit = (1e6, "millions of samples") if top > 1e6 else (1e3, "thousands of samples") if top > 1e3 else (1.0, "samples")
    return "training_cost", scale, f"training cost ({unit} scored + trained)"


def _aggregate(frames: list[pd.DataFrame], x: str, ys: Sequence[str]) -> Optional[pd.DataFrame]:
    cols = [c for c in dict.fromkeys([x, *ys]) if all(c in f for f in frames)]
    if x not in cols:
        return None
    both = pd.concat([f[["epoch", *[c for c in cols if c != "epoch"]]] for f in frames])
    both = both.apply(pd.to_numeric, errors="coerce").replace([np.inf, -np.inf], np.nan)
    return both.groupby("epoch").agg(["mean", "min", "max"])


def _draw(ax, lines: list[Line], colours: Mapping[str, str], x: str, scale: float,
          columns: Sequence[str]) -> bool:
    drew = False
    for line in lines:
        stats = _aggregate(line.frames, x, columns)
        if stats is None:
            continue
        xs = stats[(x, "mean")].to_numpy() / scale if x != "epoch" else stats.index.to_numpy()
        for column, style in zip(columns, ("-", "--")):
            if (column, "mean") not in stats:
                continue
            ys = stats[(column, "mean")].to_numpy(dtype=float)
            keep = np.isfinite(ys) & np.isfinite(xs)
            if not keep.any():
                continue
            colour = colours.get(line.label, "#777777")
            if line.completed:
                ax.plot(xs[keep], ys[keep], style, color=colour, lw=1.6)
                if len(line.frames) > 1:
                    lo, hi = stats[(column, "min")].to_numpy(float), stats[(column, "max")].to_numpy(float)
                    ax.fill_between(xs[keep], lo[keep], hi[keep], color=colour, alpha=0.18, lw=0)
            else:
                ax.plot(xs[keep], ys[keep], ":", color=colour, lw=1.3, marker=".", ms=3)
            drew = True
    return drew


def _legend(fig: Figure, lines: list[Line], colours: Mapping[str, str]) -> None:
    handles, seen = [], set()
    for line in lines:
        name = line.label if line.completed else f"{line.label} [{line.status}]"
        if name in seen:
            continue
        seen.add(name)
        count = f" (n={len(line.frames)})" if line.completed else ""
        handles.append(Line2D([], [], color=colours.get(line.label, "#777777"),
                              ls="-" if line.completed else ":", lw=2, label=name + count))
    fig.legend(handles=handles, loc="lower center", ncol=min(3, max(1, len(handles))),
               fontsize=8, frameon=False)


def render_panels(lines: list[Line], colours: Mapping[str, str], kind: str, title: str,
                  panels=PANELS, stem: Optional[Path] = None,
                  formats: Sequence[str] = ("png", "svg")) -> Optional[FigureFiles]:
    """One figure of ``panels`` against ``kind`` x; None when nothing could be drawn."""
    frames = [f for line in lines for f in line.frames]
    x, scale, xlabel = _x_column("epoch" if kind == "accumulation" else kind, frames)
    ncols = 3
    nrows = -(-len(panels) // ncols)
    fig = Figure(figsize=(12, 3.1 * nrows + 0.9), dpi=80)
    FigureCanvasAgg(fig)
    drew_any = False
    for i, (panel_title, ylabel, columns) in enumerate(panels):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        drew = _draw(ax, lines, colours, x, scale, columns)
        drew_any |= drew
        ax.set_title(panel_title, fontsize=10)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3, lw=0.5)
        if drew and ylabel == LOSS:
            low = min((l.get_ydata().min() for l in ax.get_lines() if len(l.get_ydata())), default=0)
            if low > 0:
                ax.set_yscale("log")  # losses span orders of magnitude over training
        if not drew:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="#888")
    if not drew_any:
        return None
    fig.suptitle(title, fontsize=11)
    _legend(fig, lines, colours)
    legend_rows = -(-len({(l.label, l.completed, l.status) for l in lines}) // 3)
    fig.tight_layout(rect=(0, 0.03 + 0.025 * legend_rows, 1, 0.97))
    result = FigureFiles(kind, title)
    if stem is not None:
        with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "assist"}):
            for fmt in formats:
                path = stem.with_name(f"{stem.name}_{kind}.{fmt}")
                fig.savefig(path, format=fmt, metadata={"Date": None} if fmt == "svg" else None)
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
