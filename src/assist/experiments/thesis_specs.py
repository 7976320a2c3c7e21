"""The thesis's experiments as sweep specs, generated from what the thesis published.

Tables 4.4-4.9 (``report/data/thesis_tables.json``: each table's settings and rows) give the
six table experiments; the Appendix II rows (``report/data/appendix2.json``) give the rest of
the appendix, one spec per group of runs, and the whole appendix as one sweep. So every
shipped thesis spec carries the settings its runs were made with (docs/thesis.md, "The
thesis's experiments"); ``tests/test_thesis_specs.py`` checks each spec against its data.

Regenerate the files after a change to the data::

    python -m assist.experiments.thesis_specs
"""

from __future__ import annotations

import math
import tempfile
import textwrap
from pathlib import Path
from typing import Any, Iterable, Optional

import yaml

from assist.experiments.examples import EXAMPLES_DIR
from assist.report.thesis_settings import appendix_records, strategy_of, thesis_tables

# The six table experiments: spec file stem -> (sweep name, table id)
TABLE_SPECS = {
    "thesis_mnist_epochwise": ("thesis-mnist-epochwise", "4.4"),
    "thesis_mnist_fcnets": ("thesis-mnist-fcnets", "4.5"),
    "thesis_cifar10_batch_sizes": ("thesis-cifar10-batch-sizes", "4.6"),
    "thesis_cifar10_fcnets": ("thesis-cifar10-fcnets", "4.7"),
    "thesis_cifar100_batch_sizes": ("thesis-cifar100-batch-sizes", "4.8"),
    "thesis_cifar100_fcnets": ("thesis-cifar100-fcnets", "4.9"),
}
APPENDIX_SPEC = ("thesis_appendix_grid", "thesis-appendix-grid")
FLAGS = {"archetype": (False, False), "epochwise": (True, False), "batchwise": (False, True),
         "epoch_batchwise": (True, True)}
RUN_KEYS = ("dataset", "model", "optimizer", "batch_size", "learning_rate", "lr_scheduler", "gamma",
            "milestone_every", "momentum", "weight_decay", "epochs", "data_augmentation")
TRAIN_SIZE = {"mnist": 60_000, "cifar10": 50_000, "cifar100": 50_000}
TEST_SIZE = 10_000
# fp32 images/s (training, inference) at batch 256 on one H200 (docs/benchmarks.md, "GPU smoke
# test"); the GPU-hour estimates in the headers come from these
GPU_THROUGHPUT = {"dla": (9_980, 37_803), "fcnet100": (315_629, 5_130_487), "fcnet1000": (417_323, 2_812_984),
                  "fcnet3000": (437_422, 1_236_246), "lenet": (177_299, 1_700_361),
                  "resnet18": (20_345, 71_272), "simpledla": (11_019, 41_616)}
SLOW_ON_CPU = {"resnet18", "dla", "simpledla"}   # ~20 images/s on a 2-core CPU


def run_config(settings: dict[str, Any], strategy: str) -> dict[str, Any]:
    """A run's config keys from thesis settings (a record or a table's settings and row)."""
    config = {k: settings[k] for k in RUN_KEYS if settings.get(k) is not None}
    if config.get("lr_scheduler") != "multistep":
        config.pop("milestone_every", None)
    if config.get("lr_scheduler") not in ("exponential", "multistep"):
        config.pop("gamma", None)
    # the thesis augments CIFAR only (4.2.3): MNIST runs leave the flag off whatever was printed
    config["data_augmentation"] = bool(config.get("data_augmentation")) and config["dataset"] != "mnist"
    config["epoch_filtering"], config["batch_filtering"] = FLAGS[strategy]
    return config


def table_runs(table_id: str) -> list[tuple[str, dict[str, Any]]]:
    """A table's runs, labelled: its settings, one run per (row, strategy) it prints."""
    spec = thesis_tables()["tables"][table_id]
    key = spec["match"]
    runs = []
    for value, strategies in spec["rows"].items():
        settings = {**spec["settings"], key: _typed(value)}
        runs += [(f"{'bs' if key == 'batch_size' else ''}{value}-{strategy}", run_config(settings, strategy))
                 for strategy in strategies]
    return runs


def _typed(value: str) -> Any:
    return int(value) if value.isdigit() else value


def placeable(record: dict[str, Any]) -> bool:
    """Whether an appendix row's settings were all read (a row with an unreadable setting or
    flag is left out of the specs, never guessed)."""
    required = ("dataset", "model", "optimizer", "batch_size", "learning_rate", "lr_scheduler", "momentum",
                "weight_decay", "epochs")
    if strategy_of(record) is None or any(record.get(k) is None for k in required):
        return False
    if record["lr_scheduler"] == "multistep" and record.get("milestone_every") is None:
        return False
    if record["dataset"] != "mnist" and record.get("data_augmentation") is None:
        return False
    return record["lr_scheduler"] not in ("exponential", "multistep") or record.get("gamma") is not None


def appendix_runs(group: Optional[str] = None) -> list[tuple[str, dict[str, Any]]]:
    """The placeable appendix rows (of one group), labelled by their row ids."""
    return [(r["id"], run_config(r, strategy_of(r))) for r in appendix_records()
            if placeable(r) and (group is None or r.get("group") == group)]


