"""Budget curves: how much wall-clock and how many sample passes each strategy needs to reach
the archetype's plateau, with a uniform random-subset control at each strategy's budget.

    python bench/budget_curve.py --data-dir ../shared/data --settings mnist_cosine cifar10_cosine --seeds 3

Four settings:

- ``mnist``: MNIST / LeNet, all 60,000 training images, 15 epochs, no augmentation, constant
  lr 0.05 (the archetype's accuracy swings by about ±0.5 points from epoch to epoch);
- ``mnist_cosine``: the same on a cosine schedule from 0.05 to zero;
- ``cifar10``: CIFAR-10 / LeNet from the image-folder archive, 2,000 images per class,
  20 epochs, the ``light`` augmentation (flip and padded crop), constant lr 0.05;
- ``cifar10_cosine``: the same data and augmentation, 30 epochs, lr 0.02 on a cosine
  schedule to zero (per step, by progress: docs/schedules.md), which flattens out.

Per setting and seed, the archetype and each strategy run one after the other in this process
(seed-major, so a load change on the machine hits every strategy alike), then one control run
per strategy (``--control``: ``random_subset``, the recorded results' control, or ``rs2``) at
the share of sample-steps that strategy trained in the same seed. The table gives, per strategy, the final test accuracy and the training wall-clock
(the trainer's ``train_time_s``: planning, scoring and training, evaluation excluded) and the
sample passes (samples scored + trained) at the first epoch whose test accuracy reaches the
archetype's final mean accuracy − 0.1 points and − 0.5 points, each as a ratio to the archetype
of the same invocation. Last, the paired verdicts (assist.verdicts): each strategy against the
archetype and against its control, seed by seed, with 95% confidence intervals. The figure (PNG beside the table) draws test accuracy against training
wall-clock and against sample passes for every strategy, with the report's figure code.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cost_to_accuracy import first_reach, fmt, run_one  # noqa: E402  (the same run and reach rules)

from assist.data import load_dataset  # noqa: E402
from assist.strategies.controls import CONTROLS, control_label, control_overrides  # noqa: E402
from assist.verdicts import (MARGIN, MEASURES, PairedVerdict, control_budget, legend, outcome,  # noqa: E402
                             paired_verdict, table_rows)
from assist.report.drawing import render_curves  # noqa: E402
from assist.report.figures import Line, add_derived, colour_map  # noqa: E402

GOAL = ("Project goal: the best strategy reaches the archetype's final mean accuracy − 0.1 points at "
        "≤ 0.6× the archetype's wall-clock, on at least one setting.")
SETTINGS: dict[str, dict[str, Any]] = {
    "mnist": {"dataset": "mnist", "model": "lenet", "epochs": 15, "samples_per_class": None,
              "data_augmentation": False, "plot_from": 0.935},
    # the same with a cosine schedule to zero: a plateau without the constant rate's ±0.5 pt swings
    "mnist_cosine": {"dataset": "mnist", "model": "lenet", "epochs": 15, "samples_per_class": None,
                     "data_augmentation": False, "lr_scheduler": "cosine", "plot_from": 0.97},
    "cifar10": {"dataset": "cifar10", "model": "lenet", "epochs": 20, "samples_per_class": 2000,
                "data_augmentation": True, "augmentation_recipe": "light", "plot_from": 0.25},
    # the usual recipe for a plateau: a cosine schedule to zero over 30 epochs, at a learning
    # rate LeNet takes with momentum 0.9 (0.05 constant leaves the run noisy and far from one)
    "cifar10_cosine": {"dataset": "cifar10", "model": "lenet", "epochs": 30, "samples_per_class": 2000,
                       "data_augmentation": True, "augmentation_recipe": "light", "learning_rate": 0.02,
                       "lr_scheduler": "cosine", "plot_from": 0.3},
}
LEARNING_RATE = 0.05   # a setting's own, else this one, unless --learning-rate is given
STRATEGIES: dict[str, dict[str, Any]] = {
    "archetype": {"strategy": "archetype"},
    "batchwise (hard, accumulation)": {"strategy": "batchwise"},
    "infobatch": {"strategy": "infobatch"},
    "selective_backprop": {"strategy": "selective_backprop"},
    "importance_sampling": {"strategy": "importance_sampling"},
}
MARGINS = (0.001, 0.005)   # − 0.1 and − 0.5 points


def control_of(label: str) -> Optional[tuple[str, str]]:
    """(control kind, strategy label) of a control's label (``rs2 @ infobatch``); None for others."""
    kind, at, strategy = label.partition(" @ ")
    return (kind, strategy) if at and kind in CONTROLS else None


