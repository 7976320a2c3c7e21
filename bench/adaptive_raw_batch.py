"""Adaptive raw batch size (thesis 5.2.2) against fixed raw batches, MNIST / LeNet, CPU.

    python bench/adaptive_raw_batch.py --data-dir ../shared/data --epochs 3 --seeds 0 1 2

Batchwise hard accuracy filtering with batch accumulation, raw batches of 1x, 2x and 4x the
batch size and ``accumulation_batch_size=auto`` (bounded at 16x, and at its default 4x), each
beside its archetype twin (same seed),
all in this process on data loaded once. Per setting, mean ± std over the seeds: scoring
forwards per optimizer step, accepted samples discarded as overflow per step, steps, samples
trained, training time ÷ the twin's (measured in the same process, seed by seed), and the
final test accuracy. Writes bench/results/adaptive_raw_batch.json and a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from assist.api import load_data, make_config, train
from assist.validation import twin_config


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def fmt(values: list[float], scale: float = 1.0, digits: int = 1) -> str:
    mean, std = mean_std([v * scale for v in values])
    return f"{mean:,.{digits}f} ± {std:,.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default="bench/results/adaptive_raw_batch.json")
    args = parser.parse_args()
    b = args.batch_size
    base = {"dataset": "mnist", "data_dir": args.data_dir, "model": "lenet", "epochs": args.epochs,
            "batch_size": b, "learning_rate": 0.05, "train_eval_every": args.epochs}
    settings = {f"raw {b} (1x)": (b, None), f"raw {2 * b} (2x)": (2 * b, None), f"raw {4 * b} (4x)": (4 * b, None),
                "auto (max 16x)": ("auto", 16 * b), "auto (max 4x, the default)": ("auto", 4 * b)}
    data = load_data(make_config(base))
    torch.set_num_threads(torch.get_num_threads())
    results: dict[str, dict[str, list[float]]] = {name: {} for name in ["archetype", *settings]}

    def record(name: str, key: str, value: float) -> None:
        results[name].setdefault(key, []).append(value)

    for seed in args.seeds:
        twin = twin_config(make_config({**base, "rng_seed": seed}))
        arch = train(twin, data=data)
        arch_time = arch.state.train_time_s
        record("archetype", "test_accuracy", arch.final["test_accuracy"])
        record("archetype", "train_time_ratio", 1.0)
        record("archetype", "steps", arch.state.total_steps)
        record("archetype", "samples_trained", arch.state.cum_samples_trained)
        for name, (raw, upper) in settings.items():
            extra = {} if upper is None else {"accumulation_batch_size_max": upper}
            run = train(make_config({**base, "rng_seed": seed, "strategy": "batchwise", "accumulation_batch_size": raw,
                                     **extra}), data=data)
            rows, steps = run.history, max(run.state.total_steps, 1)
            record(name, "test_accuracy", run.final["test_accuracy"])
            record(name, "train_time_ratio", run.state.train_time_s / arch_time)
            record(name, "steps", run.state.total_steps)
            record(name, "samples_trained", run.state.cum_samples_trained)
            record(name, "scored_per_step", run.state.cum_samples_scored / steps)
            record(name, "overflow_per_step", sum(r["overflow_discarded"] or 0 for r in rows) / steps)
            record(name, "raw_batch_size_last_epoch", rows[-1]["raw_batch_size_mean"])
            print(f"seed {seed} {name}: {run.state.total_steps} steps, acc {run.final['test_accuracy']:.4f}, "
                  f"time x{run.state.train_time_s / arch_time:.2f}", flush=True)

    header = (f"MNIST / LeNet, batchwise hard filtering with accumulation, batch {b}, {args.epochs} epochs, "
              f"seeds {args.seeds}, CPU ({platform.processor() or platform.machine()}, "
              f"{torch.get_num_threads()} threads), {time.strftime('%Y-%m-%d')}")
    lines = [header, "",
             "| raw batch | scoring forwards / step | overflow discarded / step | steps | samples trained | "
             "train time ÷ archetype | test accuracy | raw batch size, last epoch |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, r in results.items():
        if name == "archetype":
            lines.append(f"| archetype twin | – | – | {fmt(r['steps'], digits=0)} | {fmt(r['samples_trained'], digits=0)} | "
                         f"1.00 | {fmt(r['test_accuracy'], 100, 2)}% | – |")
            continue
        lines.append(f"| {name} | {fmt(r['scored_per_step'])} | {fmt(r['overflow_per_step'])} | "
                     f"{fmt(r['steps'], digits=0)} | {fmt(r['samples_trained'], digits=0)} | "
                     f"{fmt(r['train_time_ratio'], digits=2)} | {fmt(r['test_accuracy'], 100, 2)}% | "
                     f"{fmt(r['raw_batch_size_last_epoch'], digits=0)} |")
    table = "\n".join(lines)
    print("\n" + table)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "args": vars(args), "results": results}, indent=2))
    out.with_suffix(".md").write_text(table + "\n")


if __name__ == "__main__":
    main()
