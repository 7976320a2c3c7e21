"""Groups of runs that differ only in strategy, and each strategic run's archetype twin.

Default grouping: runs whose configs agree on every key except the strategy keys, the seed
and run-local keys (paths, checkpoint cadence) form one group, i.e. one thesis table.
``group_by`` instead names the keys that define a group (e.g. ``dataset``); the other keys
that vary inside such a group become leading row columns (like the thesis's Model column),
so a table can hold several sub-experiments, each still split by strategy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

from assist.config import config_default
from assist.report.keys import ARCHETYPE, SEED_KEY, canonical, identity_keys, strategy_name
from assist.report.loading import ReportError, RunSet


@dataclass
class Subgroup:
    """Runs that agree on every identity key: only strategy and seed differ."""

    values: dict[str, Any]  # values of the group's row keys (empty by default)
    runs: list[str]


@dataclass
class Group:
    gid: str
    keys: dict[str, Any]  # the keys shared by all runs of the group, with their values
    row_keys: list[str]  # other identity keys that vary inside the group
    subgroups: list[Subgroup]
    title: str

    @property
    def runs(self) -> list[str]:
        return [r for sub in self.subgroups for r in sub.runs]


def _sort_key(values: Sequence[Any]) -> tuple:
    # None sorts first; numbers numerically; everything else as text.
    return tuple((0, 0, "") if v is None else (1, v, "") if isinstance(v, (int, float))
                 else (2, 0, str(v)) for v in values)


HEADLINE_KEYS = ("dataset", "model")  # named first in a group's title, and shown even at their defaults


def _at_default(key: str, value: Any) -> bool:
    """Whether a group key's value says nothing a reader needs in a title: unset (None) or the
    config's default (a key this version does not know is always shown)."""
    if value is None:
        return True
    try:
        default = config_default(key)
    except KeyError:
        return False
    return canonical(value) == canonical(default)


def group_title(keys: dict[str, Any], distinguishing: Sequence[str]) -> str:
    """A group's label: the keys whose values tell the groups apart, dataset and model first,
    without those left unset or at their defaults (the group's configuration lists every key);
    ``dataset, model`` when nothing else is left."""
    order = [k for k in HEADLINE_KEYS if k in distinguishing] + [k for k in distinguishing if k not in HEADLINE_KEYS]
    shown = [k for k in order if k in keys and (k in HEADLINE_KEYS or not _at_default(k, keys[k]))]
    if not shown:
        shown = [k for k in HEADLINE_KEYS if k in keys and keys[k] is not None]
    return ", ".join(f"{k}={keys[k]}" for k in shown) or "all runs"


def parse_group_by(text: Optional[str | Sequence[str]], runset: RunSet) -> Optional[list[str]]:
    """``"model,batch_size"`` -> ["model", "batch_size"], each checked against the configs."""
    if text is None:
        return None
    keys = [k.strip() for k in (text.split(",") if isinstance(text, str) else text) if k.strip()]
    if not keys:
        return None
    unknown = [k for k in keys if k not in runset.config_keys]
    if unknown:
        raise ReportError(f"--group-by key {unknown[0]!r} is not a config key of these runs; "
                          f"valid keys: {', '.join(runset.config_keys)}", exit_code=2)
    return keys


def group_runs(runset: RunSet, group_by: Optional[Sequence[str]] = None) -> list[Group]:
    """Split the runs into groups (tables) and subgroups (one figure set each)."""
    configs = runset.configs
    ident = identity_keys(runset.config_keys, with_seed=False)
    group_keys = list(group_by) if group_by else ident
    buckets: dict[tuple, list[str]] = {}
    for run in runset.runs.index:
        key = tuple(canonical(configs[run].get(k)) for k in group_keys)
        buckets.setdefault(key, []).append(run)
    ordered = sorted(buckets, key=_sort_key)
    distinguishing = [i for i, k in enumerate(group_keys) if len({b[i] for b in ordered}) > 1]
    groups = []
    for number, key in enumerate(ordered, start=1):
        runs = buckets[key]
        rest = [k for k in ident if k not in group_keys]
        row_keys = [k for k in rest if len({canonical(configs[r].get(k)) for r in runs}) > 1]
        subs: dict[tuple, list[str]] = {}
        for run in runs:
            subs.setdefault(tuple(canonical(configs[run].get(k)) for k in row_keys), []).append(run)
        subgroups = [Subgroup(dict(zip(row_keys, values)), sorted(subs[values]))
                     for values in sorted(subs, key=_sort_key)]
        shared = dict(zip(group_keys, key))
        shared.update({k: canonical(configs[runs[0]].get(k)) for k in rest if k not in row_keys})
        title = group_title(dict(zip(group_keys, key)), [group_keys[i] for i in distinguishing])
        groups.append(Group(f"g{number:02d}", shared, row_keys, subgroups, title))
    return groups


def find_twins(runset: RunSet) -> dict[str, Optional[str]]:
    """For each strategic run, its archetype twin: same identity keys and the same seed.

    A completed archetype run is preferred; None when the set holds no such archetype run."""
    ident = identity_keys(runset.config_keys, with_seed=True)
    status = runset.runs["status"]
    archetypes: dict[tuple, list[str]] = {}
    for run, cfg in runset.configs.items():
        if strategy_name(cfg) == ARCHETYPE:
            archetypes.setdefault(tuple(canonical(cfg.get(k)) for k in ident), []).append(run)
    twins: dict[str, Optional[str]] = {}
    for run, cfg in runset.configs.items():
        if strategy_name(cfg) == ARCHETYPE:
            continue
        candidates = archetypes.get(tuple(canonical(cfg.get(k)) for k in ident), [])
        completed = [c for c in candidates if status[c] == "completed"]
        twins[run] = (completed or candidates or [None])[0]
    return twins


def seed_of(runset: RunSet, run: str) -> Any:
    return runset.configs[run].get(SEED_KEY)
