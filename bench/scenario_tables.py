"""Tables, verdicts, figures and the answer of bench/scenarios.py, from its recorded runs.

    python bench/scenario_tables.py [--out-dir bench/results/scenarios]

For each recorded scenario: a summary table (accuracy, balanced accuracy, budget, where the
training went) and the paired verdicts (assist.verdicts) of every method against its archetype
twin and against its RS2 control; per setting a figure of the accuracy difference against the
control with its 95 % interval; and the answer to the benchmark's question: every scenario
where some method beats its random control with 95 % confidence, on accuracy or on time to
the target.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any, Optional

from assist.verdicts import BETTER, PairedVerdict, legend, outcome, paired_verdict, table_rows

SHARES = (("noisy", "flipped labels"), ("rare", "rare classes"), ("duplicate", "copies"))


def mean_share(run: dict[str, Any], kind: str) -> tuple[Optional[float], Optional[float]]:
    """A run's mean share of training on a kind of sample over its epochs, and the data's."""
    values = [r.get(f"trained_{kind}_share") for r in run["history"]]
    values = [v for v in values if v is not None]
    data = run["history"][-1].get(f"data_{kind}_share")
    return (statistics.fmean(values) if values else None), data


def verdicts(runs: list[dict[str, Any]], methods: list[str]) -> list[PairedVerdict]:
    by = {(r["label"], r["seed"]): outcome(r["history"]) for r in runs}
    seeds = sorted({r["seed"] for r in runs})
    archetypes = {s: by[("archetype", s)] for s in seeds if ("archetype", s) in by}
    found = []
    for method in methods:
        mine = {s: by[(method, s)] for s in seeds if (method, s) in by}
        control = {s: by[(f"rs2 @ {method}", s)] for s in seeds if (f"rs2 @ {method}", s) in by}
        found.append(paired_verdict(method, "archetype", mine, archetypes, archetypes))
        found.append(paired_verdict(method, "rs2 control", mine, control, archetypes))
    return found


def fmt(value: Optional[float], pattern: str = ".2f", scale: float = 1.0) -> str:
    return "–" if value is None else format(scale * value, pattern)


def summary_rows(runs: list[dict[str, Any]], labels: list[str], keys: dict[str, Any]) -> list[str]:
    lines = ["| run | final test acc | balanced test acc | seeds below half the archetype's | budget (× arch. "
             "sample-steps) | train s | " + " | ".join(f"training on {name} (data)" for _, name in SHARES) + " |",
             "| --- | ---: | ---: | ---: | ---: | ---: | " + " | ".join("---:" for _ in SHARES) + " |"]
    arch_final = {r["seed"]: r["history"][-1]["test_accuracy"] for r in runs if r["label"] == "archetype"}
    arch = [r for r in runs if r["label"] == "archetype"]
    arch_trained = statistics.fmean(r["history"][-1]["cum_samples_trained"] for r in arch)
    for label in labels:
        group = [r for r in runs if r["label"] == label]
        if not group:
            continue
        acc = [r["history"][-1]["test_accuracy"] for r in group]
        bal = [r["history"][-1].get("test_balanced_accuracy") for r in group]
        trained = statistics.fmean(r["history"][-1]["cum_samples_trained"] for r in group)
        spread = statistics.stdev(acc) if len(acc) > 1 else 0.0
        cells = [label, f"{100 * statistics.fmean(acc):.2f} ± {100 * spread:.2f}%",
                 f"{100 * statistics.fmean(b for b in bal if b is not None):.2f}%" if any(b is not None for b in bal)
                 else "–",
                 str(sum(r["history"][-1]["test_accuracy"] < 0.5 * arch_final[r["seed"]] for r in group)),
                 f"{trained / arch_trained:.2f}",
                 f"{statistics.fmean(r['history'][-1]['train_time_s'] for r in group):.1f}"]
        for kind, _ in SHARES:
            if kind == "rare" and "class_imbalance" not in keys:   # rarity from a scenario only (engine/exposure.py)
                cells.append("–")
                continue
            shares = [mean_share(r, kind) for r in group]
            ours = [s for s, _ in shares if s is not None]
            data = shares[0][1]
            cells.append("–" if not ours else f"{100 * statistics.fmean(ours):.1f}% ({100 * data:.1f}%)")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def scenario_markdown(record: dict[str, Any], methods: list[str]) -> tuple[str, list[PairedVerdict]]:
    runs = record["runs"]
    labels = ["archetype"] + methods + [f"rs2 @ {m}" for m in methods]
    found = verdicts(runs, methods)
    load = record["load_average"]
    keys = ", ".join(f"{k}={v}" for k, v in record["scenario_keys"].items()) or "no scenario keys"
    n = runs[0]["num_train"]
    lines = [f"#### {record['setting']} / {record['scenario']} ({keys})", "",
             f"{n:,} training samples, test on {record['test_subset']:,}; {len({r['seed'] for r in runs})} seeds; "
             f"{len(runs)} runs in {record['elapsed_s'] / 60:.1f} min; load average {load['start'][0]:.1f} at start, "
             f"{load['end'][0]:.1f} at end; {record['date']}.", ""]
    lines += summary_rows(runs, labels, record["scenario_keys"])
    lines += ["", "| strategy | against | seeds | test accuracy | verdict | s to target | verdict | passes to target "
              "| verdict |", "| --- | --- | ---: | ---: | --- | ---: | --- | ---: | --- |"]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(found)]
    return "\n".join(lines), found


def wins(found: list[PairedVerdict]) -> list[str]:
    """The methods that beat their RS2 control on accuracy or on time to target."""
    out = []
    for v in found:
        if v.against != "rs2 control":
            continue
        measures = [name for name in ("accuracy", "seconds") if v.of(name).verdict == BETTER]
        if measures:
            named = ("accuracy" if m == "accuracy" else "time to target" for m in measures)
            out.append(f"{v.strategy} ({' and '.join(named)})")
    return out


def figure(setting: str, results: dict[str, list[PairedVerdict]], methods: list[str], path: Path) -> None:
    """Accuracy difference against the RS2 control, per scenario and method, with its interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios = list(results)
    fig, ax = plt.subplots(figsize=(11, 4.2))
    width = 0.8 / len(methods)
    for k, method in enumerate(methods):
        xs, ys, lows, highs = [], [], [], []
        for i, scenario in enumerate(scenarios):
            v = next(v for v in results[scenario] if v.strategy == method and v.against == "rs2 control")
            if v.accuracy.mean is None:
                continue
            xs.append(i - 0.4 + (k + 0.5) * width)
            ys.append(100 * v.accuracy.mean)
            lows.append(100 * (v.accuracy.mean - v.accuracy.low))
            highs.append(100 * (v.accuracy.high - v.accuracy.mean))
        ax.bar(xs, ys, width * 0.9, yerr=[lows, highs], capsize=2, label=method)
    ax.axhline(0, color="black", linewidth=0.8)
    bottom, top = ax.get_ylim()
    ax.set_ylim(max(bottom, -100), min(top, 100))   # a difference of accuracies lies within ±100 points
    ax.set_xticks(range(len(scenarios)), scenarios)
    ax.set_ylabel("test accuracy − RS2 control (points)")
    ax.set_title(f"{setting}: each method against RS2 at its own budget (mean over seeds, 95% interval)")
    ax.legend(ncol=3, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_tables(out: Path, settings: list[str], scenarios: list[str]) -> str:
    from scenarios import METHODS   # noqa: E402  (beside this file)

    methods = list(METHODS)
    parts, answer, everything = [legend(), ""], [], []
    for setting in settings:
        results: dict[str, list[PairedVerdict]] = {}
        for scenario in scenarios:
            path = out / f"{setting}-{scenario}.json"
            if not path.is_file():
                continue
            text, found = scenario_markdown(json.loads(path.read_text()), methods)
            parts += [text, ""]
            results[scenario] = found
            everything.append(found)
            answer.append(f"- {setting} / {scenario}: " + (", ".join(wins(found)) or "no method beats its RS2 control"))
        if results:
            png = out / f"scenarios_{setting}.png"
            figure(setting, results, methods, png)
            parts += [f"Figure: `{png}`.", ""]
    judged = sum(1 for found in everything for v in found if v.against == "rs2 control"
                 for m in ("accuracy", "seconds") if not v.of(m).verdict.startswith("cannot"))
    parts += ["#### Where some method beats its random control with 95% confidence", ""] + answer
    parts += ["", f"{judged} comparisons with the RS2 control could be judged (accuracy, and time to target where "
                  f"3 pairs reached it); at 95% each, about {judged / 40:.1f} of them would read 'better' by chance "
                  "alone."]
    text = "\n".join(parts)
    (out / "scenarios.md").write_text(text + "\n")
    print(text)
    return text


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from scenarios import SCENARIOS, SETTINGS   # noqa: E402

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", default="bench/results/scenarios")
    args = parser.parse_args()
    write_tables(Path(args.out_dir), list(SETTINGS), list(SCENARIOS))
