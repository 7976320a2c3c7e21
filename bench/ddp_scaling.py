"""Data-parallel scaling: images/s and the share of time in selection collectives, on 1 and
N processes, for the archetype and three scoring strategies.

    python bench/ddp_scaling.py --data-dir ../shared/data --nproc 1 2
    python bench/ddp_scaling.py --device cuda --nproc 1 2 4 8 --dataset cifar10 --model resnet18

Each run is ``assist train --nproc N`` (``torch.distributed.run``, gloo on CPU, nccl on GPUs)
with the same global batch size, in a fresh run directory; the figures come from its
``metrics.jsonl``: images/s is the raw samples the epochs visited per second of training
time (evaluation excluded), averaged over the epochs after the first (which pays start-up and
compilation); the selection-communication share is the largest per-rank share of an epoch
spent in the score and feedback all-gathers; the step time is the mean per-rank time of one
training step (forward, backward with DDP's gradient all-reduce, feedback gather). The counts
(samples scored, trained) show that every N did the same work.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

STRATEGIES = ("archetype", "batchwise", "selective_backprop", "infobatch")


def run(nproc: int, strategy: str, args: argparse.Namespace, folder: Path) -> dict:
    out = folder / f"{strategy}-{nproc}"
    command = [sys.executable, "-m", "assist", "train", "--nproc", str(nproc), "--out", str(out),
               f"dataset={args.dataset}", f"model={args.model}", f"epochs={args.epochs}",
               f"batch_size={args.batch_size}", f"strategy={strategy}", f"device={args.device}",
               f"data_dir={args.data_dir}", "rng_seed=0", f"num_threads={args.threads}",
               f"train_eval_every={args.epochs}"]
    if args.samples_per_class:
        command.append(f"samples_per_class={args.samples_per_class}")
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    seconds = [r["train_time_s"] - (rows[i - 1]["train_time_s"] if i else 0.0) for i, r in enumerate(rows)]
    timed = list(zip(rows, seconds))[1:] or list(zip(rows, seconds))
    return {"nproc": nproc, "strategy": strategy,
            "images_per_s": statistics.fmean(r["raw_batch_size_mean"] * r["raw_batches"] / s for r, s in timed),
            # measured per rank in data-parallel runs only
            "step_time_ms": statistics.fmean(1000 * max(r["rank_step_time_s"]) for r, _ in timed)
            if "rank_step_time_s" in rows[-1] else None,
            "comm_share": statistics.fmean(r.get("selection_comm_share") or 0.0 for r, _ in timed),
            "scored": rows[-1]["cum_samples_scored"], "trained": rows[-1]["cum_samples_trained"],
            "test_accuracy": rows[-1]["test_accuracy"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--model", default="lenet")
    parser.add_argument("--samples-per-class", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--nproc", type=int, nargs="*", default=[1, 2])
    parser.add_argument("--strategies", nargs="*", default=list(STRATEGIES))
    parser.add_argument("--out", default="bench/results/ddp_scaling.json")
    args = parser.parse_args()
    load_before = os.getloadavg()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for strategy in args.strategies:
            for nproc in args.nproc:
                t0 = time.time()
                results.append(run(nproc, strategy, args, Path(tmp)))
                r = results[-1]
                print(f"{strategy:20s} nproc {nproc}: {r['images_per_s']:9,.0f} images/s  comm share "
                      f"{100 * r['comm_share']:.1f}%  ({time.time() - t0:.0f}s)", flush=True)
    base = {r["strategy"]: r for r in results if r["nproc"] == min(args.nproc)}
    machine = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}"
               + (f", {torch.cuda.get_device_name(0)}" if args.device.startswith("cuda") else ""))
    command = "python bench/ddp_scaling.py " + " ".join(sys.argv[1:])
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    lines = [f"{args.dataset} / {args.model}, {args.samples_per_class or 'all'} per class, {args.epochs} epochs "
             f"(the first not timed), global batch {args.batch_size}, device {args.device}, {args.threads} thread(s) "
             f"per process. Command: `{command}`. Machine: {machine}; load average {load_before[0]:.1f} at start, "
             f"{os.getloadavg()[0]:.1f} at end. Date: {date}.", "",
             "| strategy | processes | images/s | × 1 process | step time (ms, slowest rank) "
             "| selection comm. share | samples scored | samples trained | test acc |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in results:
        lines.append(f"| {r['strategy']} | {r['nproc']} | {r['images_per_s']:,.0f} "
                     f"| {r['images_per_s'] / base[r['strategy']]['images_per_s']:.2f} "
                     f"| {'—' if r['step_time_ms'] is None else format(r['step_time_ms'], '.1f')} "
                     f"| {100 * r['comm_share']:.1f}% | {r['scored']:,} | {r['trained']:,} "
                     f"| {100 * r['test_accuracy']:.2f}% |")
    text = "\n".join(lines)
    print("\n" + text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"command": command, "date": date, "machine": machine, "results": results}, indent=1))
    out.with_suffix(".md").write_text(text + "\n")


if __name__ == "__main__":
    main()
