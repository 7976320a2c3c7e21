"""Throughput of the in-memory BatchPipeline against per-sample augmentation baselines.

Measures images/s for the recipes "none", "light" and "thesis" on random CIFAR-sized uint8 data
(3x32x32), batch 256, for:
  * BatchPipeline: gather + float + vectorised per-sample augmentation + normalise, on --device;
  * torch per-sample loop: the same maths applied one image at a time (Augmentation.apply on a
    batch of 1 with that sample's parameters), then stacked;
  * PIL per-sample: what a DataLoader with torchvision-style transforms does (single process):
    Image.fromarray, flip, Image.transform(AFFINE), pad + crop, ImageEnhance brightness / contrast /
    colour, hue in HSV, to tensor, normalise, stack. Its random draws use Python's `random`, which
    is cheaper than torchvision's per-call torch draws, so the baseline is if anything flattered.

Prints a table and a markdown snippet, and writes the numbers to bench/results/augment_throughput.json.
Run: python bench/augment_throughput.py [--device cpu] [--seconds 1.0]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image, ImageEnhance, ImageOps

from assist.data.augment import index_params
from assist.data.pipeline import BatchPipeline

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
RECIPES = ("none", "light", "thesis")


def pil_batch_fn(recipe: str, images_hwc: np.ndarray, seed: int) -> Callable[[np.ndarray], torch.Tensor]:
    """A per-sample PIL transform pipeline for ``recipe``, returning a function batch(indices)."""
    rng = random.Random(seed)
    mean = torch.tensor(MEAN).view(3, 1, 1)
    std = torch.tensor(STD).view(3, 1, 1)

    def affine(img: Image.Image) -> Image.Image:
        angle = math.radians(rng.uniform(-180, 180))
        scale = rng.uniform(0.9, 1.1)
        tx, ty = round(rng.uniform(-3.2, 3.2)), round(rng.uniform(-3.2, 3.2))
        # PIL wants the inverse map output -> input about the top-left corner; rotate about the centre.
        cx, cy = 16.0, 16.0
        a, b = math.cos(angle) / scale, math.sin(angle) / scale
        c, d = -math.sin(angle) / scale, math.cos(angle) / scale
        ox, oy = cx + tx, cy + ty
        coeffs = (a, b, cx - a * ox - b * oy, c, d, cy - c * ox - d * oy)
        return img.transform((32, 32), Image.Transform.AFFINE, coeffs, resample=Image.Resampling.NEAREST, fillcolor=0)

    def crop(img: Image.Image) -> Image.Image:
        left, top = rng.randint(0, 8), rng.randint(0, 8)
        return ImageOps.expand(img, border=4, fill=0).crop((left, top, left + 32, top + 32))

    def jitter(img: Image.Image) -> Image.Image:
        img = ImageEnhance.Brightness(img).enhance(rng.uniform(0.5, 1.5))
        img = ImageEnhance.Contrast(img).enhance(rng.uniform(0.5, 1.5))
        img = ImageEnhance.Color(img).enhance(rng.uniform(0.5, 1.5))
        hsv = np.array(img.convert("HSV"))
        hsv[..., 0] = (hsv[..., 0].astype(np.int16) + round(rng.uniform(-0.05, 0.05) * 255)) % 256
        return Image.fromarray(hsv, "HSV").convert("RGB")

    def one(i: int) -> torch.Tensor:
        img = Image.fromarray(images_hwc[i])
        if recipe != "none":
            if rng.random() < 0.5:
                img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            if recipe == "thesis":
                img = affine(img)
            img = crop(img)
            if recipe == "thesis":
                img = jitter(img)
        x = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).float() / 255.0
        return (x - mean) / std

    return lambda indices: torch.stack([one(int(i)) for i in indices])


class _PILDataset(torch.utils.data.Dataset):
    """The per-sample PIL pipeline as a Dataset, for a DataLoader with worker processes."""

    def __init__(self, recipe: str, images_hwc: np.ndarray) -> None:
        self.recipe, self.images_hwc = recipe, images_hwc
        self.fn = None

    def __len__(self) -> int:
        return len(self.images_hwc)

    def __getitem__(self, i: int) -> torch.Tensor:
        if self.fn is None:  # one generator per worker process
            info = torch.utils.data.get_worker_info()
            self.fn = pil_batch_fn(self.recipe, self.images_hwc, 1 + (info.id if info else 0))
        return self.fn([i])[0]


def dataloader_fn(recipe: str, images_hwc: np.ndarray, batch: int, workers: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """A DataLoader over the PIL Dataset with ``workers`` processes; each call returns its next batch."""
    loader = torch.utils.data.DataLoader(_PILDataset(recipe, images_hwc), batch_size=batch, shuffle=True,
                                         num_workers=workers, persistent_workers=True, prefetch_factor=4,
                                         generator=torch.Generator().manual_seed(0))
    state = {"it": iter(loader)}

    def next_batch(indices: torch.Tensor) -> torch.Tensor:
        try:
            return next(state["it"])
        except StopIteration:
            state["it"] = iter(loader)
            return next(state["it"])

    return next_batch


def torch_loop_fn(pipe: BatchPipeline, seed: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """The pipeline's own maths, but one image at a time (what a per-sample Dataset would do)."""
    gen = torch.Generator().manual_seed(seed)
    recipe = pipe.augmentation

    def batch(indices: torch.Tensor) -> torch.Tensor:
        params = recipe.sample_params(len(indices), gen)
        out = []
        for row, i in enumerate(indices.tolist()):
            x = pipe.images[i:i + 1].float() / 255.0
            x = recipe.apply(x, index_params(params, torch.tensor([row])))
            out.append((x - pipe.mean) / pipe.std)
        return torch.cat(out)

    return batch


