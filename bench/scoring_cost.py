"""What cheaper scoring costs in decisions: bf16 scoring and the scoring batch size, MNIST / LeNet.

    python bench/scoring_cost.py --data-dir ../shared/data --epochs 1 --seeds 0 1 2

For each seed, LeNet is trained for ``--epochs`` epochs (the archetype), then the whole
training set is scored in raw batches of ``--raw-batch`` with every variant:
- fp32 at the raw batch size (the reference);
- bf16 at the raw batch size;
- fp32 and bf16 at the evaluation batch size (1024);
- ``score_every=2``: the logits recorded one epoch earlier, compared with a fresh fp32 score
  after one more epoch of training (no forward at all: its time is 0).

Each variant is timed, in the same process and interleaved, repeated ``--repeats`` times,
and compared with the fp32 reference on the decisions strategies take from the scores:
- the thesis's hard filter (misclassified or not);
- its soft filter (margin 0.5);
- top 10% of each raw batch by loss (max_loss);
- the gradient-norm bound's top 10% (grad_norm).

The score is the share of samples on which the decision is identical. Writes
bench/results/scoring_cost.json and a Markdown table beside it.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F

from assist.api import load_data, make_config
from assist.engine.trainer import Trainer
from assist.strategies.importance_sampling import gradient_norm_scores

STALE = "reused, 1 epoch old (score_every=2)"  # compared with a fresh fp32 score one epoch later
VARIANTS = {"fp32, raw batch": ("fp32", None), "bf16, raw batch": ("bf16", None),
            "fp32, batch 1024": ("fp32", 1024), "bf16, batch 1024": ("bf16", 1024)}


@torch.no_grad()
def score_all(model, x_all, y_all, precision: str, chunk: int) -> tuple[torch.Tensor, float]:
    model.eval()
    context = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else nullcontext()
    started = time.perf_counter()
    parts = []
    with context:
        for start in range(0, x_all.shape[0], chunk):
            parts.append(model(x_all[start:start + chunk]).float())
    return torch.cat(parts), time.perf_counter() - started


def decisions(logits: torch.Tensor, labels: torch.Tensor, raw: int) -> dict[str, torch.Tensor]:
    probabilities = logits.softmax(1)
    correct = logits.argmax(1) == labels
    truth = probabilities.gather(1, labels[:, None])[:, 0]
    losses = F.cross_entropy(logits, labels, reduction="none")
    bound = gradient_norm_scores(logits, labels)

    def top_share(values: torch.Tensor) -> torch.Tensor:
        keep = torch.zeros_like(values, dtype=torch.bool)
        for start in range(0, values.shape[0], raw):
            part = values[start:start + raw]
            keep[start + part.topk(max(1, round(0.1 * part.numel()))).indices] = True
        return keep

    return {"hard filter": ~correct, "soft filter (0.5)": ~correct | (truth < 0.5),
            "top 10% loss": top_share(losses), "top 10% grad-norm bound": top_share(bound)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--raw-batch", type=int, default=640)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="bench/results/scoring_cost.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    base = {"dataset": "mnist", "data_dir": args.data_dir, "model": "lenet", "epochs": args.epochs,
            "batch_size": 64, "learning_rate": 0.05, "samples_per_class": 2000, "num_threads": args.threads}
    data = load_data(make_config(base))
    seconds = {name: [] for name in VARIANTS}
    agreement: dict[str, dict[str, list[float]]] = {name: {} for name in VARIANTS}
    for seed in args.seeds:
        trainer = Trainer(make_config({**base, "rng_seed": seed}), data, evaluate=False)
        trainer.fit()
        pipeline = trainer.train_eval_data
        x_all, y_all = pipeline.batch(torch.arange(data.num_train), None)
        reference = None
        for _ in range(args.repeats):
            for name, (precision, chunk) in VARIANTS.items():
                logits, took = score_all(trainer.model, x_all, y_all, precision, chunk or args.raw_batch)
                seconds[name].append(took)
                if name == "fp32, raw batch" and reference is None:
                    reference = decisions(logits, y_all, args.raw_batch)
                got = decisions(logits, y_all, args.raw_batch)
                for rule, keep in got.items():
                    agreement[name].setdefault(rule, []).append(float((keep == reference[rule]).float().mean()))
        # score_every=2: the next epoch's decisions taken from this epoch's logits (no forward)
        stale = decisions(score_all(trainer.model, x_all, y_all, "fp32", args.raw_batch)[0], y_all, args.raw_batch)
        later = Trainer(make_config({**base, "rng_seed": seed, "epochs": args.epochs + 1}), data, evaluate=False)
        later.fit()
        fresh = decisions(score_all(later.model, x_all, y_all, "fp32", args.raw_batch)[0], y_all, args.raw_batch)
        seconds.setdefault(STALE, []).append(0.0)
        for rule, keep in stale.items():
            agreement.setdefault(STALE, {}).setdefault(rule, []).append(float((keep == fresh[rule]).float().mean()))
    base_time = statistics.fmean(seconds["fp32, raw batch"])
    rules = list(next(iter(agreement.values())))
    header = "| scoring | s per pass over 20k (× fp32 raw) | " + " | ".join(f"same decision: {r}" for r in rules) + " |"
    lines = [f"MNIST / LeNet after {args.epochs} epoch(s), 20,000 training samples, raw batches of {args.raw_batch}, "
             f"seeds {args.seeds}, {args.repeats} interleaved repeats, {args.threads} thread(s). Command: "
             f"`python bench/scoring_cost.py --data-dir {args.data_dir} --epochs {args.epochs} "
             f"--seeds {' '.join(map(str, args.seeds))}`. Machine: {platform.machine()}, torch {torch.__version__}. "
             f"Date: {time.strftime('%Y-%m-%d')}.", "", header, "| --- | ---: |" + " ---: |" * len(rules)]
    for name in [*VARIANTS, STALE]:
        took = statistics.fmean(seconds[name])
        shares = " | ".join(f"{100 * statistics.fmean(agreement[name][r]):.2f}%" for r in rules)
        lines.append(f"| {name} | {took:.2f} ({took / base_time:.2f}) | {shares} |")
    table = "\n".join(lines)
    print(table)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"seconds": seconds, "agreement": agreement, "args": vars(args)}, indent=1))
    out.with_suffix(".md").write_text(table + "\n")
    print(f"\nwrote {out} and {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
