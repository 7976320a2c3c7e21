"""Generate plausible run directories without training, for tests and the report benchmark.

The curves are shaped like real ones (accuracy rising, losses falling, filtering strategies
scoring more samples and accepting fewer) but are synthetic: they exercise the report, they
say nothing about the strategies. Every random draw comes from one torch.Generator.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Union

import torch
import yaml

BASE_CONFIG: dict[str, Any] = {
    "dataset": "mnist", "data_dir": "/data", "download": False, "num_classes": None,
    "samples_per_class": None, "model": "lenet", "epochs": 5, "batch_size": 64,
    "optimizer": "sgd", "learning_rate": 0.05, "momentum": 0.9, "nesterov": False,
    "weight_decay": 0.0005, "amsgrad": False, "lr_scheduler": "none", "gamma": None,
    "milestone_every": 30, "data_augmentation": False, "augmentation_recipe": "thesis",
    "epoch_filter_augmentation": "fresh",
    "rng_seed": 0, "device": "cpu", "strategy": "archetype", "epoch_filtering": False,
    "batch_filtering": False, "batch_accumulation": True, "accumulation_batch_size": None,
    "filter": "hard", "soft_margin": 0.1, "selector": None, "select_k": None, "select_q": 0.5,
    "select_p": 2.0, "select_buckets": 2, "fill_random": False, "overflow": "discard",
    "starved_epoch": "wait", "scoring_mode": "eval", "strategy_options": {},
    "train_eval_subset": None, "train_eval_every": 1, "eval_batch_size": 1024,
    "num_threads": None, "checkpoint_every": 1, "trackers": [],
}
MODELS = ("lenet", "fcnet100", "resnet18", "fcnet1000", "dla")
DEFAULT_VARIANTS = ("archetype", "epochwise", "batchwise", "epoch_batchwise")
_FLAGS = {"archetype": (False, False), "epochwise": (True, False),
          "batchwise": (False, True), "epoch_batchwise": (True, True)}
TRAIN_SIZE = 6000

Variant = Union[str, Mapping[str, Any]]


def _variant_config(variant: Variant) -> dict[str, Any]:
    values = {"strategy": variant} if isinstance(variant, str) else dict(variant)
    name = values.setdefault("strategy", "archetype")
    if name in _FLAGS:
        values.setdefault("epoch_filtering", _FLAGS[name][0])
        values.setdefault("batch_filtering", _FLAGS[name][1])
    return values


def _curves(config: Mapping[str, Any], epochs: int, gen: torch.Generator) -> list[dict[str, Any]]:
    """Per-epoch metric rows for one run, vectorised over epochs."""
    name = config["strategy"]
    epoch_f, batch_f = bool(config.get("epoch_filtering")), bool(config.get("batch_filtering"))
    e = torch.arange(1, epochs + 1, dtype=torch.float64)
    noise = lambda scale: 1 + scale * (torch.rand(epochs, generator=gen, dtype=torch.float64) - 0.5)
    plateau = 0.995 - 0.02 * epoch_f - 0.005 * batch_f - 0.01 * float(torch.rand(1, generator=gen))
    tau = max(1.0, epochs / 6) * (1 + float(torch.rand(1, generator=gen)))
    train_acc = (plateau - (plateau - 0.1) * torch.exp(-e / tau)) * noise(0.004)
    test_acc = train_acc * (0.99 + 0.008 * batch_f) * noise(0.004)
    floor = 0.005 if name == "archetype" else 0.08
    train_loss = (floor + (2.3 - floor) * torch.exp(-e / tau)) * noise(0.05)
    test_loss = train_loss * (4.0 if name == "archetype" else 1.1) * noise(0.05)
    accept = torch.clamp(torch.exp(-e / (2 * tau)), min=0.05) if (epoch_f or batch_f) else torch.ones(epochs)
    scored = TRAIN_SIZE * (batch_f + epoch_f) * torch.ones(epochs)
    trained = TRAIN_SIZE * accept if epoch_f else torch.full((epochs,), float(TRAIN_SIZE))
    epoch_time = (0.8 + 0.3 * (batch_f + epoch_f)) * noise(0.3)
    eval_time = 0.2 * noise(0.2)
    steps = torch.ceil(trained / config["batch_size"])
    rows = []
    for i in range(epochs):  # assembling dicts; the numbers above are already computed
        row = {
            "epoch": i + 1, "wall_clock_s": float((epoch_time + eval_time)[: i + 1].sum()),
            "train_time_s": float(epoch_time[: i + 1].sum()), "epoch_time_s": float(epoch_time[i]),
            "steps": int(steps[i]), "total_steps": int(steps[: i + 1].sum()),
            "samples_scored": int(scored[i]), "samples_trained": int(trained[i]),
            "cum_samples_scored": int(scored[: i + 1].sum()),
            "cum_samples_trained": int(trained[: i + 1].sum()),
            "learning_rate": config["learning_rate"],
            "train_accuracy": float(train_acc[i].clamp(max=1.0)),
            "test_accuracy": float(test_acc[i].clamp(max=1.0)),
            # As the engine logs them: text and flags beside the numbers, and an acceptance
            # ratio of 1.0 for strategies that accept everything.
            "rng_seed": config["rng_seed"], "strategy": name, "augmentation": "none", "starved": False,
            "raw_batches_per_step": None, "overflow_discarded": None, "acceptance_ratio": 1.0,
            "process_rss_mb": 512.0, "cpu_percent": 180.0, "cpu_threads": 2,
        }
        for split, loss in (("train", train_loss[i]), ("test", test_loss[i])):
            mean = float(loss)
            row.update({f"{split}_loss_mean": mean, f"{split}_loss_best": mean * 1e-3,
                        f"{split}_loss_worst": mean * 12 + 2, f"{split}_loss_q50": mean * 0.4,
                        f"{split}_loss_q90": mean * float(1.8 + 0.4 * torch.rand(1, generator=gen)), f"{split}_loss_q99": mean * 6})
        if batch_f and config.get("batch_accumulation", True):
            ratio = float(accept[i])
            row.update({"raw_batches_per_step": 1 / ratio, "acceptance_ratio": ratio,
                        "overflow_discarded": int(config["batch_size"] * (1 - ratio) * steps[i] * 0.3)})
        rows.append(row)
    return rows


def write_run(path: Path, config: Mapping[str, Any], rows: list[dict[str, Any]], *,
              status: Optional[str] = "completed", reason: Optional[str] = None) -> Path:
    """Write one run directory in the format `assist train` uses."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.yaml").write_text(yaml.safe_dump(dict(config), sort_keys=False))
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if status is not None:
        last = rows[-1] if rows else {}
        summary = {"status": status, "reason": reason, "epochs_completed": len(rows),
                   "epochs": config["epochs"], "wall_clock_s": last.get("wall_clock_s", 0.0),
                   "final": {k: v for k, v in last.items() if k != "epoch"},
                   "rng_seed": config["rng_seed"], "strategy": config["strategy"],
                   "run_id": path.name}
        (path / "summary.json").write_text(json.dumps(summary, indent=2))
    return path