def images_per_second(fn: Callable[[torch.Tensor], torch.Tensor], n: int, batch: int, seconds: float, device: torch.device) -> float:
    """Best of 5 timed windows of about ``seconds`` each, after one warm-up batch (the best, as
    timeit does, because other processes on a shared machine only ever slow a window down)."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    fn(order[:batch])
    sync()
    rates, cursor = [], 0
    for _ in range(5):
        done, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            idx = order[cursor:cursor + batch] if cursor + batch <= n else order[:batch]
            cursor = (cursor + batch) % n
            fn(idx)
            done += batch
            if device.type == "cuda" and done % (batch * 16) == 0:
                sync()
        sync()
        rates.append(done / (time.perf_counter() - start))
    return max(rates)


def cpu_description() -> str:
    """Cores this process may use (taskset narrows them), of how many, and the CPU model."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    model = platform.machine()
    try:
        names = [ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("model name")]
        model = names[0] if names else model
    except OSError:
        pass
    return f"{usable} of {os.cpu_count()} CPU cores ({model})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--num-images", type=int, default=8192)
    parser.add_argument("--seconds", type=float, default=1.0, help="length of each of the 5 timing windows")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "augment_throughput.json"))
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader worker processes of the PIL baseline")
    parser.add_argument("--no-compile", action="store_true", help="skip the compiled pipeline rows")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    load_before = os.getloadavg()[0]  # other processes on the machine skew CPU timings; recorded below
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (args.num_images, 3, 32, 32), dtype=torch.uint8, generator=gen)
    labels = torch.randint(0, 10, (args.num_images,), generator=gen)
    images_hwc = images.permute(0, 2, 3, 1).contiguous().numpy()

    rows = []
    for recipe in RECIPES:
        pipe = BatchPipeline(images, labels, MEAN, STD, augmentation=recipe, device=device)
        pipe_gen = torch.Generator().manual_seed(1)
        methods = [("PIL per-sample (DataLoader-style, 1 process)", pil_batch_fn(recipe, images_hwc, 1), torch.device("cpu"))]
        if recipe != "none":
            cpu_pipe = BatchPipeline(images, labels, MEAN, STD, augmentation=recipe)
            methods.append(("torch per-sample loop (batch of 1)", torch_loop_fn(cpu_pipe, 1), torch.device("cpu")))
        loader_label = f"PIL per-sample in a DataLoader ({args.workers} workers)"
        methods.append((loader_label, dataloader_fn(recipe, images_hwc, args.batch_size, args.workers),
                        torch.device("cpu")))
        methods.append((f"BatchPipeline ({device.type}, vectorised)", lambda idx, p=pipe, g=pipe_gen: p.batch(idx, g)[0], device))
        if recipe != "none" and not args.no_compile:
            compiled = BatchPipeline(images, labels, MEAN, STD, augmentation=recipe, device=device, compiled=True)
            methods.append((f"BatchPipeline ({device.type}, compiled)",
                            lambda idx, p=compiled, g=torch.Generator().manual_seed(1): p.batch(idx, g)[0], device))
        base, loader_rate = None, None
        for method, fn, dev in methods:
            rate = images_per_second(fn, args.num_images, args.batch_size, args.seconds, dev)
            base = base or rate
            loader_rate = rate if method == loader_label else loader_rate
            rows.append({"recipe": recipe, "method": method, "images_per_s": round(rate), "speedup_vs_pil": round(rate / base, 2),
                         "speedup_vs_dataloader": round(rate / loader_rate, 2) if loader_rate else None})
            print(f"{recipe:7s} {method:46s} {rate:12,.0f} img/s  x{rate / base:6.2f}", flush=True)

    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    machine = f"{cpu_description()}, torch {torch.__version__}, {torch.get_num_threads()} threads" + (f", GPU {gpu}" if gpu else "")
    date = datetime.now(timezone.utc).strftime("%a %b %d %H:%M:%S UTC %Y")
    command = f"python bench/augment_throughput.py --device {args.device} --seconds {args.seconds}" + (f" --threads {args.threads}" if args.threads else "")
    load = f"1-min load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after"
    result = {"command": command, "machine": machine, "date": date, "load": load, "batch_size": args.batch_size,
              "image_shape": [3, 32, 32], "device": str(device), "rows": rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")

    print(f"\n### Augmentation throughput (batch {args.batch_size}, 3x32x32 uint8)\n")
    print(f"Command: `{command}`  \nMachine: {machine}  \nDate: {date} ({load})\n")
    print("| recipe | method | images/s | vs PIL, 1 process | vs PIL DataLoader |\n| --- | --- | ---: | ---: | ---: |")
    for r in rows:
        loader = f"{r['speedup_vs_dataloader']:.2f}x" if r["speedup_vs_dataloader"] else "—"
        print(f"| {r['recipe']} | {r['method']} | {r['images_per_s']:,} | {r['speedup_vs_pil']:.2f}x | {loader} |")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
