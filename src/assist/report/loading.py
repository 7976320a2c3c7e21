"""Read every run directory under a root into pandas: one row per run, one row per epoch.

A report must survive what real sweeps leave behind: runs still writing, crashed runs with a
truncated last line, a corrupt line in the middle, a directory without its config. Bad lines
are skipped and listed (file:line); unreadable runs are listed as skipped; everything
readable is kept.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd
import yaml
from tqdm import tqdm

from assist.config import load_yaml
from assist.strategies.resolve import with_added_defaults
from assist.metrics.collapse import is_collapsed, num_classes_of
from assist.report.keys import canonical, strategy_labels, strategy_name

CONFIG, METRICS, SUMMARY = "config.yaml", "metrics.jsonl", "summary.json"
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_HUGE = 1e300  # the run store writes +-inf as +-1e308 because JSON has no infinity
META_COLUMNS = ("run", "path", "run_id", "label", "status", "reason", "epochs_completed",
                "epochs_planned", "wall_clock_s", "corrupt_lines")


class ReportError(ValueError):
    """The report cannot be built as asked; the message says what and where.
    ``exit_code``: 1 for a problem with the runs, 2 for a bad argument."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class RunSet:
    """All readable runs of a directory.

    ``runs``: one row per run, indexed by ``run`` (path relative to ``root``), with the meta
    columns, the config keys (lists/dicts as JSON text) and ``final_<metric>`` columns.
    ``epochs``: one row per (run, epoch) with every metric logged for that epoch."""

    root: Path
    runs: pd.DataFrame
    epochs: pd.DataFrame
    configs: dict[str, dict[str, Any]]
    config_keys: list[str]
    warnings: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.runs)


class _Skip(Exception):
    """This directory cannot be read as a run; the message is the reason."""


def find_run_dirs(root: Path) -> tuple[list[Path], list[tuple[str, str]]]:
    """Directories holding ``config.yaml`` (not searched further: checkpoints live inside),
    and run-like directories lacking one, which are reported as skipped."""
    found: list[Path] = []
    orphans: list[tuple[str, str]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        if CONFIG in filenames:
            found.append(Path(dirpath))
            dirnames[:] = []
        elif METRICS in filenames or SUMMARY in filenames:
            orphans.append((dirpath, f"has {METRICS} or {SUMMARY} but no {CONFIG}"))
    return found, orphans


def _number(value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float)):
        if value >= _HUGE:
            return math.inf
        if value <= -_HUGE:
            return -math.inf
    return value


def _read_metrics(path: Path, warnings: list[str]) -> list[dict[str, Any]]:
    rows: dict[int, dict[str, Any]] = {}
    if not path.is_file():
        return []
    lines = path.read_text(errors="replace").split("\n")
    last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            what = "truncated last line" if number - 1 == last else "corrupt line"
            warnings.append(f"{path}:{number}: {what} skipped ({error.msg})")
            continue
        if not isinstance(row, dict) or not isinstance(row.get("epoch"), int):
            warnings.append(f"{path}:{number}: line skipped (not an object with an integer 'epoch')")
            continue
        rows[row["epoch"]] = row  # a resumed run rewrites its epochs after the checkpoint
    return [rows[e] for e in sorted(rows)]


def _read_summary(path: Path, warnings: list[str]) -> Optional[dict[str, Any]]:
    if not path.is_file():
        return None
    try:
        summary = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        warnings.append(f"{path}: unreadable summary ignored ({error}); run treated as incomplete")
        return None
    if not isinstance(summary, dict):
        warnings.append(f"{path}: summary is not a JSON object; run treated as incomplete")
        return None
    if not isinstance(summary.get("final", {}), (dict, type(None))):
        warnings.append(f"{path}: summary's \"final\" is not a mapping; final values taken from the metrics")
        summary = {k: v for k, v in summary.items() if k != "final"}
    return summary


def read_run(path: Path, name: str, warnings: list[str]) -> tuple[dict, list[dict], dict]:
    """One run: (row of meta, config and summary's final metrics; epoch rows; config).
    Final metrics missing from the summary are filled in by load_runs. Raises _Skip."""
    try:
        text = (path / CONFIG).read_text()
        # ASSIST writes no anchors: a config with one goes through the strict loader, which
        # refuses an alias bomb (config.py); the others through the fast C loader
        config = load_yaml(text) if "&" in text else yaml.load(text, Loader=_LOADER)
    except (yaml.YAMLError, UnicodeDecodeError, OSError) as error:
        raise _Skip(f"{CONFIG} is unreadable: {str(error).splitlines()[0]}") from None
    if not isinstance(config, dict):
        raise _Skip(f"{CONFIG} does not hold a mapping of keys to values")
    config = with_added_defaults(config)   # runs written before those keys compare like new ones
    before = len(warnings)
    epochs = _read_metrics(path / METRICS, warnings)
    corrupt = len(warnings) - before
    summary = _read_summary(path / SUMMARY, warnings)
    final = {k: _number(v) for k, v in ((summary or {}).get("final") or {}).items()
             if isinstance(v, (int, float)) and not isinstance(v, bool)}
    final = _trusted_finals(final, epochs, summary, path, warnings)
    status = str(summary.get("status") or "unknown") if summary else "incomplete"
    if status == "completed" and is_collapsed([row.get("test_accuracy") for row in epochs],
                                              num_classes_of(config, epochs)):
        status = "collapsed"   # completed, but at chance: never averaged (assist.metrics.collapse)
    last_epoch = epochs[-1]["epoch"] if epochs else 0
    given = summary or {}
    completed = given.get("epochs_completed")
    run_row = {
        "run": name, "path": str(path), "run_id": given.get("run_id") or name,
        "status": status, "reason": given.get("reason"),
        "epochs_completed": int(completed) if isinstance(completed, (int, float)) else last_epoch,
        "epochs_planned": given.get("epochs") or config.get("epochs"),
        "wall_clock_s": given.get("wall_clock_s") or final.get("wall_clock_s")
                        or (epochs[-1].get("wall_clock_s") if epochs else None),
        "corrupt_lines": corrupt,
    }
    for key, value in config.items():
        run_row.setdefault(key, canonical(value))
    run_row["strategy"] = strategy_name(config)
    run_row.update({f"final_{k}": v for k, v in final.items()})
    return run_row, [dict(row, run=name) for row in epochs], config


