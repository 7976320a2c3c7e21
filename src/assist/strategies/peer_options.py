"""Shared pieces of the peer strategies (issue 6): option validation and run-owned seeds.

Each peer strategy declares its ``strategy_options`` as a small pydantic model; a bad
option is reported as ``strategy_options.<key>: <problem>`` so the user sees which key of
the config to fix.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, ValidationError

from assist.config import TrainConfig

Options = TypeVar("Options", bound="StrategyOptions")


class StrategyOptions(BaseModel):
    """Base of every peer strategy's options: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def parse_options(model: type[Options], config: TrainConfig) -> Options:
    """Validate ``config.strategy_options`` against ``model`` with one readable error line."""
    try:
        return model(**(config.strategy_options or {}))
    except ValidationError as error:
        problems = []
        for item in error.errors():
            key = ".".join(str(p) for p in item["loc"]) or "strategy_options"
            if item["type"] == "extra_forbidden":
                valid = ", ".join(model.model_fields) or "none"
                problems.append(f"strategy_options.{key}: unknown option for strategy "
                                f"{config.strategy!r}; valid options: {valid}")
            else:
                message = item["msg"].removeprefix("Value error, ")
                problems.append(f"strategy_options.{key}: {message} (got {item.get('input')!r})")
        raise ValueError("; ".join(problems)) from None


def run_generator(seed: int, stream: int) -> torch.Generator:
    """A CPU generator derived from the run's seed and a stream number private to one
    strategy (streams >= 100 so they never coincide with the trainer's own streams)."""
    state = np.random.SeedSequence([seed, stream]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state) & ((1 << 63) - 1))