def generate_runs(root: str | Path, *, groups: int = 1, variants: Iterable[Variant] = DEFAULT_VARIANTS,
                  seeds: Iterable[int] = (0, 1), epochs: int = 5,
                  generator: Optional[torch.Generator] = None,
                  overrides: Optional[Mapping[str, Any]] = None) -> list[Path]:
    """Write ``groups x variants x seeds`` completed runs under ``root``; return their paths.

    Group g uses model MODELS[g % 5] and batch size 64 * 2**(g // 5), so groups differ in
    non-strategy keys. ``variants``: strategy names or dicts of strategy-key values.
    ``generator``: the source of all noise (default: a generator seeded with 0)."""
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    root = Path(root)
    paths = []
    for g in range(groups):
        model, batch = MODELS[g % len(MODELS)], 64 * 2 ** (g // len(MODELS))
        for v, variant in enumerate(variants):
            for seed in seeds:
                config = {**BASE_CONFIG, "model": model, "batch_size": batch, "epochs": epochs,
                          "rng_seed": seed, **(overrides or {}), **_variant_config(variant)}
                name = f"g{g:03d}-{model}-bs{batch}/v{v}-{config['strategy']}-seed{seed}"
                paths.append(write_run(root / name, config, _curves(config, epochs, gen)))
    return paths


# --- damage, to test how the report copes with what real sweeps leave behind

def make_incomplete(run: Path, keep_epochs: int, *, truncated_tail: bool = True) -> None:
    """Cut a run after ``keep_epochs`` epochs, as if it crashed while writing the next line."""
    lines = (run / "metrics.jsonl").read_text().splitlines()
    text = "".join(line + "\n" for line in lines[:keep_epochs])
    if truncated_tail and keep_epochs < len(lines):
        text += lines[keep_epochs][: len(lines[keep_epochs]) // 2]
    (run / "metrics.jsonl").write_text(text)
    (run / "summary.json").unlink(missing_ok=True)


def make_failed(run: Path, at_epoch: int, reason: str = "loss became NaN") -> None:
    """Turn a run into one that stopped with status 'failed' after ``at_epoch`` epochs."""
    config = yaml.safe_load((run / "config.yaml").read_text())
    rows = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()][:at_epoch]
    write_run(run, config, rows, status="failed", reason=reason)


def corrupt_line(run: Path, line_number: int) -> None:
    """Overwrite line ``line_number`` (1-based) of metrics.jsonl with garbage."""
    lines = (run / "metrics.jsonl").read_text().splitlines()
    lines[line_number - 1] = '{"epoch": 2, "train_accuracy": 0.9' + "\x00garbage"
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
