"""Cost to accuracy: every strategy against the archetype on MNIST / LeNet, on this CPU.

    python bench/cost_to_accuracy.py --data-dir ../shared/data --epochs 5 --seeds 3 --subset 2000

Runs the archetype, the thesis's epochwise and batchwise hard accuracy filtering, and the
peer methods (InfoBatch, Selective Backprop, RHO-LOSS, importance sampling, Ordered SGD, DivBS,
the max-loss baseline, and the random-subset control at Selective Backprop's measured training budget)
with the same seeds, epoch budget and hyper-parameters, one run at a time. It prints and
writes (bench/results/cost_to_accuracy.json plus a markdown table) per strategy: final test
accuracy (mean ± std over seeds), training wall-clock, samples scored (no-grad selection
forwards) and trained (forward + backward), and the wall-clock and sample passes
(scored + trained) until the test accuracy first reaches the target = the archetype's final
mean accuracy − 0.1 points, each as a ratio to the archetype of the same invocation.

Wall-clock is the trainer's ``train_time_s`` (planning, scoring and training; evaluation
excluded). RHO-LOSS runs without its cache, so its irreducible-loss model's training is in its
wall-clock, and the IL model's sample passes are added to its cost. Accuracy is checked only
at epoch ends, so "to target" figures are epoch-granular.
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

import torch

from assist.api import make_config
from assist.data import load_dataset
from assist.engine.trainer import Trainer

GOAL = ("Project goal: some strategy reaches the target accuracy (archetype's final mean − 0.1 points) "
        "with at least 30% less wall-clock than the archetype (time-to-target ratio ≤ 0.70).")

# label -> config overrides; random_subset's fraction is filled in from Selective Backprop's runs
STRATEGIES: dict[str, dict[str, Any]] = {
    "archetype": {"strategy": "archetype"},
    "epochwise (hard)": {"strategy": "epochwise"},
    "batchwise (hard, accumulation)": {"strategy": "batchwise"},
    "infobatch": {"strategy": "infobatch"},
    "selective_backprop": {"strategy": "selective_backprop"},
    "rho_loss": {"strategy": "rho_loss", "strategy_options": {"cache": False}},
    "importance_sampling": {"strategy": "importance_sampling"},
    "ordered_sgd": {"strategy": "ordered_sgd"},
    "divbs": {"strategy": "divbs"},
    "max_loss": {"strategy": "max_loss"},
    "grad_norm": {"strategy": "grad_norm"},
    "grad_norm_is": {"strategy": "grad_norm_is"},
    "random_subset (SB budget)": {"strategy": "random_subset"},
}
KEEP = ("epoch", "steps", "samples_scored", "samples_trained", "cum_samples_scored", "cum_samples_trained",
        "train_time_s", "test_accuracy", "train_accuracy", "acceptance_ratio")


def run_one(label: str, overrides: dict[str, Any], base: dict[str, Any], data) -> dict[str, Any]:
    config = make_config({**base, **overrides})
    state = Trainer(config, data).fit()
    rows = []
    for row in state.history:
        kept = {k: row.get(k) for k in KEEP}
        kept.update({k: v for k, v in row.items() if k.split("_")[0] in ("infobatch", "sb", "rho", "is", "osgd", "subset")})
        rows.append(kept)
    extra = sum(r.get("rho_il_samples_trained", 0) + r.get("rho_il_samples_scored", 0) for r in rows)
    return {"label": label, "seed": config.rng_seed, "status": state.status, "config": config.model_dump(mode="json"),
            "il_sample_passes": extra, "history": rows}


def first_reach(run: dict[str, Any], target: float) -> Optional[dict[str, float]]:
    """Wall-clock and sample passes at the first epoch whose test accuracy reaches ``target``."""
    for row in run["history"]:
        if row["test_accuracy"] >= target:
            passes = row["cum_samples_scored"] + row["cum_samples_trained"] + run["il_sample_passes"]
            return {"epoch": row["epoch"], "seconds": row["train_time_s"], "passes": passes}
    return None


def mean(values: list[float]) -> Optional[float]:
    return statistics.fmean(values) if values else None


def summarise(runs: list[dict[str, Any]], labels: list[str]) -> tuple[float, list[dict[str, Any]]]:
    by_label = {label: [r for r in runs if r["label"] == label] for label in labels}
    archetype_final = [r["history"][-1]["test_accuracy"] for r in by_label["archetype"]]
    target = statistics.fmean(archetype_final) - 0.001
    table = []
    for label in labels:
        group = by_label[label]
        finals = [r["history"][-1]["test_accuracy"] for r in group]
        last = [r["history"][-1] for r in group]
        reached = [x for x in (first_reach(r, target) for r in group) if x is not None]
        table.append({
            "strategy": label, "seeds": len(group), "final_mean": statistics.fmean(finals),
            "final_std": statistics.stdev(finals) if len(finals) > 1 else 0.0,
            "train_s": statistics.fmean(r["train_time_s"] for r in last),
            "scored": statistics.fmean(r["cum_samples_scored"] for r in last),
            "trained": statistics.fmean(r["cum_samples_trained"] for r in last),
            "il_passes": statistics.fmean(r["il_sample_passes"] for r in group),
            "reached": len(reached),
            "to_target_s": mean([x["seconds"] for x in reached]),
            "to_target_passes": mean([x["passes"] for x in reached]),
            "to_target_epoch": mean([x["epoch"] for x in reached]),
        })
    base = table[0]
    for row in table:
        for key in ("train_s", "to_target_s", "to_target_passes"):
            ok = row[key] is not None and base[key]
            row[f"{key}_ratio"] = row[key] / base[key] if ok else None
    return target, table


def fmt(value: Optional[float], pattern: str) -> str:
    return "—" if value is None else format(value, pattern)


def markdown(table: list[dict[str, Any]], target: float, header: str) -> str:
    lines = [header, "", GOAL, "", f"Target test accuracy: {100 * target:.2f}%.", "",
             "| strategy | final test acc (mean ± std) | train s (× arch.) | scored | trained "
             "| reached target | s to target (× arch.) | sample passes to target (× arch.) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in table:
        lines.append(
            f"| {r['strategy']} | {100 * r['final_mean']:.2f} ± {100 * r['final_std']:.2f}% "
            f"| {r['train_s']:.1f} ({fmt(r['train_s_ratio'], '.2f')}) | {r['scored']:,.0f} | {r['trained']:,.0f} "
            f"| {r['reached']}/{r['seeds']} (epoch {fmt(r['to_target_epoch'], '.1f')}) "
            f"| {fmt(r['to_target_s'], '.1f')} ({fmt(r['to_target_s_ratio'], '.2f')}) "
            f"| {fmt(r['to_target_passes'], ',.0f')} ({fmt(r['to_target_passes_ratio'], '.2f')}) |")
    met = [r["strategy"] for r in table[1:] if r["to_target_s_ratio"] is not None
           and r["reached"] == r["seeds"] and r["to_target_s_ratio"] <= 0.70]
    il = [r for r in table if r["il_passes"]]
    lines += [""] + [f"{r['strategy']}: scored/trained exclude its irreducible-loss model "
                     f"({r['il_passes']:,.0f} sample passes per run, counted in its cost to target and "
                     f"its wall-clock)." for r in il]
    lines += ["Wall-clock is the trainer's training time (evaluation excluded); samples are counted over "
              "the whole run; \"to target\" figures average the seeds that reached it.",
              "", "Goal met by: " + (", ".join(met) if met else "no strategy in this run") + "."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--subset", type=int, default=2000, help="training samples per class (0: all 60,000)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=0.05)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is steadiest on a shared machine)")
    parser.add_argument("--strategies", nargs="*", default=list(STRATEGIES), help="labels to run (archetype always runs)")
    parser.add_argument("--out", default="bench/results/cost_to_accuracy.json")
    args = parser.parse_args()
    labels = ["archetype"] + [s for s in args.strategies if s != "archetype"]
    unknown = [s for s in labels if s not in STRATEGIES]
    if unknown:
        parser.error(f"unknown strategies {unknown}; choose from {list(STRATEGIES)}")
    torch.set_num_threads(args.threads)
    base = {"dataset": "mnist", "data_dir": args.data_dir, "model": "lenet", "epochs": args.epochs,
            "batch_size": args.batch_size, "learning_rate": args.learning_rate, "num_threads": args.threads,
            "samples_per_class": args.subset or None, "train_eval_every": args.epochs}
    started, load_before = time.time(), os.getloadavg()
    runs: list[dict[str, Any]] = []
    for seed in range(args.seeds):  # seed-major, so load changes on the machine hit every strategy alike
        data = load_dataset("mnist", data_dir=args.data_dir, samples_per_class=args.subset or None, seed=seed)
        for label in labels:
            overrides = dict(STRATEGIES[label])
            if label.startswith("random_subset"):
                sb = [r for r in runs if r["label"] == "selective_backprop" and r["seed"] == seed]
                trained = sb[0]["history"][-1]["cum_samples_trained"] if sb else data.num_train * args.epochs // 2
                fraction = min(1.0, max(1e-3, trained / (data.num_train * args.epochs)))
                overrides["strategy_options"] = {"fraction": round(fraction, 4)}
            t0 = time.time()
            run = run_one(label, overrides, {**base, "rng_seed": seed}, data)
            runs.append(run)
            last = run["history"][-1]
            print(f"seed {seed} {label:32s} test acc {100 * last['test_accuracy']:.2f}%  "
                  f"train {last['train_time_s']:.1f}s  ({time.time() - t0:.0f}s with evaluation)", flush=True)
    target, table = summarise(runs, labels)
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, {args.threads} thread(s)"
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    command = "python bench/cost_to_accuracy.py " + " ".join(sys.argv[1:])
    header = (f"MNIST / LeNet, {data.num_train:,} training samples ({'all' if not args.subset else f'{args.subset} per class'}), "
              f"full 10,000-image test set, {args.epochs} epochs, batch {args.batch_size}, SGD lr {args.learning_rate}, "
              f"{args.seeds} seeds. Command: `{command}`. Machine: {machine}; load average "
              f"{load_before[0]:.1f} at start, {os.getloadavg()[0]:.1f} at end. Date: {date}.")
    text = markdown(table, target, header)
    print("\n" + text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"command": command, "date": date, "machine": machine, "goal": GOAL,
                               "load_average": {"start": load_before, "end": os.getloadavg()},
                               "elapsed_s": time.time() - started, "target": target, "table": table,
                               "runs": runs}, indent=1))
    out.with_suffix(".md").write_text(text + "\n")
    print(f"\nwrote {out} and {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
