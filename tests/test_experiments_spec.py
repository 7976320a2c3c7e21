"""Sweep specs: expansion into runs, archetype twins, identity, naming, and invalid specs."""

from pathlib import Path

import pytest
import yaml

from assist.api import config_hash
from assist.validation import twin_config
from assist.experiments.plan import expand
from assist.experiments.spec import SpecError, load_spec, parse_spec, time_minutes

BASE = {"dataset": "synthetic", "model": "fcnet16", "epochs": 2, "batch_size": 16}


def plan(data: dict) -> list:
    return expand(parse_spec(data))


def test_grid_experiments_and_seeds_expand_with_shared_twins_run_once():
    runs = plan({
        "base": BASE,
        "grid": {"learning_rate": [0.1, 0.01]},
        "experiments": {
            "none": {},
            "epochwise": {"epoch_filtering": True},
            "batchwise": {"batch_filtering": True, "accumulation_batch_size": [16, 32]},
        },
        "seeds": [0, 1],
    })
    strategic = [r for r in runs if r.role == "strategic"]
    archetypes = [r for r in runs if r.role == "archetype"]
    # per (lr, seed): epochwise + 2 batchwise variants; the twins and "none" coincide
    assert len(strategic) == 2 * 2 * 3
    assert len(archetypes) == 2 * 2
    assert len({r.run_id for r in runs}) == len(runs)
    by_id = {r.run_id: r for r in runs}
    for run in strategic:
        twin = by_id[run.twin_id]
        assert twin.config == twin_config(run.config)
        assert twin.config.rng_seed == run.config.rng_seed
        assert twin.config.learning_rate == run.config.learning_rate
        assert run.run_id == config_hash(run.config)
    shared = archetypes[0]
    assert set(shared.experiments) == {"none", "epochwise", "batchwise"}
    acc = sorted({r.config.accumulation_batch_size for r in strategic if r.config.strategy == "batchwise"})
    assert acc == [16, 32]


def test_thesis_style_grid_over_filter_flags_dedupes_the_archetype_corner():
    base = {k: v for k, v in BASE.items() if k != "model"}
    runs = plan({"base": base, "grid": {"model": ["fcnet16", "fcnet32"], "epoch_filtering": [False, True],
                                        "batch_filtering": [False, True]}, "seeds": [0, 1]})
    assert len(runs) == 2 * 4 * 2  # the (False, False) corner is every other run's twin
    strategies = sorted({r.config.strategy for r in runs})
    assert strategies == ["archetype", "batchwise", "epoch_batchwise", "epochwise"]


def test_twins_can_be_switched_off():
    runs = plan({"base": BASE, "experiments": {"bw": {"batch_filtering": True}}, "twins": False})
    assert [r.config.strategy for r in runs] == ["batchwise"]


def test_names_show_varying_parameters_and_end_with_the_hash():
    runs = plan({"base": BASE, "grid": {"learning_rate": [0.1, 0.01]},
                 "experiments": {"bw": {"batch_filtering": True, "accumulation_batch_size": [16, 32]}},
                 "seeds": [3]})
    names = {r.name for r in runs}
    assert "batchwise-lr0.1-acc16-s3-" + config_hash(runs[0].config) in names
    for run in runs:
        assert run.name.endswith("-" + run.run_id)
        if run.role == "archetype":
            assert "acc" not in run.name  # a twin has no strategy parameters
            assert run.name.startswith("archetype-lr")


def test_identity_is_independent_of_how_the_spec_is_written(tmp_path: Path):
    one = plan({"base": {**BASE, "learning_rate": 0.1}, "seeds": [0]})
    two = plan({"base": {"batch_size": 16, "epochs": 2}, "grid": {"model": ["fcnet16"]},
                "experiments": {"x": {"dataset": "synthetic", "learning_rate": 0.1}}, "seeds": [0]})
    assert [r.run_id for r in one] == [r.run_id for r in two]


def test_dotted_keys_set_strategy_options_entries():
    runs = plan({"base": {**BASE, "strategy": "infobatch", "strategy_options": {"delta": 0.8}},
                 "grid": {"strategy_options.ratio": [0.3, 0.5]}, "twins": False})
    assert [r.config.strategy_options for r in runs] == [{"delta": 0.8, "ratio": 0.3},
                                                          {"delta": 0.8, "ratio": 0.5}]


