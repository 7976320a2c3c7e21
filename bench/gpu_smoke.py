"""GPU smoke test and throughput figures, run as one prepared script on a lent GPU machine.

    python bench/gpu_smoke.py --data-dir DATA --out results.json          (a GPU; ~10 minutes)
    python bench/gpu_smoke.py --data-dir DATA --out r.json --device cpu --quick   (a check here)

1. every registered model: training and inference throughput (images/s, batch 256, 3x32x32,
   10 classes) in fp32, bf16 (autocast), and bf16 + torch.compile (``--compile``);
2. the in-memory augmentation pipeline on the device (thesis recipe, batch 512);
3. short end-to-end runs through the trainer: MNIST/LeNet and CIFAR-10/ResNet-18 for the
   archetype, batchwise filtering, InfoBatch and Selective Backprop (bf16, channels_last),
   with wall-clock per epoch and work counted.
It writes the JSON and a Markdown table beside it (``.md``), after each part, so a machine
taken back mid-run still leaves its figures.
"""

from __future__ import annotations

import argparse
import json
import time
import traceback
from contextlib import nullcontext
from pathlib import Path

import torch

DEVICE = "cuda"


def sync() -> None:
    if DEVICE.startswith("cuda"):
        torch.cuda.synchronize()


def _timed(fn, repeats: int) -> float:
    for _ in range(2):
        fn()
    sync()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync()
    return (time.perf_counter() - start) / repeats


def model_throughput(results: dict, quick: bool, compile_too: bool) -> None:
    from assist.models import create_model, list_models

    batch, repeats = (32, 3) if quick else (256, 20)
    names = ["fcnet16", "lenet"] if quick else list_models()
    modes = ["fp32", "bf16"] + (["bf16+compile"] if compile_too else [])
    for name in names:
        for mode in modes:
            try:
                model = create_model(name, in_channels=3, num_classes=10).to(DEVICE)
                forward = torch.compile(model, dynamic=True) if "compile" in mode else model
                autocast = torch.autocast(torch.device(DEVICE).type, dtype=torch.bfloat16) \
                    if mode.startswith("bf16") else nullcontext()
                opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
                x = torch.randn(batch, 3, 32, 32, device=DEVICE)
                y = torch.randint(0, 10, (batch,), device=DEVICE)

                def step():
                    opt.zero_grad(set_to_none=True)
                    with autocast:
                        logits = forward(x)
                    loss = torch.nn.functional.cross_entropy(logits.float(), y)
                    loss.backward()
                    opt.step()

                def infer():
                    with torch.no_grad(), autocast:
                        forward(x)

                model.train()
                train_ips = batch / _timed(step, repeats)
                model.eval()
                infer_ips = batch / _timed(infer, repeats)
                results["models"].setdefault(name, {})[mode] = {"train_images_per_s": train_ips,
                                                                "inference_images_per_s": infer_ips}
                print(f"{name:10s} {mode:13s} train {train_ips:10.0f} img/s  inference {infer_ips:10.0f} img/s",
                      flush=True)
            except Exception as error:  # noqa: BLE001 - record and go on with the next one
                results["models"].setdefault(name, {})[mode] = {"error": repr(error)}
                traceback.print_exc()


def pipeline_throughput(results: dict, quick: bool) -> None:
    from assist.data.pipeline import BatchPipeline

    count = 5000 if quick else 50000
    images = torch.randint(0, 256, (count, 3, 32, 32), dtype=torch.uint8)
    labels = torch.randint(0, 10, (count,))
    generator = torch.Generator().manual_seed(0)
    for recipe in ("none", "light", "thesis"):
        pipe = BatchPipeline(images, labels, (0.5,) * 3, (0.25,) * 3, augmentation=recipe, device=DEVICE)
        order = torch.randperm(count, generator=generator)
        for i in range(3):
            pipe.batch(order[i * 512:(i + 1) * 512], generator)
        sync()
        start = time.perf_counter()
        rounds = 5 if quick else 50
        for i in range(rounds):
            pipe.batch(order[(i % 9) * 512:((i % 9) + 1) * 512], generator)
        sync()
        ips = rounds * 512 / (time.perf_counter() - start)
        results["pipeline"][recipe] = ips
        print(f"pipeline {recipe:7s} {ips:12.0f} img/s", flush=True)