def verdicts(runs: list[dict[str, Any]], labels: list[str]) -> list[PairedVerdict]:
    """Each strategy against the archetype of its seed and against its control, paired by seed
    (assist.verdicts: the same rule as assist compare and assist report)."""
    outcomes = {label: {r["seed"]: outcome(r["history"]) for r in runs if r["label"] == label} for label in labels}
    archetypes = outcomes["archetype"]
    found = []
    for label in labels:
        if label == "archetype" or control_of(label):
            continue
        found.append(paired_verdict(label, "archetype", outcomes[label], archetypes, archetypes))
        for other in labels:
            if control_of(other) and control_of(other)[1] == label:
                found.append(paired_verdict(label, control_of(other)[0], outcomes[label], outcomes[other], archetypes))
    return found


def verdict_markdown(found: list[PairedVerdict]) -> str:
    head = ["strategy", "against", "seeds"] + [f"{title} {part}" for _, title, _ in MEASURES
                                               for part in ("diff [95% CI]", "verdict")]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(found)]
    return "\n".join(lines)


def reach(group: list[dict[str, Any]], target: float) -> dict[str, Any]:
    hits = [x for x in (first_reach(r, target) for r in group) if x is not None]
    return {"reached": len(hits),
            "seconds": statistics.fmean(x["seconds"] for x in hits) if hits else None,
            "passes": statistics.fmean(x["passes"] for x in hits) if hits else None,
            "epoch": statistics.fmean(x["epoch"] for x in hits) if hits else None}


def summarise(runs: list[dict[str, Any]], labels: list[str]) -> tuple[dict[str, float], list[dict[str, Any]]]:
    by_label = {label: [r for r in runs if r["label"] == label] for label in labels}
    arch_final = statistics.fmean(r["history"][-1]["test_accuracy"] for r in by_label["archetype"])
    targets = {f"-{100 * m:.1f}pt": arch_final - m for m in MARGINS}
    table = []
    for label in labels:
        group = by_label[label]
        finals = [r["history"][-1]["test_accuracy"] for r in group]
        last = [r["history"][-1] for r in group]
        row: dict[str, Any] = {
            "strategy": label, "seeds": len(group), "final_mean": statistics.fmean(finals),
            "final_std": statistics.stdev(finals) if len(finals) > 1 else 0.0,
            "train_s": statistics.fmean(r["train_time_s"] for r in last),
            "passes": statistics.fmean(r["cum_samples_scored"] + r["cum_samples_trained"] + g["il_sample_passes"]
                                       for r, g in zip(last, group)),
            "fraction": group[0]["config"].get("strategy_options", {}).get("fraction")
            if control_of(label) else None}
        for name, target in targets.items():
            row[name] = reach(group, target)
        table.append(row)
    base = table[0]
    for row in table:
        row["train_s_ratio"] = row["train_s"] / base["train_s"]
        for name in targets:
            for key in ("seconds", "passes"):
                ours, theirs = row[name][key], base[name][key]
                row[name][f"{key}_ratio"] = ours / theirs if ours is not None and theirs else None
    return targets, table


def paired(runs: list[dict[str, Any]], labels: list[str]) -> list[dict[str, Any]]:
    """Each run against the archetype of its own seed (the same data subset and initial
    weights): the target is that archetype's final accuracy − margin, and the time and pass
    ratios are taken per seed, then averaged over the seeds that reached it. The seeds' spread
    (±1.3 points on CIFAR-10) makes the mean target above unreachable for the archetype's own
    weaker seeds; this comparison does not have that problem."""
    archetype = {r["seed"]: r for r in runs if r["label"] == "archetype"}
    rows = []
    for label in labels:
        group = [r for r in runs if r["label"] == label]
        row: dict[str, Any] = {"strategy": label, "seeds": len(group)}
        for margin in MARGINS:
            seconds, passes = [], []
            for run in group:
                reference = archetype[run["seed"]]
                target = reference["history"][-1]["test_accuracy"] - margin
                ours, theirs = first_reach(run, target), first_reach(reference, target)
                if ours is not None and theirs is not None:
                    seconds.append(ours["seconds"] / theirs["seconds"])
                    passes.append(ours["passes"] / theirs["passes"])
            row[f"-{100 * margin:.1f}pt"] = {
                "reached": len(seconds), "seconds_ratio": statistics.fmean(seconds) if seconds else None,
                "passes_ratio": statistics.fmean(passes) if passes else None}
        rows.append(row)
    return rows


