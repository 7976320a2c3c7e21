"""What the thesis's figures show, for one subgroup of runs (same experiment, several
strategies): the panels, the colours, and the per-epoch curves (drawing is in drawing.py).

Nine panels of the main metrics against epochs, wall-clock time and training cost, the
batch-accumulation panels (Appendix Fig. 6), and, for runs with label noise or imbalanced
classes, who gets trained (noisy and rare-class shares of the trained samples per epoch). Each strategy label has one colour for the
whole report; seeds are drawn as the mean line with a min–max band; runs that did not
complete are drawn alone, dotted, and never enter a mean.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Optional

import matplotlib
import numpy as np
import pandas as pd

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
# Appendix Fig. 6: (a) raw batches each trained batch consumed, across epoch boundaries,
# (b) accepted samples discarded per trained batch, (c) share of forwarded samples trained
ACCUMULATION_PANELS = (
    ("Raw batches per trained batch (mean solid, max dashed)", "raw batches",
     ("raw_batches_per_batch_mean", "raw_batches_per_batch_max")),
    ("Overflow discarded per trained batch", "samples per batch", ("overflow_per_batch",)),
    ("Forwarded samples that were trained", "trained ÷ scored (fraction)", ("trained_share",)),
)
ACCUMULATION_COLUMNS = tuple(c for _, _, cols in ACCUMULATION_PANELS for c in cols)
# Who gets trained (runs with label noise or imbalanced classes): per epoch, the share of the
# trained samples that carry a flipped label and that come from the rarer half of the classes,
# each against the training set's own share (dashed), and the test's balanced accuracy
SHARE = "share of trained samples"
SHARE_PANELS = (
    ("Flipped labels among trained (dashed: data)", SHARE, ("trained_noisy_share", "data_noisy_share")),
    ("Rarer classes among trained (dashed: data)", SHARE, ("trained_rare_share", "data_rare_share")),
    ("Test balanced accuracy", ACC, ("test_balanced_accuracy",)),
)
SHARE_MARKS = ("trained_noisy_share", "trained_rare_share")
X_AXES = ("epoch", "time", "cost")
PLOTTED_COLUMNS = tuple(dict.fromkeys(
    [c for _, _, cols in PANELS + ACCUMULATION_PANELS + SHARE_PANELS for c in cols]
    + ["wall_clock_s", "train_time_s", "training_cost"]))
CAPTION = ("Lines: mean over the completed seeds of each strategy; shaded band: min–max over "
           "those seeds; dotted: a single run that did not complete (its status in the legend).")


def colour_map(labels: Iterable[str]) -> dict[str, str]:
    """One fixed colour per strategy label for the whole report (archetype always near-black)."""
    labels = list(labels)
    colours, others = {}, [l for l in label_order(labels) if l != ARCHETYPE]
    if ARCHETYPE in labels or not others:
        colours[ARCHETYPE] = ARCHETYPE_COLOUR
    cmap = matplotlib.colormaps["hsv"]
    for i, label in enumerate(others):
        colours[label] = _PALETTE[i] if i < len(_PALETTE) else matplotlib.colors.to_hex(
            cmap((i - len(_PALETTE)) * 0.618 % 1.0))
    return colours


def add_derived(epochs: pd.DataFrame) -> pd.DataFrame:
    """Per-epoch test÷train ratios and training cost (samples scored + trained)."""
    out = epochs.copy()
    number = lambda column: pd.to_numeric(out[column], errors="coerce").astype(float)
    for metric in ("accuracy", "loss_mean"):
        if f"train_{metric}" in out and f"test_{metric}" in out:
            train, test = number(f"train_{metric}"), number(f"test_{metric}")
            out[f"ratio_{metric}"] = (test / train.where(train != 0)).replace([np.inf, -np.inf], np.nan)
    if "cum_samples_trained" in out:
        scored = number("cum_samples_scored").fillna(0) if "cum_samples_scored" in out else 0.0
        out["training_cost"] = number("cum_samples_trained") + scored
        # RHO-LOSS's irreducible-loss model is part of the cost (also when it came from a cache)
        aux = [c for c in ("rho_il_samples_trained", "rho_il_samples_scored") if c in out]
        if aux:
            extra = sum(number(c).fillna(0) for c in aux)
            out["training_cost"] += extra.groupby(out["run"]).cumsum() if "run" in out else extra.cumsum()
    # runs recorded before the per-batch statistics existed: their epoch-level stand-ins
    if "raw_batches_per_batch_mean" not in out and "raw_batches_per_step" in out:
        out["raw_batches_per_batch_mean"] = number("raw_batches_per_step")
    if "overflow_per_batch" not in out and {"overflow_discarded", "steps"} <= set(out):
        out["overflow_per_batch"] = number("overflow_discarded") / number("steps").where(number("steps") > 0)
    if "trained_share" not in out and {"samples_trained", "samples_scored"} <= set(out):
        scored = number("samples_scored")
        out["trained_share"] = number("samples_trained") / scored.where(scored > 0)
    return out


@dataclass
class Line:
    """What one legend entry draws: a label's completed seeds, or one unfinished run."""

    label: str
    frames: list[pd.DataFrame]
    completed: bool
    status: str = "completed"
    _arrays: Optional[dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]] = field(default=None, repr=False)

    @property
    def arrays(self) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Per plotted column: (mean, min, max) over the frames, per epoch (computed once);
        ``"epoch"`` maps to the epochs themselves."""
        if self._arrays is None:
            wanted = [c for c in PLOTTED_COLUMNS if any(c in f for f in self.frames)]
            tables = [f.reindex(columns=["epoch", *wanted]).apply(pd.to_numeric, errors="coerce")
                      .to_numpy(float) for f in self.frames]
            epochs = np.unique(np.concatenate([t[:, 0] for t in tables]))
            stack = np.full((len(tables), len(epochs), len(wanted)), np.nan)
            for i, table in enumerate(tables):  # align each run's epochs on the union
                stack[i, np.searchsorted(epochs, table[:, 0])] = table[:, 1:]
            stack[~np.isfinite(stack)] = np.nan
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # epochs missing in every run
                mean, low, high = np.nanmean(stack, 0), np.nanmin(stack, 0), np.nanmax(stack, 0)
            self._arrays = {"epoch": (epochs, epochs, epochs)}
            for j, column in enumerate(wanted):
                self._arrays[column] = (mean[:, j], low[:, j], high[:, j])
        return self._arrays

    @property
    def name(self) -> str:
        return self.label if self.completed else f"{self.label} [{self.status}]"


@dataclass
class FigureFiles:
    kind: str  # "epoch", "time", "cost" or "accumulation"
    title: str
    files: dict[str, Path] = field(default_factory=dict)  # format -> path


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
    """Whether batch accumulation ran: raw batches per step or overflow were logged. (The
    acceptance ratio alone is logged by every strategy, as 1.0 for those that accept all.)"""
    marks = ("raw_batches_per_batch_mean", "raw_batches_per_step", "overflow_discarded")
    return any(c in f and f[c].notna().any() for l in lines for f in l.frames for c in marks)


def has_shares(lines: list[Line]) -> bool:
    """Whether some run logged who it trained (``trained_noisy_share`` or ``trained_rare_share``
    not None: a run with label noise or imbalanced classes)."""
    return any(c in f and f[c].notna().any() for l in lines for f in l.frames for c in SHARE_MARKS)
