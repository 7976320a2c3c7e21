"""Which config keys say *what* a run is, and readable labels for strategy variants.

A run is identified by its config. Two runs that differ only in strategy keys (and seed) are
the same experiment under different sampling; the labels here name those variants the same
way in every table and figure of a report.
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Mapping

from assist.strategies import strategy_keys

# The keys that make a run strategic, from the strategies' own schemas (assist.strategies.params).
STRATEGY_KEYS: tuple[str, ...] = strategy_keys()

SEED_KEY = "rng_seed"
ARCHETYPE = "archetype"

# Keys that say where or how a run was stored or executed, not what it computed; two runs
# differing only in these are the same experiment.
RUN_LOCAL_KEYS: frozenset[str] = frozenset({
    "data_dir", "download", "checkpoint_every", "out", "out_dir", "output_dir", "run_dir",
    "run_id", "run_name", "name", "resume", "restart", "log_every", "progress", "trackers",
})

FILTERING_STRATEGIES = ("epochwise", "batchwise", "epoch_batchwise")
_BATCH_FILTERING = ("batchwise", "epoch_batchwise")

# Parameters of the thesis's Appendix II listing, in its column order.
KEY_PARAMETERS = (
    "dataset", "model", "batch_size", "optimizer", "learning_rate", "gamma", "momentum",
    "lr_scheduler", "milestone_every", "epochs", "weight_decay", "data_augmentation",
)


def canonical(value: Any) -> Any:
    """A hashable, comparable stand-in for a config value (lists and dicts as sorted JSON)."""
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, sort_keys=True, default=str)
    return value


def identity_keys(config_keys: Iterable[str], *, with_seed: bool) -> list[str]:
    """Config keys that identify the experiment apart from its strategy."""
    excluded = set(STRATEGY_KEYS) | RUN_LOCAL_KEYS
    if not with_seed:
        excluded.add(SEED_KEY)
    return sorted(k for k in config_keys if k not in excluded)


def strategy_name(config: Mapping[str, Any]) -> str:
    """The resolved strategy; older configs carry only the two filtering flags."""
    name = config.get("strategy")
    if name:
        return str(name)
    flags = (bool(config.get("epoch_filtering")), bool(config.get("batch_filtering")))
    return {(False, False): ARCHETYPE, (True, False): "epochwise",
            (False, True): "batchwise", (True, True): "epoch_batchwise"}[flags]


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, dict):
        return ",".join(f"{k}={_fmt(v)}" for k, v in sorted(value.items())) or "{}"
    return str(value)


def _described_parts(config: Mapping[str, Any], name: str) -> tuple[list[str], set[str]]:
    """The parts of a label that read as prose, and the keys they already describe."""
    parts: list[str] = []
    covered = {"strategy", "epoch_filtering", "batch_filtering"}
    if name in FILTERING_STRATEGIES:
        kind = config.get("filter")
        if kind == "soft":
            parts.append(f"soft α={_fmt(config.get('soft_margin'))}")
        elif kind not in (None, "none"):
            parts.append(str(kind))
        covered |= {"filter", "soft_margin"}
    if name in _BATCH_FILTERING:
        if config.get("batch_accumulation", True):
            size = config.get("accumulation_batch_size") or config.get("batch_size")
            parts.append(f"raw batch {size}" if size is not None else "accumulated")
        else:
            parts.append("unstable batch size")
        covered |= {"batch_accumulation", "accumulation_batch_size"}
    selector = config.get("selector")
    if selector not in (None, "none", "all"):
        param = {"top_k": "select_k", "top_q": "select_q", "loss_weighted": "select_p",
                 "q_split": "select_buckets"}.get(str(selector))
        text = str(selector).replace("_", "-")
        if param is not None and config.get(param) is not None:
            text += f" {param.removeprefix('select_')}={_fmt(config.get(param))}"
        parts.append(text)
        covered |= {"selector", "select_k", "select_q", "select_p", "select_buckets"}
    return parts, covered


def strategy_labels(configs: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """One readable label per run, e.g. ``batchwise (hard, raw batch 64)``.

    Labels are computed over the whole set so that every distinct strategy variant gets a
    distinct label: strategy keys not described in prose are appended as ``key=value`` when
    they vary among runs of the same strategy."""
    names = {run: strategy_name(cfg) for run, cfg in configs.items()}
    varying: dict[str, set[str]] = {}
    for name in set(names.values()):
        members = [configs[r] for r, n in names.items() if n == name]
        varying[name] = {
            key for key in STRATEGY_KEYS
            if len({canonical(m.get(key)) for m in members}) > 1
        }
    labels: dict[str, str] = {}
    variant_of: dict[str, tuple] = {}
    for run, cfg in configs.items():
        name = names[run]
        variant_of[run] = tuple(canonical(cfg.get(k)) for k in STRATEGY_KEYS)
        if name == ARCHETYPE:
            labels[run] = ARCHETYPE
            continue
        parts, covered = _described_parts(cfg, name)
        parts += [f"{k}={_fmt(cfg.get(k))}" for k in sorted(varying[name] - covered)]
        title = name.replace("epoch_batchwise", "epoch+batchwise").replace("_", " ")
        labels[run] = f"{title} ({', '.join(parts)})" if parts else title
    # Safety net: should two variants still share a label, spell out every strategy key.
    seen: dict[str, tuple] = {}
    clashes = set()
    for run, label in labels.items():
        if seen.setdefault(label, variant_of[run]) != variant_of[run]:
            clashes.add(label)
    for run, label in labels.items():
        if label in clashes:
            extra = ", ".join(f"{k}={_fmt(configs[run].get(k))}" for k in STRATEGY_KEYS
                              if k not in ("strategy",) and k in configs[run])
            labels[run] = f"{label} [{extra}]"
    return labels


def label_order(labels: Iterable[str]) -> list[str]:
    """Archetype first, then the others alphabetically: the row and colour order."""
    unique = sorted(set(labels))
    return ([ARCHETYPE] if ARCHETYPE in unique else []) + [l for l in unique if l != ARCHETYPE]
