"""The thesis-style comparison table (train, test and test/train ratio per metric)."""

from __future__ import annotations

from typing import Any, Mapping

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


def cost_table(results: Mapping[str, Mapping[str, Any]]) -> str:
    """Per strategy: steps, samples scored and trained, training time, relative to the first row."""
    rows = list(results.items())
    base_time = rows[0][1]["train_time_s"] or 1e-9
    lines = [f"{'strategy':<28}  {'steps':>7}  {'scored':>9}  {'trained':>9}  {'train s':>8}  {'x arch.':>7}"]
    for label, row in rows:
        lines.append(f"{label:<28}  {row['total_steps']:>7}  {row['cum_samples_scored']:>9}  "
                     f"{row['cum_samples_trained']:>9}  {row['train_time_s']:>8.2f}  {row['train_time_s'] / base_time:>7.2f}")
    return "\n".join(lines)
