"""Every thesis strategy on MNIST with LeNet, from the CLI, on this machine's CPU.

    python bench/thesis_strategies_mnist.py --data-dir ../shared/data --epochs 3

Runs `assist train` once per strategy (same seed, same parameters), then prints a table of
final test accuracy, steps per epoch, acceptance ratio, samples scored / trained, and the
training wall-clock per epoch relative to the archetype, and writes the figures to
bench/results/thesis_strategies_mnist.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STRATEGIES = {
    "archetype": [],
    "epochwise": ["epoch_filtering=true"],
    "batchwise (unstable)": ["batch_filtering=true", "batch_accumulation=false"],
    "batchwise (accumulation)": ["batch_filtering=true", "accumulation_batch_size=512"],
    "epoch+batchwise": ["epoch_filtering=true", "batch_filtering=true", "accumulation_batch_size=512"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--out", default="bench/results/thesis_strategies_mnist.json")
    args = parser.parse_args()
    common = [f"data_dir={args.data_dir}", "dataset=mnist", "model=lenet", f"epochs={args.epochs}",
              f"batch_size={args.batch_size}", "learning_rate=0.05", "rng_seed=0"]
    table = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, extra in STRATEGIES.items():
            out = Path(tmp) / label.replace(" ", "_").replace("(", "").replace(")", "").replace("+", "_")
            command = [sys.executable, "-m", "assist.cli", "train", "--out", str(out), *common, *extra]
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
            rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
            table[label] = {
                "command": "assist train " + " ".join(common[1:] + extra),
                "test_accuracy": rows[-1]["test_accuracy"],
                "steps_per_epoch": [r["steps"] for r in rows],
                "acceptance_ratio": [r["acceptance_ratio"] if r.get("epoch_filter_passed") is None
                                     else r["epoch_filter_passed"] / 60000 for r in rows],
                "samples_scored": sum(r["samples_scored"] for r in rows),
                "samples_trained": sum(r["samples_trained"] for r in rows),
                "train_s_per_epoch": rows[-1]["train_time_s"] / len(rows),
            }
    base = table["archetype"]["train_s_per_epoch"]
    print(f"\nMNIST / LeNet, {args.epochs} epochs, batch {args.batch_size}, seed 0, CPU ({platform.processor() or platform.machine()})\n")
    print("| strategy | test acc | steps per epoch | acceptance ratio per epoch | scored | trained | train s/epoch | x archetype |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for label, r in table.items():
        acc = ", ".join("-" if a is None else f"{a:.3f}" for a in r["acceptance_ratio"])
        print(f"| {label} | {100 * r['test_accuracy']:.2f}% | {', '.join(map(str, r['steps_per_epoch']))} | {acc} | "
              f"{r['samples_scored']} | {r['samples_trained']} | {r['train_s_per_epoch']:.1f} | {r['train_s_per_epoch'] / base:.2f} |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "epochs": args.epochs,
                                          "batch_size": args.batch_size, "runs": table}, indent=2))


if __name__ == "__main__":
    main()
