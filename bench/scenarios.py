"""Where selection pays: each selection method against its archetype twin and against its RS2
control at its own budget, on noisy, imbalanced and redundant data, with paired verdicts.

    python bench/scenarios.py --data-dir ../shared/data            # trains what is not recorded yet
    python bench/scenarios.py --replot                              # tables and figures from the records

Two settings, sized so that the whole benchmark takes about an hour on two CPU cores:

- ``mnist``: MNIST / LeNet, 300 training images per class drawn by the seed, no augmentation,
  10 epochs, batch 64, SGD lr 0.05 on a per-step cosine schedule to zero;
- ``cifar10``: CIFAR-10 (the JPEG image-folder copy) / LeNet, 300 images per class, the
  ``light`` augmentation, 12 epochs, lr 0.02 on the same schedule.

Both test on a fixed 2,000-image subset of the test split (the same for every run; it keeps
the per-epoch evaluation, which the time-to-target needs, from dominating the benchmark).

Scenarios, one factor at a time (data/scenarios.py): clean; label noise 20 % and 40 %
(symmetric); class imbalance 10 and 100; duplicates 50 %. Strategies: the archetype, batchwise
hard filtering (the thesis), Selective Backprop, importance sampling, InfoBatch, RHO-LOSS (its
holdout drawn from the same noisy training split, as in its paper) and DivBS, each followed by
its RS2 control at the share of sample-steps it trained in the same seed. Three seeds, run
seed-major inside one process per scenario (a load change hits every strategy of a scenario
alike); two scenarios train at a time, one thread each.

Each scenario's runs go to ``bench/results/scenarios/<setting>-<scenario>.json`` as soon as it
finishes, so an interrupted benchmark continues where it stopped. The verdicts (assist.verdicts:
paired by seed, 95 % bootstrap intervals) compare final test accuracy, and training seconds
and sample passes to the target (the archetype twin's final accuracy of the seed − 0.5 points).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

SETTINGS: dict[str, dict[str, Any]] = {
    "mnist": {"dataset": "mnist", "model": "lenet", "epochs": 10, "samples_per_class": 300,
              "data_augmentation": False, "learning_rate": 0.05, "lr_scheduler": "cosine"},
    "cifar10": {"dataset": "folder:{data_dir}/cifar10-jpeg.tar.gz", "model": "lenet", "epochs": 12,
                "samples_per_class": 300, "data_augmentation": True, "augmentation_recipe": "light",
                "learning_rate": 0.02, "lr_scheduler": "cosine"},
}
SCENARIOS: dict[str, dict[str, Any]] = {
    "clean": {},
    "noise20": {"label_noise": 0.2},
    "noise40": {"label_noise": 0.4},
    "imbalance10": {"class_imbalance": 10.0},
    "imbalance100": {"class_imbalance": 100.0},
    "duplicates50": {"duplicates": 0.5},
}
METHODS: dict[str, dict[str, Any]] = {
    "batchwise": {"strategy": "batchwise"},
    "selective_backprop": {"strategy": "selective_backprop"},
    "importance_sampling": {"strategy": "importance_sampling"},
    "infobatch": {"strategy": "infobatch"},
    "rho_loss": {"strategy": "rho_loss", "strategy_options": {"cache": False}},
    "divbs": {"strategy": "divbs"},
}
TEST_SUBSET = 2000
KEEP = ("epoch", "samples_scored", "samples_trained", "cum_samples_scored", "cum_samples_trained", "train_time_s",
        "test_accuracy", "test_balanced_accuracy", "trained_noisy_share", "data_noisy_share", "trained_rare_share",
        "data_rare_share", "trained_duplicate_share", "data_duplicate_share", "rho_il_samples_trained",
        "rho_il_samples_scored", "rho_il_time_s", "rho_il_cached", "acceptance_ratio")


def base_config(setting: str, data_dir: str, epochs: int = 0) -> dict[str, Any]:
    values = dict(SETTINGS[setting])
    values["dataset"] = values["dataset"].format(data_dir=data_dir)
    if epochs:
        values["epochs"] = epochs
    return {**values, "data_dir": data_dir, "batch_size": 64, "num_threads": 1, "train_eval_every": values["epochs"]}


def test_subset(data, size: int):
    """The data set with its test split cut to ``size`` images, the same for every run (a fixed
    draw, stratified by nothing: uniform over the split)."""
    import torch
    from dataclasses import replace

    if data.test_labels.shape[0] <= size:
        return data
    keep = torch.randperm(int(data.test_labels.shape[0]), generator=torch.Generator().manual_seed(12345))[:size]
    keep = keep.sort().values
    return replace(data, test_images=data.test_images[keep], test_labels=data.test_labels[keep])


def train_one(values: dict[str, Any], data) -> dict[str, Any]:
    from assist.api import make_config
    from assist.engine.trainer import Trainer

    config = make_config(values)
    trainer = Trainer(config, data)
    state = trainer.fit()
    flat = config.flat(mode="json")   # what sets the run apart from the scenario's base (recorded once)
    own = {k: flat[k] for k in ("strategy", "strategy_options", "rng_seed")}
    return {"seed": config.rng_seed, "status": state.status, "config": own,
            "num_train": data.num_train, "history": [{k: row.get(k) for k in KEEP} for row in state.history]}


def run_scenario(setting: str, scenario: str, data_dir: str, seeds: int, epochs: int, out: str) -> str:
    """Train one scenario's runs (seed-major) and write them; returns the file written."""
    import torch

    from assist.api import load_data, make_config
    from assist.strategies.controls import budget_fraction, control_overrides

    torch.set_num_threads(1)
    base = {**base_config(setting, data_dir, epochs), **SCENARIOS[scenario]}
    started, load_before = time.time(), os.getloadavg()
    runs: list[dict[str, Any]] = []
    for seed in range(seeds):
        values = {**base, "rng_seed": seed}
        data = test_subset(load_data(make_config(values)), TEST_SUBSET)
        archetype = train_one(values, data)
        runs.append({**archetype, "label": "archetype"})
        for label, overrides in METHODS.items():
            run = train_one({**values, **overrides}, data)
            runs.append({**run, "label": label})
        for label in METHODS:
            run = next(r for r in runs if r["label"] == label and r["seed"] == seed)
            fraction = budget_fraction(run["history"][-1]["cum_samples_trained"], data.num_train, base["epochs"])
            control = train_one({**values, **control_overrides("rs2", fraction)}, data)
            runs.append({**control, "label": f"rs2 @ {label}", "control_of": label, "fraction": fraction})
        print(f"[{setting}/{scenario}] seed {seed} done at {time.time() - started:.0f}s", flush=True)
    record = {"setting": setting, "scenario": scenario, "scenario_keys": SCENARIOS[scenario],
              "command": "python bench/scenarios.py " + " ".join(sys.argv[1:]),
              "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
              "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, "
                         f"torch {torch.__version__}, 1 thread per process, 2 processes",
              "load_average": {"start": load_before, "end": os.getloadavg()}, "elapsed_s": time.time() - started,
              "base": base, "test_subset": TEST_SUBSET, "runs": runs}
    path = Path(out) / f"{setting}-{scenario}.json"
    path.write_text(json.dumps(record, separators=(",", ":")))
    return str(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--settings", nargs="*", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--scenarios", nargs="*", default=list(SCENARIOS), choices=list(SCENARIOS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=0, help="override every setting's epochs (0: the setting's)")
    parser.add_argument("--workers", type=int, default=2, help="scenarios trained at a time (one thread each)")
    parser.add_argument("--out-dir", default="bench/results/scenarios")
    parser.add_argument("--force", action="store_true", help="train again the scenarios already recorded")
    parser.add_argument("--replot", action="store_true", help="only the tables and figures of the records")
    args = parser.parse_args()
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if not args.replot:
        todo = [(s, c) for s in args.settings for c in args.scenarios
                if args.force or not (out / f"{s}-{c}.json").is_file()]
        started = time.time()
        with ProcessPoolExecutor(max_workers=args.workers) as pool:
            futures = [pool.submit(run_scenario, s, c, args.data_dir, args.seeds, args.epochs, str(out))
                       for s, c in todo]
            for future in futures:
                print(f"wrote {future.result()} ({time.time() - started:.0f}s)", flush=True)
    from scenario_tables import write_tables   # noqa: E402  (beside this file)

    write_tables(out, args.settings, args.scenarios)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
