"""How long `assist report` takes on a large sweep: 500 runs x 50 epochs by default.

Generates synthetic run directories (assist.report.synthetic), then times each phase of
building the full HTML report (load, tables + figures, HTML, CSV). Prints a table, writes
bench/results/report_scale.json and a Markdown snippet for docs/benchmarks.md.

    python bench/report_scale.py [--groups 50] [--seeds 2] [--epochs 50] [--workers N]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

from assist.report import build_report, load_runs, render_html, write_csv
from assist.report.synthetic import generate_runs

VARIANTS = ("archetype", "epochwise", "batchwise", "epoch_batchwise",
            {"strategy": "batchwise", "filter": "soft"})
TARGET_S = 60.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=50, help="experiments (5 strategies each)")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--workers", type=int, default=None, help="figure processes (default: auto)")
    parser.add_argument("--keep", type=Path, default=None, help="keep runs and report here")
    args = parser.parse_args()

    root = args.keep or Path(tempfile.mkdtemp(prefix="assist-report-bench-"))
    runs_dir, out = root / "runs", root / "report"
    for path in (runs_dir, out):
        shutil.rmtree(path, ignore_errors=True)
    start = time.perf_counter()
    generate_runs(runs_dir, groups=args.groups, variants=VARIANTS, seeds=range(args.seeds),
                  epochs=args.epochs, generator=torch.Generator().manual_seed(0))
    generate_s = time.perf_counter() - start

    phases: dict[str, float] = {}
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    children0 = usage.ru_utime + usage.ru_stime
    cpu0, t0 = time.process_time(), time.perf_counter()
    t = time.perf_counter()
    runset = load_runs(runs_dir, progress=True)
    phases["load runs"] = time.perf_counter() - t
    t = time.perf_counter()
    report = build_report(runset, out, figures=False)
    phases["(tables alone)"] = time.perf_counter() - t
    t = time.perf_counter()
    report = build_report(runset, out, progress=True, workers=args.workers)
    phases["tables + figures"] = time.perf_counter() - t
    t = time.perf_counter()
    html = render_html(report, out / "report.html")
    phases["HTML"] = time.perf_counter() - t
    t = time.perf_counter()
    write_csv(report, out)
    phases["CSV"] = time.perf_counter() - t
    total = time.perf_counter() - t0 - phases["(tables alone)"]  # built again with the figures
    main_cpu = time.process_time() - cpu0
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    worker_cpu = children.ru_utime + children.ru_stime - children0

    figures = len(list((out / "figures").glob("*.png")))
    results = {
        "runs": len(runset), "epochs": args.epochs, "groups": len(report.groups),
        "figures_png": figures, "figures_svg": len(list((out / "figures").glob("*.svg"))),
        "html_mb": round(html.stat().st_size / 2**20, 1),
        "generate_s": round(generate_s, 2),
        "phases_s": {k: round(v, 2) for k, v in phases.items()},
        "total_s": round(total, 2), "target_s": TARGET_S, "within_target": total < TARGET_S,
        "cpu_s": {"main_process": round(main_cpu, 2), "figure_workers": round(worker_cpu, 2)},
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}",
        "load_average": list(os.getloadavg()),
        "date": dt.date.today().isoformat(),
        "command": " ".join(["python bench/report_scale.py", *sys.argv[1:]]),
    }
    print(f"\n{'phase':<20}{'seconds':>10}")
    for name, seconds in phases.items():
        print(f"{name:<20}{seconds:>10.2f}")
    print(f"{'total (report)':<20}{total:>10.2f}   target < {TARGET_S:.0f} s: "
          f"{'yes' if total < TARGET_S else 'NO'}")
    print(f"CPU: {main_cpu:.1f} s main process + {worker_cpu:.1f} s figure workers; "
          f"load average {os.getloadavg()[0]:.1f} (other processes share these cores)")
    print(f"{len(runset)} runs x {args.epochs} epochs, {len(report.groups)} groups, {figures} PNG "
          f"+ {results['figures_svg']} SVG figures, HTML {results['html_mb']} MB "
          f"(generating the runs took {generate_s:.1f} s, not counted)")
    results_dir = Path(__file__).resolve().parent / "results"
    results_dir.mkdir(exist_ok=True)
    (results_dir / "report_scale.json").write_text(json.dumps(results, indent=2) + "\n")
    print("\nMarkdown for docs/benchmarks.md:\n")
    print(f"### Report at scale ({results['date']})\n\n`{results['command'].strip()}` on "
          f"{results['machine']} (load average {results['load_average'][0]:.1f} at the end)\n\n"
          "| phase | seconds |\n|---|---|\n"
          + "".join(f"| {k} | {v:.2f} |\n" for k, v in phases.items())
          + f"| **total** | **{total:.2f}** |\n\n"
          f"{len(runset)} runs x {args.epochs} epochs in {len(report.groups)} groups; "
          f"{figures} PNG + {results['figures_svg']} SVG figures; HTML {results['html_mb']} MB. "
          f"CPU: {main_cpu:.1f} s main + {worker_cpu:.1f} s figure workers. "
          f"(tables alone) is also inside tables + figures, counted once in the total. "
          f"Target: under {TARGET_S:.0f} s.")
    if args.keep is None:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