def goal_met(rows: list[dict[str, Any]], name: str) -> list[str]:
    return [r["strategy"] for r in rows[1:] if r[name]["reached"] == r["seeds"]
            and r[name]["seconds_ratio"] is not None and r[name]["seconds_ratio"] <= 0.6]


def markdown(table: list[dict[str, Any]], targets: dict[str, float], header: str, figure: str,
             pairs: list[dict[str, Any]], found: list[PairedVerdict]) -> str:
    names = list(targets)
    lines = [header, "", GOAL, "",
             "Targets: " + ", ".join(f"{n} = {100 * t:.2f}%" for n, t in targets.items()) + ".", "",
             "| strategy | final test acc | train s (× arch.) | sample passes | "
             + " | ".join(f"reached {n} | s to {n} (× arch.) | passes to {n} (× arch.)" for n in names) + " |",
             "| --- | ---: | ---: | ---: | " + " | ".join("---: | ---: | ---:" for _ in names) + " |"]
    for r in table:
        cells = [f"{r['strategy']}" + (f" (fraction {r['fraction']})" if r["fraction"] else ""),
                 f"{100 * r['final_mean']:.2f} ± {100 * r['final_std']:.2f}%",
                 f"{r['train_s']:.1f} ({r['train_s_ratio']:.2f})", f"{r['passes']:,.0f}"]
        for n in names:
            x = r[n]
            cells += [f"{x['reached']}/{r['seeds']} (epoch {fmt(x['epoch'], '.1f')})",
                      f"{fmt(x['seconds'], '.1f')} ({fmt(x['seconds_ratio'], '.2f')})",
                      f"{fmt(x['passes'], ',.0f')} ({fmt(x['passes_ratio'], '.2f')})"]
        lines.append("| " + " | ".join(cells) + " |")
    met = goal_met(table, names[0])
    lines += ["", "\"To target\" figures average the seeds that reached it (all seeds must reach it to count for "
              "the goal); accuracy is checked at epoch ends, so they are epoch-granular.",
              f"Figure: `{figure}`.", "",
              "Goal (−0.1 pt at ≤ 0.6× wall-clock, every seed) met by: "
              + (", ".join(met) if met else "no strategy in this setting") + ".", "",
              "Paired by seed (each run against the archetype of its own seed and that seed's final "
              "accuracy; ratios per seed, averaged):", "",
              "| strategy | " + " | ".join(f"reached {n} | s to {n} (× arch.) | passes to {n} (× arch.)"
                                          for n in names) + " |",
              "| --- | " + " | ".join("---: | ---: | ---:" for _ in names) + " |"]
    for r in pairs:
        cells = [r["strategy"]]
        for n in names:
            x = r[n]
            cells += [f"{x['reached']}/{r['seeds']}", fmt(x["seconds_ratio"], ".2f"), fmt(x["passes_ratio"], ".2f")]
        lines.append("| " + " | ".join(cells) + " |")
    met = goal_met(pairs, names[0])
    lines += ["", "Goal, paired by seed: met by " + (", ".join(met) if met else "no strategy in this setting") + ".",
              "", "Paired verdicts: " + legend(MARGIN), "", verdict_markdown(found)]
    return "\n".join(lines)


def figure(runs: list[dict[str, Any]], labels: list[str], title: str, path: Path, targets: dict[str, float],
           low: float) -> Path:
    """Test accuracy against training time and sample passes, from accuracy ``low`` up (the
    setting's ``plot_from``: a diverged seed leaves the frame rather than flattening the rest)."""
    lines = []
    for label in labels:
        frames = []
        for run in (r for r in runs if r["label"] == label):
            frame = pd.DataFrame(run["history"])
            frame["cum_samples_scored"] = frame["cum_samples_scored"] + run["il_sample_passes"]
            frames.append(add_derived(frame))
        lines.append(Line(label, frames, True))
    top = max(max(r["test_accuracy"] for r in run["history"]) for run in runs)
    return render_curves(lines, colour_map(labels), title, path, ylim=(low, top + 0.15 * (top - low)),
                         marks={f"target {n}": t for n, t in targets.items()})