def _trusted_finals(final: dict[str, float], epochs: list[dict], summary: Optional[dict], path: Path,
                    warnings: list[str]) -> dict[str, float]:
    """The summary's final values, less those that disagree with the last epoch of the metrics
    (which were written line by line as the run went): one warning names them, and the
    metrics' values are used in their place."""
    if not final or not epochs or (summary or {}).get("epochs_completed") != epochs[-1].get("epoch"):
        return final
    last = epochs[-1]
    logged = {k: _number(v) for k, v in last.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    differ = [k for k, v in final.items() if k in logged and not (
        v == logged[k] or math.isclose(v, logged[k], rel_tol=1e-9, abs_tol=1e-12) or (math.isnan(v) and math.isnan(logged[k])))]
    if differ:
        shown = ", ".join(f"{k}: {final[k]:g} vs {logged[k]:g}" for k in differ[:3])
        warnings.append(f"{path}: {SUMMARY}'s final values disagree with {METRICS}'s last epoch ({shown}); "
                        "the metrics are used")
    return {k: v for k, v in final.items() if k not in differ}


def _numeric_epochs(epochs: pd.DataFrame) -> pd.DataFrame:
    """Numbers as floats, and the run store's +-1e308 stand-ins back to +-inf."""
    for column in epochs.columns:
        if column in ("run", "epoch"):
            continue
        values = pd.to_numeric(epochs[column], errors="coerce")
        if values.notna().any() or epochs[column].isna().all():
            huge = values.abs() >= _HUGE
            epochs[column] = values.where(~huge, np.sign(values) * np.inf) if huge.any() else values
    return epochs


def _fill_finals(runs: pd.DataFrame, epochs: pd.DataFrame) -> pd.DataFrame:
    """Final metrics the summary lacks (no summary yet, or null there) from the last epoch
    that logged them: train metrics may be skipped on some epochs."""
    if epochs.empty:
        return runs
    last = epochs.drop(columns=["epoch"]).groupby("run", sort=False).last()
    last = last.select_dtypes("number").add_prefix("final_")
    for column in last.columns:
        fallback = last[column].reindex(runs.index)
        runs[column] = runs[column].fillna(fallback) if column in runs else fallback
    return runs


def load_runs(runs_dir: str | os.PathLike, *, progress: Optional[bool] = None) -> RunSet:
    """Load every run under ``runs_dir`` (searched recursively).

    ``progress``: True/False forces the progress bar; None shows it for 50 runs or more.
    Raises ReportError when the directory is missing or holds no readable run."""
    root = Path(runs_dir)
    if not root.is_dir():
        raise ReportError(f"runs directory {str(root)!r} does not exist or is not a directory")
    dirs, skipped = find_run_dirs(root)
    if not dirs:
        hint = f" ({len(skipped)} director{'y' if len(skipped) == 1 else 'ies'} without {CONFIG})" if skipped else ""
        raise ReportError(f"no runs found in {str(root)!r}{hint}: expected directories "
                          f"holding {CONFIG} and {METRICS} as written by `assist train`")
    warnings: list[str] = []
    rows, epoch_rows, configs = [], [], {}
    disable = (len(dirs) < 50) if progress is None else not progress
    for path in tqdm(dirs, desc="loading runs", unit="run", disable=disable, leave=False):
        name = path.relative_to(root).as_posix() if path != root else path.name
        try:
            row, epochs, config = read_run(path, name, warnings)
        except _Skip as reason:
            skipped.append((str(path), str(reason)))
            continue
        except Exception as error:  # noqa: BLE001 - one malformed run must not take the report down
            skipped.append((str(path), f"unreadable ({type(error).__name__}: {error})"))
            continue
        rows.append(row)
        epoch_rows.extend(epochs)
        configs[name] = config
    if not rows:
        raise ReportError(f"none of the {len(dirs)} run directories in {str(root)!r} could be "
                          f"read; first problem: {skipped[0][0]}: {skipped[0][1]}")
    runs = pd.DataFrame(rows).set_index("run", drop=False)
    labels = strategy_labels(configs)
    runs["label"] = [labels[r] for r in runs.index]
    epochs = _numeric_epochs(pd.DataFrame(epoch_rows, columns=None if epoch_rows else ["run", "epoch"]))
    runs = _fill_finals(runs, epochs)
    keys = sorted({k for cfg in configs.values() for k in cfg})
    return RunSet(root=root, runs=runs, epochs=epochs, configs=configs, config_keys=keys,
                  warnings=warnings, skipped=skipped)