@pytest.mark.parametrize("data, message", [
    ({"base": BASE, "grids": {}}, "unknown key 'grids' (did you mean 'grid'?)"),
    ({"base": {**BASE, "learning_rat": 0.1}}, "base: unknown config key 'learning_rat' (did you mean 'learning_rate'?)"),
    ({"base": BASE, "grid": {"modle": ["fcnet16"]}}, "grid: unknown config key 'modle'"),
    ({"base": BASE, "experiments": {"e": {"epoch_filtrering": True}}}, "experiments.e: unknown config key 'epoch_filtrering'"),
    ({"base": BASE, "grid": {"learning_rate": []}}, "grid.learning_rate is an empty list"),
    ({"base": BASE, "experiments": {"e": {"select_q": []}}}, "experiments.e.select_q is an empty list"),
    ({"base": BASE, "seeds": []}, "seeds is an empty list"),
    ({"base": BASE, "seeds": [1, 1]}, "repeat a seed"),
    ({"base": BASE, "grid": {"model": "fcnet16"}}, "grid.model: Input should be a valid list"),
    ({"base": BASE, "seeds": ["x"]}, "seeds.0"),
    ({"base": {**BASE, "rng_seed": 3}, "seeds": [0]}, "base sets rng_seed and the spec also lists seeds"),
    ({"base": BASE, "grid": {"epochs": [1, 2]}}, "'epochs' is set in both base and grid"),
    ({"base": {**BASE, "strategy_options.ratio": 0.3}, "grid": {"strategy_options": [{"delta": 0.5}]}},
     "'strategy_options' is set in both base and grid"),
    ({"base": BASE, "grid": {"learning_rate": [0.1]}, "experiments": {"e": {"learning_rate": 0.2}}},
     "experiments.e sets 'learning_rate', which the grid already varies"),
    ({"base": BASE, "grid": {"learning_rate": [0.1, "fast"]}}, "learning_rate: Input should be a valid number"),
    ({"base": BASE, "experiments": {"clash": {"strategy": "epochwise", "batch_filtering": True}}},
     "experiment 'clash', run with strategy='epochwise', batch_filtering=True: strategy='epochwise' conflicts"),
    ({"base": BASE, "slurm": {"partition": "gpu", "mem": "lots"}}, "slurm.mem: 'lots' is not a Slurm memory size"),
    ({"base": BASE, "slurm": {"gpu": 1}}, "unknown key 'slurm.gpu' (did you mean 'gpus'?)"),
    ({"base": BASE, "slurm": {"time": "2 hours"}}, "slurm.time"),
    (["not", "a", "mapping"], "must be a mapping"),
])
def test_invalid_specs_are_rejected_naming_the_problem(data, message):
    with pytest.raises(SpecError) as error:
        plan(data)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_spec_file_errors(tmp_path: Path):
    path = tmp_path / "spec.yaml"
    path.write_text("base: {epochs: 2}\nexperiments:\n  a: {epoch_filtering: true}\n  a: {batch_filtering: true}\n")
    with pytest.raises(SpecError, match="duplicate key 'a'"):
        load_spec(path)
    path.write_text("base: [unclosed\n")
    with pytest.raises(SpecError, match="is not valid YAML"):
        load_spec(path)
    with pytest.raises(SpecError, match="does not exist"):
        load_spec(tmp_path / "missing.yaml")
    path.write_text(yaml.safe_dump({"base": BASE, "grid": {"learning_rate": [0.1]}}))
    spec = load_spec(path, overrides=["epochs=5", "strategy=infobatch", "strategy_options.ratio=0.4"])
    assert spec.base["epochs"] == 5
    assert expand(spec)[0].config.strategy_options == {"ratio": 0.4}
    pinned = load_spec(path, overrides=["learning_rate=0.3"])  # --set pins a key the grid varies
    assert pinned.grid == {} and pinned.base["learning_rate"] == 0.3


@pytest.mark.parametrize("text, minutes", [(90, 90), ("90", 90), ("01:30", 2), ("02:00:00", 120),
                                           ("1-12", 2160), ("1-00:30:00", 1470)])
def test_slurm_time_formats(text, minutes):
    assert time_minutes(text) == minutes


