"""Config validation: every bad value names its key."""

import pytest

from assist.config import ConfigError, apply_overrides
from assist.strategies import build_strategy
from assist.strategies.filtering import BatchwiseParams
from assist.api import make_config
from assist.validation import twin_config


@pytest.mark.parametrize("values, fragment", [
    ({"batchsize": 3}, "unknown key 'batchsize' (did you mean 'batch_size'?); valid keys: dataset"),
    ({"batch_size": 0}, "batch_size: Input should be greater than 0"),
    ({"batch_size": -4}, "batch_size"),
    ({"epochs": "many"}, "epochs"),
    ({"learning_rate": 0}, "learning_rate"),
    ({"learning_rate": -0.1}, "learning_rate"),
    ({"soft_margin": 1.0}, "soft_margin: must lie in (0, 1)"),
    ({"soft_margin": 0}, "soft_margin"),
    ({"accumulation_batch_size": 0}, "accumulation_batch_size"),
    ({"select_k": 2.5}, "select_k: must be a whole count"),
    ({"optimizer": "rmsprop"}, "optimizer"),
    ({"lr_scheduler": "cyclic"}, "lr_scheduler"),
    ({"strategy": "nope"}, "unknown strategy 'nope'; available: archetype"),
    ({"strategy": "epochwise", "batch_filtering": True}, "conflicts with"),
    ({"nesterov": True, "momentum": 0}, "nesterov needs"),
    ({"num_classes": 0}, "num_classes"),
])
def test_bad_values_name_the_key(values, fragment):
    with pytest.raises(ConfigError) as error:
        make_config(values)
    assert fragment in str(error.value)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("flags, strategy", [
    ((False, False), "archetype"), ((True, False), "epochwise"),
    ((False, True), "batchwise"), ((True, True), "epoch_batchwise"),
])
def test_thesis_flags_select_the_strategy(flags, strategy):
    config = make_config({"epoch_filtering": flags[0], "batch_filtering": flags[1]})
    assert config.strategy == strategy
    assert (config.epoch_filtering, config.batch_filtering) == flags
    assert make_config({"strategy": strategy}).epoch_filtering == flags[0]


def test_overrides_are_typed_from_yaml():
    values = apply_overrides({}, ["batch_size=32", "learning_rate=0.1", "nesterov=true", "gamma=null",
                                  "num_classes=[1, 3]", "strategy_options.ratio=0.3"])
    assert values == {"batch_size": 32, "learning_rate": 0.1, "nesterov": True, "gamma": None,
                      "num_classes": [1, 3], "strategy_options": {"ratio": 0.3}}
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides({}, ["batch_size"])


def test_gamma_defaults_follow_the_scheduler():
    assert make_config({"lr_scheduler": "exponential"}).config.resolved_gamma == 0.995
    assert make_config({"lr_scheduler": "multistep"}).config.resolved_gamma == 0.1
    assert make_config({"lr_scheduler": "multistep", "gamma": 0.5}).config.resolved_gamma == 0.5


def test_twin_resets_strategy_keys_only():
    config = make_config({"batch_filtering": True, "filter": "soft", "soft_margin": 0.3, "batch_size": 12,
                          "rng_seed": 7, "accumulation_batch_size": 48})
    twin = twin_config(config)
    assert twin.strategy == "archetype" and not twin.batch_filtering
    assert twin.filter == BatchwiseParams.model_fields["filter"].default
    assert (twin.batch_size, twin.rng_seed) == (12, 7)


def test_accumulation_batch_size_defaults_to_batch_size():
    assert build_strategy(make_config({"batch_size": 20, "batch_filtering": True})).raw_batch_size() == 20
    run = make_config({"batch_size": 20, "accumulation_batch_size": 50, "batch_filtering": True})
    assert build_strategy(run).raw_batch_size() == 50


def test_archetype_configs_are_canonical():
    """Strategy options have no effect on the archetype: set on one they are an error naming
    them, and a strategic run's twin is the plain archetype of the same parameters."""
    with pytest.raises(ConfigError, match="accumulation_batch_size=128, filter='soft': no effect for strategy "
                                          "'archetype'"):
        make_config({"accumulation_batch_size": 128, "filter": "soft", "batch_size": 12})
    twin = twin_config(make_config({"batch_filtering": True, "accumulation_batch_size": 128, "batch_size": 12}))
    assert twin.model_dump() == make_config({"batch_size": 12}).model_dump()


def test_every_key_is_described_once():
    """``describe_keys`` (what ``assist keys`` lists) names every key with its meaning, and says
    which strategies take a strategy key."""
    from assist.strategies.resolve import describe_keys, flat_keys

    rows = describe_keys()
    assert [row["key"] for row in rows] == list(flat_keys())
    assert [row["key"] for row in rows if not row["meaning"]] == []
    by_key = {row["key"]: row for row in rows}
    assert by_key["select_k"]["strategies"] == ("batchwise", "epoch_batchwise", "epochwise")
    assert by_key["learning_rate"]["strategies"] == () and by_key["learning_rate"]["default"] == 0.05
    assert "infobatch" in by_key["strategy_options"]["strategies"]


def test_a_resolved_run_copied_with_changes_is_resolved_anew():
    run = make_config({"strategy": "batchwise", "select_k": 8, "selector": "top_k", "learning_rate": 0.01})
    copy = run.model_copy(update={"learning_rate": 0.1, "select_k": 4})
    assert (copy.learning_rate, copy.options.select_k, copy.strategy) == (0.1, 4, "batchwise")
    assert run.learning_rate == 0.01
    with pytest.raises(ConfigError, match="selector='top_k', select_k=8.0, fill_random=True: no effect for strategy 'archetype'"):
        run.model_copy(update={"strategy": "archetype", "batch_filtering": False})