STRATEGIES = {"archetype": {}, "batchwise": {"accumulation_batch_size": "2x"}, "infobatch": {},
              "selective_backprop": {}}


def runs(results: dict, data_dir: str, quick: bool) -> None:
    from assist.api import load_data, make_config, train

    speed = {"precision": "bf16", "channels_last": True} if DEVICE.startswith("cuda") else {}
    plans = [
        ("mnist", "lenet", dict(epochs=1 if quick else 3, batch_size=128, learning_rate=0.05)),
        ("cifar10", "resnet18", dict(epochs=1 if quick else 2, batch_size=256, learning_rate=0.1)),
    ]
    if quick:
        plans = [(d, "lenet", dict(e, samples_per_class=20)) for d, _, e in plans]
    for dataset, model, extra in plans:
        base = dict(dataset=dataset, model=model, data_dir=data_dir, device=DEVICE, eval_batch_size=2048,
                    **speed, **extra)
        start = time.perf_counter()
        data = load_data(make_config(base))
        load_s = time.perf_counter() - start
        for strategy, options in STRATEGIES.items():
            options = {k: 2 * extra["batch_size"] if v == "2x" else v for k, v in options.items()}
            key = f"{dataset}/{model}/{strategy}"
            try:
                result = train({**base, "strategy": strategy, **options}, data=data)
                rows = [{k: r[k] for k in ("epoch", "steps", "samples_scored", "samples_trained", "train_accuracy",
                                          "test_accuracy", "epoch_time_s", "train_time_s",
                                          "gpu_memory_peak_mb") if k in r} for r in result.history]
                results["runs"][key] = {"load_s": load_s, "epochs": rows}
                for r in rows:
                    print(key, json.dumps(r), flush=True)
            except Exception as error:  # noqa: BLE001
                results["runs"][key] = {"error": repr(error)}
                traceback.print_exc()


def markdown(results: dict) -> str:
    lines = [f"{results['device']}, torch {results['torch']}, {results['date']}", "",
             "| model | mode | train img/s | inference img/s |", "| --- | --- | ---: | ---: |"]
    for name, modes in results["models"].items():
        for mode, figures in modes.items():
            if "error" in figures:
                lines.append(f"| {name} | {mode} | error | {figures['error'][:60]} |")
            else:
                lines.append(f"| {name} | {mode} | {figures['train_images_per_s']:,.0f} | "
                             f"{figures['inference_images_per_s']:,.0f} |")
    lines += ["", "| pipeline | img/s |", "| --- | ---: |"]
    lines += [f"| {recipe} | {ips:,.0f} |" for recipe, ips in results["pipeline"].items()]
    lines += ["", "| run | epochs | s per epoch (train) | samples scored | samples trained | test accuracy |",
              "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for key, run in results["runs"].items():
        rows = run.get("epochs") or []
        if not rows:
            lines.append(f"| {key} | error | {run.get('error', '')[:60]} | | | |")
            continue
        per_epoch = rows[-1]["train_time_s"] / len(rows)
        lines.append(f"| {key} | {len(rows)} | {per_epoch:.2f} | {sum(r['samples_scored'] for r in rows):,} | "
                     f"{sum(r['samples_trained'] for r in rows):,} | {100 * rows[-1]['test_accuracy']:.2f}% |")
    return "\n".join(lines) + "\n"


def main() -> None:
    global DEVICE
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: check the script itself")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile rows")
    args = parser.parse_args()
    DEVICE = args.device
    name = torch.cuda.get_device_name(0) if DEVICE.startswith("cuda") else f"CPU ({torch.get_num_threads()} threads)"
    results = {"device": name, "torch": torch.__version__, "models": {}, "pipeline": {}, "runs": {},
               "date": time.strftime("%Y-%m-%d")}
    print(results["device"], results["torch"], flush=True)
    out = Path(args.out)

    def save() -> None:
        out.write_text(json.dumps(results, indent=2))
        out.with_suffix(".md").write_text(markdown(results))

    model_throughput(results, args.quick, not args.no_compile)
    save()
    pipeline_throughput(results, args.quick)
    save()
    runs(results, args.data_dir, args.quick)
    save()
    print(f"wrote {out} and {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
