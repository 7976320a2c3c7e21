"""The thesis's runs as data, and which measured run was made with which thesis settings.

Two files in ``data/`` hold what the thesis published (docs/thesis.md says how they were
read): ``appendix2.json``, every readable row of Appendix II (one record per run: its
settings and its eight final values), and ``thesis_tables.json``, Tables 4.4-4.9 with the
settings their runs used. A measured run *matches* a thesis run when its data set, model,
strategy and training settings are the thesis run's; the number of epochs and the size of the
training set may differ (a reduced-scale reproduction), and the report shows that scale.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping, Optional

DATA = Path(__file__).resolve().parent / "data"
# The keys that make two runs the same experiment, apart from data set, model and strategy.
CLEAN_DATA = {"label_noise": 0.0, "class_imbalance": 1.0, "duplicates": 0.0}
SETTING_KEYS = ("optimizer", "batch_size", "learning_rate", "lr_scheduler", "gamma", "momentum",
                "weight_decay", "milestone_every", "data_augmentation")
THESIS_DATASETS = ("mnist", "cifar10", "cifar100")
# the thesis's flags: (epoch_filtering, batch_filtering) -> strategy
_FLAGS = {(False, False): "archetype", (True, False): "epochwise", (False, True): "batchwise",
          (True, True): "epoch_batchwise"}


@lru_cache(maxsize=1)
def thesis_tables() -> dict[str, Any]:
    return json.loads((DATA / "thesis_tables.json").read_text())


@lru_cache(maxsize=1)
def appendix_records() -> tuple[dict[str, Any], ...]:
    return tuple(json.loads((DATA / "appendix2.json").read_text())["runs"])


def dataset_family(name: Any) -> Optional[str]:
    """The thesis data set a run's ``dataset`` is a copy of: ``mnist``, ``cifar10``, ``cifar100``
    by name, or an image folder named after one (``folder:.../cifar10-jpeg.tar.gz``)."""
    if not isinstance(name, str):
        return None
    if name in THESIS_DATASETS:
        return name
    if name.startswith("folder:"):
        stem = Path(name.removeprefix("folder:")).name.lower()
        for family in ("cifar100", "cifar10", "mnist"):   # cifar100 before its prefix cifar10
            if stem.startswith(family):
                return family
    return None


def strategy_of(values: Mapping[str, Any]) -> Optional[str]:
    """The thesis strategy a config or record names through its two flags (None: unknown)."""
    flags = (values.get("epoch_filtering"), values.get("batch_filtering"))
    if None in flags:
        return None
    strategy = values.get("strategy")
    if strategy is not None and strategy not in _FLAGS.values():
        return None   # a peer method: not a thesis run
    return _FLAGS[(bool(flags[0]), bool(flags[1]))]


def normalised(values: Mapping[str, Any], family: Optional[str]) -> dict[str, Any]:
    """The settings of a config or a record in one form: gamma and milestone only where a
    schedule reads them (gamma resolved to its default), augmentation only for CIFAR (the
    thesis's flag acts on CIFAR alone)."""
    out = {key: values.get(key) for key in SETTING_KEYS}
    scheduler = out["lr_scheduler"]
    if scheduler not in ("exponential", "multistep"):
        out["gamma"] = None
    elif out["gamma"] is None:
        out["gamma"] = 0.995 if scheduler == "exponential" else 0.1
    if scheduler != "multistep":
        out["milestone_every"] = None
    if family == "mnist":
        out["data_augmentation"] = None
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def settings_differ(config: Mapping[str, Any], settings: Mapping[str, Any], family: Optional[str]) -> list[str]:
    """The setting keys on which a run's config departs from a thesis run's settings
    (``settings`` holds a record's or a table's keys; a key it leaves out, or null, is not
    compared). Epochs and the training-set size are never compared: they are the scale."""
    ours = normalised(config, family)
    if family in ("cifar10", "cifar100") and ours["data_augmentation"] is None:
        ours["data_augmentation"] = True   # unset: CIFAR's default recipe, the thesis's, is on
    theirs = normalised({**{k: None for k in SETTING_KEYS}, **settings}, family)
    keys = [k for k in SETTING_KEYS if k in settings or k in ("gamma", "milestone_every")]
    # the thesis trained on clean, balanced data: a data scenario (docs/scenarios.md) is a departure
    scenario = [k for k, clean in CLEAN_DATA.items() if not _same(config.get(k, clean), clean)]
    return scenario + [k for k in keys if theirs[k] is not None and not _same(ours[k], theirs[k])]


def record_matches(config: Mapping[str, Any], record: Mapping[str, Any]) -> bool:
    """Whether a run was made with an Appendix II row's settings (at any scale). A row whose
    data set, model or flags could not be read matches nothing."""
    family = dataset_family(config.get("dataset"))
    if family is None or family != record.get("dataset") or config.get("model") != record.get("model"):
        return False
    wanted = strategy_of(record)
    if wanted is None or strategy_of(config) != wanted:
        return False
    return not settings_differ(config, {k: record.get(k) for k in SETTING_KEYS}, family)


def scale_note(config: Mapping[str, Any], thesis_epochs: Any) -> str:
    """How a run's scale compares with the thesis run's: epochs, and any training subset."""
    parts = [f"{config.get('epochs')}/{thesis_epochs} epochs" if thesis_epochs else f"{config.get('epochs')} epochs"]
    if config.get("samples_per_class") is not None:
        parts.append(f"{config['samples_per_class']} per class")
    if config.get("num_classes") is not None:
        parts.append(f"classes {config['num_classes']}")
    if isinstance(config.get("dataset"), str) and config["dataset"].startswith("folder:"):
        parts.append("image-folder copy")
    return ", ".join(parts)