def run_setting(name: str, args: argparse.Namespace, strategies: list[str]) -> dict[str, Any]:
    setting = SETTINGS[name]
    epochs = args.epochs or setting["epochs"]
    lr = args.learning_rate or setting.get("learning_rate", LEARNING_RATE)
    base = {**{k: v for k, v in setting.items() if k != "plot_from"}, "data_dir": args.data_dir, "epochs": epochs,
            "batch_size": args.batch_size, "learning_rate": lr, "num_threads": args.threads,
            "train_eval_every": epochs}
    labels = strategies + [control_label(args.control, s) for s in strategies[1:]]
    started, load_before = time.time(), os.getloadavg()
    runs: list[dict[str, Any]] = []
    data = None
    for seed in range(args.seeds):
        data = load_dataset(setting["dataset"], data_dir=args.data_dir, samples_per_class=setting["samples_per_class"],
                            seed=seed)
        for label in labels:
            if control_of(label):
                kind, of = control_of(label)
                mine = lambda name: next(r for r in runs if r["label"] == name and r["seed"] == seed)
                overrides = control_overrides(kind, control_budget(mine(of)["history"], mine("archetype")["history"]))
            else:
                overrides = dict(STRATEGIES[label])
            t0 = time.time()
            run = run_one(label, overrides, {**base, "rng_seed": seed}, data)
            run["label"] = label
            runs.append(run)
            last = run["history"][-1]
            print(f"[{name}] seed {seed} {label:44s} test acc {100 * last['test_accuracy']:.2f}%  "
                  f"train {last['train_time_s']:.1f}s  ({time.time() - t0:.0f}s with evaluation)", flush=True)
    machine = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, "
               f"{args.threads} thread(s)")
    describe = (f"{setting['dataset']} / {setting['model']}, {data.num_train:,} training images, full test set, "
                f"{epochs} epochs, batch {args.batch_size}, SGD lr {lr}"
                f"{' ' + setting['lr_scheduler'] if 'lr_scheduler' in setting else ''}, augmentation "
                f"{setting.get('augmentation_recipe', 'thesis') if setting['data_augmentation'] else 'none'}, "
                f"{args.seeds} seeds")
    result = {"setting": name, "command": "python bench/budget_curve.py " + " ".join(sys.argv[1:]),
              "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"), "machine": machine, "goal": GOAL,
              "load_average": {"start": load_before, "end": os.getloadavg()}, "elapsed_s": time.time() - started,
              "describe": describe, "runs": runs}
    return write_results(name, result, Path(args.out_dir))


def write_results(name: str, result: dict[str, Any], out: Path) -> dict[str, Any]:
    """Tables, figure, JSON and Markdown of a setting's runs (for a fresh run, and for the
    recorded runs with --replot)."""
    runs = result["runs"]
    labels = list(dict.fromkeys(r["label"] for r in runs))
    targets, table = summarise(runs, labels)
    pairs = paired(runs, labels)
    load = result["load_average"]
    header = (f"**{name}**: {result['describe']}. Command: `{result['command']}`. Machine: {result['machine']}; "
              f"load average {load['start'][0]:.1f} at start, {load['end'][0]:.1f} at end. Date: {result['date']}.")
    out.mkdir(parents=True, exist_ok=True)
    png = figure(runs, labels, f"Budget curves: {result['describe']}", out / f"budget_curve_{name}.png", targets,
                 SETTINGS[name]["plot_from"])
    found = verdicts(runs, labels)
    text = markdown(table, targets, header, str(png), pairs, found)
    print("\n" + text, flush=True)
    result = {**result, "targets": targets, "table": table, "paired": pairs,
              "verdicts": [{"strategy": v.strategy, "against": v.against, "seeds": len(v.seeds),
                            **{name: vars(v.of(name)) for name, _, _ in MEASURES}} for v in found]}
    (out / f"budget_curve_{name}.json").write_text(json.dumps(result, indent=1))
    (out / f"budget_curve_{name}.md").write_text(text + "\n")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--settings", nargs="*", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=0, help="override every setting's epochs (0: the setting's)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=None,
                        help=f"override every setting's learning rate (default: the setting's, else {LEARNING_RATE})")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is steadiest on a shared machine)")
    parser.add_argument("--strategies", nargs="*", default=list(STRATEGIES), help="labels to run (archetype always runs)")
    parser.add_argument("--control", choices=CONTROLS, default="random_subset",
                        help="each strategy's random control at its budget (random_subset: the recorded results')")
    parser.add_argument("--out-dir", default="bench/results")
    parser.add_argument("--replot", action="store_true",
                        help="recompute the tables and redraw the figures of the recorded runs (no training)")
    args = parser.parse_args()
    if args.replot:
        for name in args.settings:
            path = Path(args.out_dir) / f"budget_curve_{name}.json"
            if path.is_file():
                write_results(name, json.loads(path.read_text()), Path(args.out_dir))
        return
    strategies = ["archetype"] + [s for s in args.strategies if s != "archetype"]
    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown:
        parser.error(f"unknown strategies {unknown}; choose from {list(STRATEGIES)}")
    torch.set_num_threads(args.threads)
    for name in args.settings:
        run_setting(name, args, strategies)


if __name__ == "__main__":
    main()