def spec_from_runs(name: str, description: str, runs: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """A sweep spec planning exactly these runs (and the archetype twin of each strategic one):
    the keys they share in ``base``, one experiment per distinct config, named by its label(s)
    (rows printed twice with the same settings are one run here)."""
    labelled: dict[str, tuple[list[str], dict[str, Any]]] = {}
    for label, config in runs:
        labelled.setdefault(yaml.safe_dump(config, sort_keys=True), ([], config))[0].append(label)
    unique = [config for _, config in labelled.values()]
    keys = sorted({k for r in unique for k in r})
    base = {k: unique[0][k] for k in keys if all(k in r and r[k] == unique[0][k] for r in unique)}
    experiments: dict[str, dict[str, Any]] = {}
    for labels, run in labelled.values():
        rest = {k: v for k, v in run.items() if k not in base}
        experiments["+".join(labels)] = rest or {"epoch_filtering": run["epoch_filtering"],
                                                 "batch_filtering": run["batch_filtering"]}
    slurm_hours = max(1, math.ceil(max(gpu_hours(r) for r in unique) * 1.5))
    return {"name": name, "description": description, "base": base, "experiments": experiments,
            "seeds": [0], "slurm": {"time": f"{slurm_hours:02d}:00:00", "gpus": 1, "cpus": 4, "mem": "16G"}}


def gpu_hours(run: dict[str, Any]) -> float:
    """A lower bound on one run's GPU time: training, the filter's scoring forward and the
    per-epoch evaluation at batch 256's throughput (small batches are slower)."""
    train_ips, infer_ips = GPU_THROUGHPUT[run["model"]]
    n = TRAIN_SIZE[run["dataset"]]
    scoring = n / infer_ips if run["epoch_filtering"] or run["batch_filtering"] else 0.0
    per_epoch = n / train_ips + scoring + (n + TEST_SIZE) / infer_ips
    return run["epochs"] * per_epoch / 3600


def header(name: str, title: str, runs: list[dict[str, Any]], planned: int, left_out: Iterable[str] = ()) -> str:
    """The spec's comment header: what it is, its run count, and how to run it at full and at
    reduced scale."""
    strategic = sum(1 for r in runs if r["epoch_filtering"] or r["batch_filtering"])
    hours = sum(gpu_hours(r) for r in runs)
    models = sorted({r["model"] for r in runs})
    slow = [m for m in models if m in SLOW_ON_CPU]
    reduced = f"assist sweep {name} --set data_dir=DATA --set epochs=3 --set samples_per_class=100"
    lines = [title, "Generated from the thesis's published data by `python -m assist.experiments.thesis_specs`",
             "(do not edit by hand; docs/thesis.md says how Appendix II was read).", "",
             f"Runs: {planned} ({strategic} strategic, with their archetype twins; seed 0 as in the thesis)."]
    if left_out:
        lines += textwrap.wrap(f"Left out, a setting or flag unreadable in the appendix: {', '.join(left_out)}.", 96)
    lines += ["", f"Full scale: about {hours:.1f} GPU-hours in all on one H200-class GPU at batch 256's fp32",
              "throughput (docs/benchmarks.md), more at smaller batches; run it as a Slurm array:",
              f"  assist sweep {name} --set device=cuda --set data_dir=DATA --executor slurm",
              "Reduced scale on a CPU (the thesis's settings, fewer epochs and a training subset; the report",
              "matches such runs to the thesis's rows and shows their scale):", f"  {reduced}"]
    if slow:
        lines += [f"  ({', '.join(slow)} train at ~20 images/s on a 2-core CPU: add --set model=lenet for a smoke",
                  "  test, which the thesis comparison then no longer matches)"]
    return "".join(f"# {line}".rstrip() + "\n" for line in lines)


def _planned(spec: dict[str, Any]) -> int:
    from assist.experiments.plan import expand
    from assist.experiments.spec import load_spec

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "spec.yaml"
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
        return len(expand(load_spec(path)))


def _dump(spec: dict[str, Any]) -> str:
    return yaml.safe_dump(spec, sort_keys=False, default_flow_style=None, width=110)


def _text(name: str, title: str, description: str, runs: list[tuple[str, dict[str, Any]]],
          left_out: Iterable[str] = ()) -> str:
    spec = spec_from_runs(name, description, runs)
    configs = list({yaml.safe_dump(c, sort_keys=True): c for _, c in runs}.values())
    return header(name, title, configs, _planned(spec), left_out) + _dump(spec)


def generated_specs() -> dict[str, str]:
    """File stem -> the text of every generated thesis spec."""
    out = {}
    tables = thesis_tables()["tables"]
    for stem, (name, table_id) in TABLE_SPECS.items():
        title = tables[table_id]["title"]
        out[stem] = _text(name, f"Thesis Table {table_id}: {title}; the settings its runs used.",
                          f"Thesis Table {table_id}: {title}", table_runs(table_id))
    records = appendix_records()
    # the table groups are the six table specs above
    groups = sorted({r["group"] for r in records if placeable(r) and r.get("group")
                     and not r["group"].startswith("table-")})
    for group in groups:
        out[f"thesis_appendix_{group.replace('-', '_')}"] = _text(
            f"thesis-appendix-{group}", f"Thesis Appendix II, the runs of group '{group}' with their settings.",
            f"Thesis Appendix II, group {group}", appendix_runs(group))
    out[APPENDIX_SPEC[0]] = _text(
        APPENDIX_SPEC[1], "Thesis Appendix II: every run the thesis listed whose settings could be read.",
        "Thesis Appendix II: every run whose settings could be read", appendix_runs(),
        [r["id"] for r in records if not placeable(r)])
    return out


def write_specs(directory: Path = EXAMPLES_DIR) -> list[Path]:
    """Write every generated thesis spec; other thesis_*.yaml files there are removed."""
    texts = generated_specs()
    for stale in directory.glob("thesis_*.yaml"):
        if stale.stem not in texts:
            stale.unlink()
    paths = []
    for stem, text in texts.items():
        path = directory / f"{stem}.yaml"
        path.write_text(text)
        paths.append(path)
    return paths


if __name__ == "__main__":
    for written in write_specs():
        print(written)
