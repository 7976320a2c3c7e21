"""GPU smoke test and throughput figures, run as one script on a lent GPU machine.

    python bench/gpu_smoke.py --data-dir DATA --out results.json

1. every registered model: one training step on CUDA, then training and inference
   throughput (images/s, fp32, batch 256, 3x32x32, 10 classes);
2. the in-memory augmentation pipeline on the GPU (thesis recipe, batch 512);
3. short end-to-end runs through the trainer on CUDA: MNIST/LeNet and CIFAR-10/ResNet18,
   archetype beside batchwise filtering, wall-clock per epoch and work counted.
"""

from __future__ import annotations

import argparse
import json
import time
import traceback

import torch


def sync() -> None:
    torch.cuda.synchronize()


def model_throughput(results: dict) -> None:
    from assist.models import create_model, list_models

    for name in list_models():
        try:
            model = create_model(name, in_channels=3, num_classes=10).cuda()
            opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
            x = torch.randn(256, 3, 32, 32, device="cuda")
            y = torch.randint(0, 10, (256,), device="cuda")
            def step():
                opt.zero_grad(set_to_none=True)
                loss = torch.nn.functional.cross_entropy(model(x), y)
                loss.backward()
                opt.step()
                return loss
            for _ in range(3):
                loss = step()
            sync()
            start = time.perf_counter()
            for _ in range(20):
                step()
            sync()
            train_ips = 20 * 256 / (time.perf_counter() - start)
            model.eval()
            with torch.no_grad():
                for _ in range(3):
                    model(x)
                sync()
                start = time.perf_counter()
                for _ in range(20):
                    model(x)
                sync()
            infer_ips = 20 * 256 / (time.perf_counter() - start)
            results["models"][name] = {"finite_loss": bool(torch.isfinite(loss)), "train_images_per_s": train_ips,
                                       "inference_images_per_s": infer_ips}
            print(f"{name:10s} train {train_ips:10.0f} img/s  inference {infer_ips:10.0f} img/s", flush=True)
        except Exception as error:  # noqa: BLE001 - record and go on with the next model
            results["models"][name] = {"error": repr(error)}
            traceback.print_exc()


def pipeline_throughput(results: dict) -> None:
    from assist.data.pipeline import BatchPipeline

    images = torch.randint(0, 256, (50000, 3, 32, 32), dtype=torch.uint8)
    labels = torch.randint(0, 10, (50000,))
    generator = torch.Generator().manual_seed(0)
    for recipe in ("none", "light", "thesis"):
        pipe = BatchPipeline(images, labels, (0.5,) * 3, (0.25,) * 3, augmentation=recipe, device="cuda")
        order = torch.randperm(50000, generator=generator)
        for i in range(3):
            pipe.batch(order[i * 512:(i + 1) * 512], generator)
        sync()
        start = time.perf_counter()
        for i in range(50):
            pipe.batch(order[(i % 90) * 512:((i % 90) + 1) * 512], generator)
        sync()
        ips = 50 * 512 / (time.perf_counter() - start)
        results["pipeline"][recipe] = ips
        print(f"pipeline {recipe:7s} {ips:12.0f} img/s", flush=True)


def runs(results: dict, data_dir: str) -> None:
    from assist.api import load_data, train
    from assist.api import make_config

    plans = [
        ("mnist", "lenet", dict(epochs=3, batch_size=128, learning_rate=0.05), "batch_filtering=accumulate 512"),
        (f"folder:{data_dir}/cifar10-jpeg.tar.gz", "resnet18", dict(epochs=2, batch_size=256, learning_rate=0.1), ""),
    ]
    for dataset, model, extra, _ in plans:
        base = dict(dataset=dataset, model=model, data_dir=data_dir, device="cuda", eval_batch_size=2048, **extra)
        start = time.perf_counter()
        data = load_data(make_config(base))
        load_s = time.perf_counter() - start
        for strategy, options in (("archetype", {}), ("batchwise", {"accumulation_batch_size": 2 * extra["batch_size"]})):
            try:
                result = train({**base, "strategy": strategy, **options}, data=data)
                rows = [{k: r[k] for k in ("epoch", "steps", "samples_scored", "samples_trained", "train_accuracy",
                                          "test_accuracy", "acceptance_ratio", "epoch_time_s", "train_time_s",
                                          "gpu_memory_peak_mb") if k in r} for r in result.history]
                key = f"{dataset.split('/')[-1]}/{model}/{strategy}"
                results["runs"][key] = {"load_s": load_s, "epochs": rows}
                for r in rows:
                    print(key, json.dumps(r), flush=True)
            except Exception as error:  # noqa: BLE001
                results["runs"][f"{dataset}/{model}/{strategy}"] = {"error": repr(error)}
                traceback.print_exc()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    results = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "models": {}, "pipeline": {},
               "runs": {}, "date": time.strftime("%Y-%m-%d")}
    print(results["device"], results["torch"], flush=True)
    for part in (model_throughput, pipeline_throughput):
        part(results)
        json.dump(results, open(args.out, "w"), indent=2)
    runs(results, args.data_dir)
    json.dump(results, open(args.out, "w"), indent=2)


if __name__ == "__main__":
    main()