def test_example_spec_has_the_thesis_shape():
    example = Path(__file__).resolve().parents[1] / "src/assist/experiments/examples/mnist_epochwise_filtering.yaml"
    runs = expand(load_spec(example))
    assert len(runs) == 2 * 4 * 2
    assert {r.config.model for r in runs} == {"lenet", "fcnet100"}
    assert {r.config.rng_seed for r in runs} == {0, 1}
    assert all(r.config.dataset == "mnist" and r.config.data_augmentation is False for r in runs)


def test_every_shipped_spec_plans_and_is_listed(tmp_path):
    """Each example spec validates every run (what --dry-run checks), has a twin for every
    strategic run, and is found by name."""
    from assist.experiments.examples import examples, resolve_example
    from assist.experiments.sweep import plan_sweep

    shipped = examples()
    names = {e.name for e in shipped}
    assert {"thesis-mnist-fcnets", "thesis-mnist-epochwise", "thesis-cifar10-fcnets", "thesis-cifar10-batch-sizes",
            "thesis-cifar100-fcnets", "thesis-cifar100-batch-sizes", "thesis-appendix-grid"} <= names
    for example in shipped:
        header = example.path.read_text().split("\nname:")[0]
        assert "Full scale" in header and "Reduced scale on a CPU" in header, example.name
        plan = plan_sweep(example.name, tmp_path / example.name)
        strategic = [r for r in plan.runs if r.role == "strategic"]
        ids = {r.run_id for r in plan.runs}
        assert all(r.twin_id in ids for r in strategic), example.name
        # a sweep without a strategic run only where the thesis lists archetypes alone (Appendix II's DLA)
        assert strategic or example.name.startswith("thesis-appendix-"), example.name
        assert resolve_example(example.name) == example.path
    # Table 4.7's runs used their own settings (Appendix II), not the Table 4.1 baseline
    fcnets = plan_sweep("thesis-cifar10-fcnets", tmp_path / "b").runs[0].config
    assert (fcnets.batch_size, fcnets.learning_rate, fcnets.weight_decay, fcnets.momentum, fcnets.lr_scheduler,
            fcnets.gamma, fcnets.epochs, fcnets.data_augmentation) == (512, 0.01, 5e-4, 0.9, "exponential", 0.995, 500, True)


def test_set_pins_a_key_the_grid_varies_and_seeds_replace(tmp_path):
    from assist.experiments.sweep import plan_sweep

    plan = plan_sweep("thesis-mnist-epochwise", tmp_path / "a", ["model=lenet", "epochs=2"], seeds=[0, 1, 2])
    assert {r.config.model for r in plan.runs} == {"lenet"} and {r.config.epochs for r in plan.runs} == {2}
    assert len(plan.runs) == 4 * 3                              # four filtering modes, three seeds
    assert sorted({r.config.rng_seed for r in plan.runs}) == [0, 1, 2]


def test_peer_specs_quote_the_paper_and_carry_the_controls(tmp_path):
    """Each published-setting spec names the paper's number in its header and runs the
    archetype and a random-subset control beside the peer at its budget."""
    from assist.experiments.examples import examples
    from assist.experiments.sweep import plan_sweep

    peers = {e.name: e for e in examples() if e.name.startswith("peers-")}
    assert set(peers) == {"peers-infobatch-cifar10", "peers-selective-backprop-cifar10", "peers-rho-loss-cifar10",
                          "peers-divbs-cifar10"}
    for name, example in peers.items():
        header = example.path.read_text().split("\nname:")[0]
        assert "Paper's" in header and "arXiv" in header, name
        plan = plan_sweep(name, tmp_path / name)
        strategies = {r.config.strategy for r in plan.runs}
        assert {"archetype", "random_subset"} <= strategies, name
    divbs = plan_sweep("peers-divbs-cifar10", tmp_path / "d").runs
    budgets = {(r.config.strategy, r.config.batch_size) for r in divbs if r.role == "strategic"}
    assert ("divbs", 32) in budgets and ("divbs", 64) in budgets
    assert {"importance_sampling", "batchwise", "grad_norm"} <= {s for s, _ in budgets}
    info = plan_sweep("peers-infobatch-cifar10", tmp_path / "i").runs[0].config
    assert (info.lr_scheduler, info.label_smoothing, info.epochs) == ("onecycle", 0.1, 200)
