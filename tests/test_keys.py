"""`assist keys`: every key from the schemas, with type, default, meaning and the strategies
that take it; the helps of train and compare say their different run sizes."""

import pytest

from assist.cli import COMPARE_DEFAULTS, main
from assist.config import TrainConfig, config_default
from assist.keys import key_infos, type_text
from assist.strategies import STRATEGIES


def run(args, capsys):
    try:
        main(args)
        code = 0
    except SystemExit as stop:
        code = stop.code or 0
    out, err = capsys.readouterr()
    return code, out, err


def test_every_key_is_listed_with_a_meaning(capsys):
    code, out, _ = run(["keys"], capsys)
    assert code == 0
    shown = {line.split("  (")[0] for line in out.splitlines() if "  (" in line and not line.startswith(" ")}
    assert set(TrainConfig.model_fields) <= shown
    listed = {info.key: info for info in key_infos()}
    assert shown == set(listed)
    options = {f"strategy_options.{option}" for name in STRATEGIES.names()
               for option in (STRATEGIES.resolve(name).Params.model_fields.get("strategy_options").annotation.model_fields
                              if "strategy_options" in STRATEGIES.resolve(name).Params.model_fields else {})}
    assert options and options <= set(listed)
    missing = sorted(key for key, info in listed.items() if info.meaning == "(no description)")
    assert not missing, f"give these fields a description (it is what `assist keys` shows): {missing}"
    assert "presets (strategy=NAME" in out and "max_loss (batchwise)" in out


def test_which_strategy_takes_which_key_comes_from_the_schemas():
    infos = key_infos()
    by_key = {}
    for info in infos:
        by_key.setdefault(info.key, []).append(info)
    assert by_key["select_k"][0].taken_by == ("batchwise", "epoch_batchwise", "epochwise")
    assert by_key["epoch_select_k"][0].taken_by == ("epoch_batchwise",)
    assert by_key["learning_rate"][0].taken_by is None          # a key of every run
    assert by_key["strategy"][0].chooses and by_key["batch_filtering"][0].chooses
    # the same option name with two defaults: listed once per default, with its own strategy
    fractions = {(i.default, i.taken_by) for i in by_key["strategy_options.fraction"]}
    assert fractions == {("0.1", ("grad_norm",)), ("0.5", ("random_subset",)), ("0.5", ("rs2",))}
    # every listed taker holds the key in its schema, and every schema's keys are listed
    for info in infos:
        for name in info.taken_by or ():
            fields = STRATEGIES.resolve(name).Params.model_fields
            if info.key.startswith("strategy_options."):
                assert info.key.split(".", 1)[1] in fields["strategy_options"].annotation.model_fields
            else:
                assert info.key in fields, (info.key, name)
    for name in STRATEGIES.names():
        for key in STRATEGIES.resolve(name).Params.model_fields:
            assert name in by_key[key][0].taken_by, (key, name)


def test_types_and_defaults_read_as_typed(capsys):
    infos = {info.key: info for info in key_infos()}
    assert (infos["epochs"].type, infos["epochs"].default) == ("int > 0", str(config_default("epochs")))
    assert infos["momentum"].type == "float >= 0, < 1"
    assert infos["accumulation_batch_size"].type == "int | auto | null"
    assert infos["filter"].type == "hard|soft|none" and infos["filter"].default == "hard"
    assert infos["trackers"].type == "list of tensorboard|wandb|mlflow" and infos["trackers"].default == "[]"
    assert infos["download"].default == "false" and infos["data_dir"].default == "null"
    assert type_text(dict[str, int]) == "mapping"


def test_a_pattern_picks_keys_by_name_glob_or_strategy(capsys):
    code, out, _ = run(["keys", "infobatch"], capsys)
    assert code == 0 and "strategy_options.ratio" in out and "strategy_options.delta" in out
    assert "select_k" not in out and "learning_rate" not in out
    code, out, _ = run(["keys", "select_p*"], capsys)
    assert [line.split()[0] for line in out.splitlines() if line and not line.startswith((" ", "=="))] == [
        "select_p", "select_p_end", "select_p_schedule"]
    code, out, _ = run(["keys", "max_loss"], capsys)   # a preset: the keys of its strategy (batchwise)
    assert "\nselect_k  (" in out and "\noverflow  (" in out and "\nepoch_select_k  (" not in out
    code, out, _ = run(["keys", "learning_rat"], capsys)
    assert "learning_rate  (float > 0)  default: 0.05" in out and "min_learning_rate" in out


def test_an_unknown_pattern_is_one_line(capsys):
    code, out, err = run(["keys", "no_such_key"], capsys)
    assert code == 2 and out == ""
    assert err.strip() == "assist: error: keys: no key matches 'no_such_key'; `assist keys` lists them all"


@pytest.mark.parametrize("command", ["train", "compare"])
def test_train_and_compare_say_their_run_sizes(command, capsys):
    code, out, _ = run([command, "--help"], capsys)
    text = " ".join(out.split())
    train_size = f"{config_default('epochs')} epochs at batch {config_default('batch_size')}"
    compare_size = f"{COMPARE_DEFAULTS['epochs']} epochs at batch {COMPARE_DEFAULTS['batch_size']}"
    assert code == 0 and "assist keys" in text and train_size in text and compare_size in text
    assert train_size != compare_size   # should they be aligned one day, this test and the helps go
