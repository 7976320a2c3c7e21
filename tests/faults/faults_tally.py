"""Figures of the fault suite: what was tried and how it ended. Tests count into TALLY; the
root conftest prints it at the end of the session (and writes it to $ASSIST_FAULT_REPORT as
JSON when that is set), and docs/reliability.md records the last run."""

from __future__ import annotations

import json
import os
from collections import Counter

TALLY: Counter = Counter()
PEAKS: dict[str, float] = {}

LINES = [
    ("kills", "kills_identical", "SIGKILLs / bit-identical resumes"),
    ("kills_in_write", None, "kills that landed while a file was being written"),
    ("bad_inputs", "bad_inputs_clean", "bad inputs / clean one-line errors"),
    ("hostile_files", "hostile_escaped", "hostile files / executed or escaped"),
    ("storage_faults", "storage_clean", "disk-full faults / one line, last state kept, resumed"),
]


def count(key: str, n: int = 1) -> None:
    TALLY[key] += n


def peak(key: str, value: float) -> None:
    PEAKS[key] = max(PEAKS.get(key, 0.0), value)


def summary_lines() -> list[str]:
    lines = []
    for tried, ok, label in LINES:
        if TALLY[tried] or (tried == "kills_in_write" and TALLY["kills"]):
            lines.append(f"{label}: {TALLY[tried]}" + (f" / {TALLY[ok]}" if ok else ""))
    lines += [f"{key}: {value:.0f}" for key, value in sorted(PEAKS.items())]
    path = os.environ.get("ASSIST_FAULT_REPORT")
    if path and lines:
        with open(path, "w") as handle:
            json.dump({"tally": dict(TALLY), "peaks": PEAKS}, handle, indent=1)
    return lines
