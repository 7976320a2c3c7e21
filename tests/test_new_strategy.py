"""A new strategy with one option is one file: a plain class of its keys and the strategy,
registered (docs/architecture.md, "Adding a strategy"). Its option is then a flat key like the
thesis's, validated once, and the resolved run is what the trainer receives."""

from __future__ import annotations

import pytest
import torch
from pydantic import Field, model_validator

from assist import api
from assist.config import ConfigError
from assist.engine import trainer as trainer_module
from assist.strategies import STRATEGIES, Selection, Strategy, StrategyParams, register_strategy, strategy_keys
from assist.strategies.resolve import flat_keys
from assist.validation import validate_run

VALIDATIONS: list[int] = []


# --- the whole of the new strategy (what its own file would hold) -------------------------
class EveryNthParams(StrategyParams):
    keep_every: int = Field(default=2, ge=1)   # train on every n-th sample of each raw batch

    @model_validator(mode="after")
    def _count(self) -> "EveryNthParams":
        VALIDATIONS.append(self.keep_every)   # the test's probe: one entry per validation
        return self


class EveryNth(Strategy):
    name = "every_nth"
    Params = EveryNthParams

    def select(self, batch, scores, ctx):
        return Selection(keep=torch.arange(0, len(batch), self.params.keep_every, device=batch.y.device))
# -------------------------------------------------------------------------------------------


@pytest.fixture
def every_nth():
    register_strategy(EveryNth)
    VALIDATIONS.clear()
    yield
    STRATEGIES.unregister("every_nth")


def test_its_option_is_a_flat_key_refused_elsewhere(every_nth):
    assert "keep_every" in flat_keys() and "keep_every" in strategy_keys()
    with pytest.raises(ConfigError, match="keep_every=3: no effect for strategy 'batchwise'"):
        validate_run({"strategy": "batchwise", "keep_every": 3})
    with pytest.raises(ConfigError, match="keep_every: Input should be greater than or equal to 1"):
        validate_run({"strategy": "every_nth", "keep_every": 0})
    with pytest.raises(ConfigError, match="unknown key 'keep_evry' \\(did you mean 'keep_every'\\?\\)"):
        validate_run({"strategy": "every_nth", "keep_evry": 3})


def test_its_option_is_validated_once_and_the_trainer_gets_the_resolved_run(every_nth, toy_data, monkeypatch):
    received = []
    original = trainer_module.Trainer.__init__

    def spy(self, run, *args, **kwargs):
        received.append(run)
        original(self, run, *args, **kwargs)

    monkeypatch.setattr(trainer_module.Trainer, "__init__", spy)
    result = api.train({"strategy": "every_nth", "keep_every": 4, "model": "fcnet16", "epochs": 1,
                        "batch_size": 16, "data_augmentation": False}, data=toy_data)
    assert VALIDATIONS == [4]                 # validate_run, and nothing after it
    assert received == [result.config] and received[0] is result.config
    assert result.config.flat()["keep_every"] == 4 and result.config.options.keep_every == 4
    assert result.history[-1]["acceptance_ratio"] == pytest.approx(0.25, abs=0.05)   # it decided
    assert validate_run(result.config) is result.config and VALIDATIONS == [4]   # a resolved run is final
