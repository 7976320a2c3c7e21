"""The thesis-style comparison table (train, test and test/train ratio per metric)."""

from __future__ import annotations

import math
from typing import Any, Mapping, Optional

TABLE_METRICS = (("accuracy", "accuracy"), ("mean loss", "loss_mean"), ("q=0.9 loss", "loss_q90"),
                 ("worst loss", "loss_worst"))


def _cell(value: Any, percent: bool) -> str:
    if value is None:
        return "-"
    return f"{100 * value:.2f}%" if percent else f"{value:.4f}"


def comparison_table(finals: Mapping[str, Mapping[str, Any]]) -> str:
    """Rows per metric and strategy (archetype first as given), columns Train, Test, Ratio."""
    width = max([len("strategy"), *(len(label) for label in finals)])
    lines = [f"{'metric':<11}  {'strategy':<{width}}  {'train':>9}  {'test':>9}  {'ratio':>7}"]
    lines.append("-" * len(lines[0]))
    for title, key in TABLE_METRICS:
        for position, (label, row) in enumerate(finals.items()):
            train, test = row.get(f"train_{key}"), row.get(f"test_{key}")
            ratio = test / train if train not in (None, 0) and test is not None else None
            lines.append(f"{title if position == 0 else '':<11}  {label:<{width}}  "
                         f"{_cell(train, key == 'accuracy'):>9}  {_cell(test, key == 'accuracy'):>9}  "
                         f"{'-' if ratio is None else f'{ratio:.3f}':>7}")
    return "\n".join(lines)


def run_cost(history: list[Mapping[str, Any]], train_time_s: float) -> dict[str, Any]:
    """What a run cost: steps, samples scored and trained, sample passes (their sum) and
    training seconds, both including an auxiliary model's (RHO-LOSS's irreducible-loss model,
    ``rho_il_*``) also when its result came from the cache (its recorded time is then added)."""
    scored = sum(int(r.get("samples_scored") or 0) for r in history)
    trained = sum(int(r.get("samples_trained") or 0) for r in history)
    aux = sum(int(r.get("rho_il_samples_scored") or 0) + int(r.get("rho_il_samples_trained") or 0) for r in history)
    cached_time = sum(float(r.get("rho_il_time_s") or 0.0) for r in history if r.get("rho_il_cached"))
    return {"steps": sum(int(r.get("steps") or 0) for r in history), "scored": scored, "trained": trained,
            "aux_passes": aux, "passes": scored + trained + aux, "time_s": train_time_s + cached_time}


def cost_table(costs: Mapping[str, Mapping[str, Any]]) -> str:
    """Per strategy: steps, samples scored and trained, sample passes and training time, and
    both relative to the first row (the archetype)."""
    rows = list(costs.items())
    width = max(len("strategy"), *(len(label) for label, _ in rows))
    base_passes, base_time = rows[0][1]["passes"] or 1, rows[0][1]["time_s"] or 1e-9
    lines = [f"{'strategy':<{width}}  {'steps':>7}  {'scored':>9}  {'trained':>9}  {'passes':>9}  "
             f"{'x arch.':>7}  {'train s':>8}  {'x arch.':>7}"]
    for label, c in rows:
        lines.append(f"{label:<{width}}  {c['steps']:>7}  {c['scored']:>9}  {c['trained']:>9}  {c['passes']:>9}  "
                     f"{c['passes'] / base_passes:>7.2f}  {c['time_s']:>8.2f}  {c['time_s'] / base_time:>7.2f}")
    if any(c["aux_passes"] for _, c in rows):
        lines.append("(passes and seconds include RHO-LOSS's irreducible-loss model, also when it came from the cache)")
    return "\n".join(lines)


def verdict(label: str, accuracy: Optional[float], reference: Optional[float], passes_ratio: float,
            time_ratio: float) -> str:
    """The line read first about a strategy: its test accuracy against its archetype twin's,
    and its sample passes and training time as multiples of the twin's (``assist compare``,
    and each group of ``assist report``)."""
    diff = "" if accuracy is None or reference is None else f" ({100 * (accuracy - reference):+.2f} pt)"
    times = lambda ratio: "an unknown multiple of" if math.isnan(ratio) else f"{ratio:.2f}x"
    return (f"{label}: test accuracy {_cell(accuracy, True)} against the archetype's {_cell(reference, True)}{diff}, "
            f"at {times(passes_ratio)} its sample passes and {times(time_ratio)} its training time")


def headline(finals: Mapping[str, Mapping[str, Any]], costs: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """One line per strategy, read first: test accuracy against the archetype's, and the cost."""
    base, base_cost = finals["archetype"], costs["archetype"]
    lines = []
    for label, final in finals.items():
        if label == "archetype":
            continue
        c = costs[label]
        lines.append(verdict(label, final.get("test_accuracy"), base.get("test_accuracy"),
                             c["passes"] / (base_cost["passes"] or 1), c["time_s"] / (base_cost["time_s"] or 1e-9)))
    return lines
