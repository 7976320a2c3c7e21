"""A strategy's random control: uniform random training at the strategy's own budget.

A selection method that trains on a share of the sample-steps the archetype trains should beat
random training at that same share, or its selection bought nothing. Two controls are offered:
``rs2`` (repeated random sampling without replacement, the strongest random baseline in the
time-to-accuracy literature; the default) and ``random_subset`` (a uniformly random share of
every raw batch, ASSIST's first control). docs/peers.md, "Random controls".
"""

from __future__ import annotations

from typing import Any

CONTROLS = ("rs2", "random_subset")
DEFAULT_CONTROL = "rs2"


def budget_fraction(samples_trained: int, num_train: int, epochs: int) -> float:
    """The share of the archetype's sample-steps (``num_train`` per epoch for ``epochs``) that a
    run trained, rounded to 4 places and kept in [0.001, 1]: the control's ``fraction``."""
    if num_train < 1 or epochs < 1:
        raise ValueError(f"budget_fraction: num_train and epochs must be positive, got {num_train} and {epochs}")
    return round(min(1.0, max(1e-3, samples_trained / (num_train * epochs))), 4)


def control_overrides(kind: str, fraction: float) -> dict[str, Any]:
    """The keys that turn a run into its ``kind`` control at ``fraction`` of the sample-steps."""
    if kind not in CONTROLS:
        raise ValueError(f"control must be one of {', '.join(CONTROLS)}, got {kind!r}")
    return {"strategy": kind, "strategy_options": {"fraction": float(fraction)}}


def control_label(kind: str, label: str) -> str:
    """How tables name the ``kind`` control of the strategy labelled ``label``."""
    return f"{kind} @ {label}"
