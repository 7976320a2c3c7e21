"""Why the Table 4.1 baseline collapses on MNIST/LeNet: seeds that fall to chance, per variant.

The thesis's baseline (SGD lr 0.1, momentum 0.9, weight decay 5e-4, batch 1024, no scheduler,
no augmentation) is trained for a few epochs on several seeds, for the archetype (plain SGD)
and epochwise filtering, under variants of the input pipeline and of the optimiser:

  today      the project's pipeline: pad 28x28 -> 32x32 with black (0), then normalise with
             the mean/std of the padded training images (0.100 / 0.275)
  tv_norm    pad black, then normalise with torchvision's usual MNIST constants (0.1307 / 0.3081),
             i.e. Pad(2) -> ToTensor -> Normalize((0.1307,), (0.3081,))
  pad_mean   normalise, then pad with 0 = pad at the mean (border pixels set to round(0.1307*255)
             = 33, stats of the unpadded 28x28 images)
  no_norm    pad black, ToTensor only: pixels in [0, 1], no normalisation
  lr0.05     today's pipeline, learning rate 0.05 (sanity contrast)
  mom0       today's pipeline, momentum 0 (sanity contrast)
  kaiming    today's pipeline, Kaiming-normal (fan_in, ReLU) weights and zero biases instead
             of PyTorch's default init (which is the same in torch 1.7.1, the thesis's version)

Every variant is applied from outside ``src/``: data variants are ImageDatasets built from
the project's loader, the others are config overrides or a re-initialisation of the model
(``build_model`` is wrapped in this script only). A run is stopped early once its test
accuracy has been at chance (within 5% of the way from 1/10 to 1, i.e. <= 0.145) for two
consecutive epochs; it counts as collapsed when its last epoch is at chance.

    python bench/baseline_collapse.py                       # the default table (~20 min, 1 core)
    python bench/baseline_collapse.py --seeds 4-7 --json b.json   # four more seeds
    python bench/baseline_collapse.py --table-from a.json b.json  # one table from recorded rows
    python bench/baseline_collapse.py --trace 0,1               # loss per step, first 60 steps
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

from assist import api
from assist.data.base import ImageDataset, channel_stats
from assist.events import Callback

CHANCE_LIMIT = 0.1 + 0.05 * 0.9          # assist.metrics.collapse's margin for 10 classes
BASE = dict(dataset="mnist", model="lenet", batch_size=1024, learning_rate=0.1, momentum=0.9,
            weight_decay=5e-4, lr_scheduler="none", data_augmentation=False, num_threads=1,
            train_eval_subset=1000)   # train accuracy on 1000 samples: the test accuracy decides
STRATEGIES = {"archetype": {}, "epochwise": {"epoch_filtering": True}}
VARIANTS = ("today", "tv_norm", "pad_mean", "no_norm", "lr0.05", "mom0", "kaiming")


def data_variant(base: ImageDataset, variant: str) -> ImageDataset:
    if variant == "tv_norm":
        return dataclasses.replace(base, mean=(0.1307,), std=(0.3081,))
    if variant == "no_norm":
        return dataclasses.replace(base, mean=(0.0,), std=(1.0,))
    if variant == "pad_mean":
        inner = base.train_images[:, :, 2:30, 2:30]
        mean, std = channel_stats(inner)
        fill = int(round(mean[0] * 255))

        def refill(images: torch.Tensor) -> torch.Tensor:
            out = torch.full_like(images, fill)
            out[:, :, 2:30, 2:30] = images[:, :, 2:30, 2:30]
            return out

        return dataclasses.replace(base, train_images=refill(base.train_images),
                                   test_images=refill(base.test_images), mean=mean, std=std)
    return base


def config_overrides(variant: str) -> dict:
    return {"lr0.05": {"learning_rate": 0.05}, "mom0": {"momentum": 0.0}}.get(variant, {})


def kaiming_init(model: torch.nn.Module) -> torch.nn.Module:
    with torch.random.fork_rng(devices=[]):
        for module in model.modules():
            if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
                torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                torch.nn.init.zeros_(module.bias)
    return model


class StepTrace(Callback):
    """Per optimizer step of the first epoch: the batch loss, and on 1000 fixed training images
    the share of dead units (zero for every image) after conv2/fc1/fc2 and the logit spread."""

    def __init__(self, steps: int) -> None:
        self.steps, self.rows = steps, []
        self.probe = torch.arange(0, 60000, 60)

    def on_step_end(self, trainer, **info):
        if trainer.state.total_steps > self.steps:
            return
        import torch.nn.functional as F
        m = trainer.model
        m.eval()
        with torch.no_grad():
            x, _ = trainer.train_eval_data.batch(self.probe)
            c2 = F.relu(m.conv2(F.max_pool2d(F.relu(m.conv1(x)), 2)))
            f1 = F.relu(m.fc1(F.max_pool2d(c2, 2).flatten(1)))
            f2 = F.relu(m.fc2(f1))
            dead = lambda h: float((h.amax((2, 3)) if h.dim() == 4 else h).amax(0).le(0).float().mean())  # noqa: E731
            self.rows.append(dict(step=trainer.state.total_steps, loss=float(info["loss"]), dead_conv2=dead(c2),
                                  dead_fc1=dead(f1), dead_fc2=dead(f2), logit_sd=float(m.fc3(f2).std(0).mean())))
        m.train()


class StopWhenCollapsed(Callback):
    """Ends a run after two consecutive epochs at chance (test accuracy <= CHANCE_LIMIT)."""

    def on_epoch_end(self, trainer, **info):
        accs = [row["test_accuracy"] for row in trainer.state.history]
        if len(accs) >= 2 and max(accs[-2:]) <= CHANCE_LIMIT:
            trainer.state.status, trainer.state.reason = "stopped", "collapsed for 2 epochs"


def run_one(base: ImageDataset, variant: str, strategy: str, seed: int, epochs: int, data_dir: str,
            stop: bool = True) -> dict:
    config = {**BASE, **STRATEGIES[strategy], **config_overrides(variant), "rng_seed": seed,
              "epochs": epochs, "data_dir": data_dir}
    data = data_variant(base, variant)
    model = None
    if variant == "kaiming":
        from assist.models import build_model
        model = kaiming_init(build_model(api.make_config(config), data))
    callbacks = [StopWhenCollapsed()] if stop else []
    started = time.perf_counter()
    if model is None:
        result = api.train(config, data=data, callbacks=callbacks)
    else:  # the project's Trainer with a re-initialised model (api.train builds its own)
        from assist.engine.trainer import Trainer
        cfg = api.make_config(config)
        api.apply_threads(cfg)
        trainer = Trainer(cfg, data, model=model, callbacks=callbacks)
        result = api.RunResult(config=cfg, state=trainer.fit(), summary={}, path=None)
    seconds = time.perf_counter() - started
    accs = [round(float(row["test_accuracy"]), 4) for row in result.history]
    epoch_s = [round(float(row["epoch_time_s"]), 1) for row in result.history]
    return dict(variant=variant, strategy=strategy, seed=seed, test_accuracy=accs, epoch_time_s=epoch_s,
                accepted=[int(row.get("accepted", 0)) for row in result.history],
                collapsed=bool(accs) and accs[-1] <= CHANCE_LIMIT, status=result.state.status,
                seconds=round(seconds, 1))


def trace(base: ImageDataset, variant: str, strategy: str, seeds: list[int], data_dir: str) -> int:
    for seed in seeds:
        config = {**BASE, **STRATEGIES[strategy], **config_overrides(variant), "rng_seed": seed, "epochs": 1,
                  "data_dir": data_dir}
        probe = StepTrace(60)
        result = api.train(config, data=data_variant(base, variant), callbacks=[probe])
        rows = probe.rows
        print(f"{variant} {strategy} seed {seed}: test accuracy after epoch 1 "
              f"{result.history[-1]['test_accuracy']:.4f}; max step loss {max(r['loss'] for r in rows):.2f}")
        for key, fmt in (("loss", "{:.2f}"), ("dead_conv2", "{:.2f}"), ("dead_fc2", "{:.2f}"), ("logit_sd", "{:.2g}")):
            print(f"  {key:10s} " + " ".join(fmt.format(r[key]) for r in rows), flush=True)
    return 0


def parse_seeds(text: str) -> list[int]:
    if "-" in text:
        a, b = text.split("-")
        return list(range(int(a), int(b) + 1))
    return [int(s) for s in text.split(",")]


def table(rows: list[dict]) -> str:
    lines = ["| variant | strategy | collapsed / tried | final test accuracy per seed (epochs run) |",
             "|---|---|---|---|"]
    keys = list(dict.fromkeys((r["variant"], r["strategy"]) for r in rows))
    for variant, strategy in keys:
        group = [r for r in rows if r["variant"] == variant and r["strategy"] == strategy]
        cells = ", ".join(f"s{r['seed']}: {r['test_accuracy'][-1]:.3f}" + ("*" if r["collapsed"] else "")
                          + f" ({len(r['test_accuracy'])})" for r in group)
        lines.append(f"| {variant} | {strategy} | {sum(r['collapsed'] for r in group)} / {len(group)} | {cells} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", default="today,pad_mean,lr0.05")
    parser.add_argument("--strategies", default="archetype,epochwise")
    parser.add_argument("--seeds", default="0-3")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--data-dir", default="/work/shared/data")
    parser.add_argument("--no-stop", action="store_true", help="run every epoch, even when collapsed")
    parser.add_argument("--trace", default=None, metavar="SEEDS",
                        help="instead: loss per step over the first 60 steps of epoch 1 for these seeds "
                             "(first variant and strategy), and the test accuracy after epoch 1")
    parser.add_argument("--table-from", nargs="+", default=None, metavar="JSON",
                        help="instead: print the table of rows recorded with --json")
    parser.add_argument("--json", default=None, help="also write the rows here")
    args = parser.parse_args(argv)
    if args.table_from:
        recorded = [row for path in args.table_from for row in json.loads(Path(path).read_text())]
        rows = list({(r["variant"], r["strategy"], r["seed"]): r for r in recorded}.values())  # a rerun replaces
        print(table(rows))
        return 0
    variants = args.variants.split(",")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    strategies = args.strategies.split(",")
    seeds = parse_seeds(args.seeds)
    torch.set_num_threads(1)
    base = api.load_data(api.make_config({**BASE, "data_dir": args.data_dir, "epochs": 1}))
    print(f"data: padded mean {base.mean[0]:.4f}, std {base.std[0]:.4f}; collapsed = test accuracy "
          f"<= {CHANCE_LIMIT:.3f}; runs stop after 2 epochs at chance", flush=True)
    if args.trace:
        return trace(base, variants[0], strategies[0], parse_seeds(args.trace), args.data_dir)
    rows, started = [], time.perf_counter()
    for variant in variants:
        for strategy in strategies:
            for seed in seeds:
                row = run_one(base, variant, strategy, seed, args.epochs, args.data_dir, stop=not args.no_stop)
                rows.append(row)
                print(f"{variant:9s} {strategy:10s} seed {seed}: test acc {row['test_accuracy']} "
                      f"accepted {row['accepted']} epoch s {row['epoch_time_s']} "
                      f"{'COLLAPSED' if row['collapsed'] else ''}", flush=True)
                if args.json:
                    Path(args.json).write_text(json.dumps(rows, indent=1))
    total = time.perf_counter() - started
    print()
    print(table(rows))
    print(f"\n{len(rows)} runs, up to {args.epochs} epochs each, in {total:.0f} s "
          f"({total / max(sum(len(r['test_accuracy']) for r in rows), 1):.1f} s per epoch); "
          f"command: python bench/baseline_collapse.py {' '.join(argv if argv is not None else sys.argv[1:])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
