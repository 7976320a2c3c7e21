"""Data scenarios (issue 24): label noise, class imbalance and duplicates, made from the seed,
shared by twins, on the training split only; and the metrics of who gets trained."""

import pytest
import torch

from assist.api import config_hash, load_data, make_config
from assist.config import ConfigError
from assist.data import load_dataset
from assist.data.scenarios import Scenario, apply_scenario, imbalance_counts
from assist.engine.exposure import rare_classes
from assist.engine.trainer import Trainer
from assist.validation import twin_config

SCENARIO = {"label_noise": 0.3, "class_imbalance": 5.0, "duplicates": 0.25}


def scenario_data(seed=0, **keys):
    return load_data(make_config({"dataset": "digits", "rng_seed": seed, **keys}))


def test_the_transforms_are_a_function_of_the_seed_and_twins_share_them():
    a, b, other = scenario_data(0, **SCENARIO), scenario_data(0, **SCENARIO), scenario_data(1, **SCENARIO)
    for key in ("train_images", "train_labels", "train_noisy", "train_duplicate"):
        assert torch.equal(getattr(a, key), getattr(b, key)), key
    assert not torch.equal(a.train_noisy, other.train_noisy) or not torch.equal(a.train_labels, other.train_labels)
    run = make_config({"dataset": "digits", "strategy": "batchwise", **SCENARIO})
    twin = twin_config(run)
    assert (twin.strategy, twin.label_noise, twin.class_imbalance, twin.duplicates) == ("archetype", 0.3, 5.0, 0.25)
    assert torch.equal(load_data(twin).train_labels, load_data(run).train_labels)


def test_the_test_split_is_untouched():
    clean, noisy = scenario_data(0), scenario_data(0, **SCENARIO)
    assert torch.equal(clean.test_images, noisy.test_images) and torch.equal(clean.test_labels, noisy.test_labels)


def test_symmetric_noise_flips_exactly_the_fraction_to_other_classes_uniformly():
    clean = load_dataset("synthetic")
    noisy = apply_scenario(clean, Scenario(label_noise=0.4), seed=3)
    flipped = noisy.train_labels != clean.train_labels
    assert torch.equal(flipped, noisy.train_noisy)                       # every marked label is wrong
    assert int(flipped.sum()) == round(0.4 * clean.num_train)            # exactly the fraction
    assert torch.equal(noisy.train_images, clean.train_images)           # images stay
    steps = (noisy.train_labels[flipped] - clean.train_labels[flipped]) % clean.num_classes
    counts = torch.bincount(steps, minlength=clean.num_classes)[1:]
    assert counts.min() > 0.5 * counts.float().mean()                    # spread over the other classes


def test_pairflip_moves_class_c_to_c_plus_one():
    clean = load_dataset("synthetic")
    noisy = apply_scenario(clean, Scenario(label_noise=0.2, label_noise_kind="pairflip"), seed=0)
    mask = noisy.train_noisy
    assert torch.equal(noisy.train_labels[mask], (clean.train_labels[mask] + 1) % clean.num_classes)
    assert torch.equal(noisy.train_labels[~mask], clean.train_labels[~mask])


def test_class_imbalance_keeps_an_exponential_profile_of_the_given_ratio():
    assert imbalance_counts([100, 120, 90], 10) == [90, 28, 9]
    clean = load_dataset("digits")
    data = apply_scenario(clean, Scenario(class_imbalance=10), seed=0)
    counts = torch.bincount(data.train_labels, minlength=10)
    smallest = int(torch.bincount(clean.train_labels).min())
    assert counts.tolist() == imbalance_counts([smallest] * 10, 10)
    assert counts[0] / counts[-1] == pytest.approx(10, rel=0.15)
    # the kept samples are samples of the original split, with their own labels
    originals = {(bytes(img.flatten().tolist()), int(y)) for img, y in zip(clean.train_images, clean.train_labels)}
    assert all((bytes(img.flatten().tolist()), int(y)) in originals for img, y in zip(data.train_images, data.train_labels))


def test_duplicates_replace_the_fraction_with_exact_copies_of_the_rest():
    clean = load_dataset("digits")
    data = apply_scenario(clean, Scenario(duplicates=0.5), seed=0)
    copy = data.train_duplicate
    assert data.num_train == clean.num_train and int(copy.sum()) == round(0.5 * clean.num_train)
    kept = {bytes(img.flatten().tolist()): int(y) for img, y in zip(data.train_images[~copy], data.train_labels[~copy])}
    for img, y in zip(data.train_images[copy], data.train_labels[copy]):
        assert kept[bytes(img.flatten().tolist())] == int(y)             # an exact copy of a kept sample


def test_noisy_copies_carry_their_source_flag():
    data = scenario_data(0, label_noise=0.5, duplicates=0.5)
    images = {bytes(img.flatten().tolist()): bool(flag) for img, flag, copy
              in zip(data.train_images, data.train_noisy, data.train_duplicate) if not copy}
    assert all(images[bytes(img.flatten().tolist())] == bool(flag) for img, flag, copy
               in zip(data.train_images, data.train_noisy, data.train_duplicate) if copy)


@pytest.mark.parametrize("name", ["digits", "synthetic", "mnist", "folder"])
def test_every_data_set_takes_the_scenario_keys(name, shared_data_dir, tmp_path):
    values = {"dataset": name}
    if name == "mnist":
        values.update(data_dir=str(shared_data_dir), samples_per_class=30)
    if name == "folder":
        from PIL import Image
        for cls in ("a", "b", "c"):
            for split in ("train", "test"):
                (tmp_path / split / cls).mkdir(parents=True)
                for i in range(12):
                    Image.new("RGB", (8, 8), (10 * i, 80 * ("abc".index(cls)), 5)).save(tmp_path / split / cls / f"{i}.png")
        values["dataset"] = f"folder:{tmp_path}"
    clean = load_data(make_config(values))
    data = load_data(make_config({**values, "label_noise": 0.2, "class_imbalance": 2, "duplicates": 0.1}))
    assert data.train_noisy is not None and data.train_duplicate is not None
    assert int(data.train_noisy.sum()) >= 1 and data.num_train < clean.num_train
    assert torch.equal(data.test_labels, clean.test_labels)


def test_default_scenario_keys_keep_a_run_identity():
    plain = make_config({"dataset": "digits"})
    explicit = make_config({"dataset": "digits", "label_noise": 0.0, "label_noise_kind": "symmetric",
                            "class_imbalance": 1.0, "duplicates": 0.0})
    assert config_hash(plain) == config_hash(explicit)
    assert config_hash(make_config({"dataset": "digits", "label_noise": 0.2})) != config_hash(plain)


@pytest.mark.parametrize("values, key", [
    ({"label_noise": 1.0}, "label_noise"), ({"label_noise": -0.1}, "label_noise"),
    ({"label_noise_kind": "pairflip"}, "label_noise_kind"), ({"label_noise": 0.1, "label_noise_kind": "bag"},
                                                             "label_noise_kind"),
    ({"class_imbalance": 0.5}, "class_imbalance"), ({"duplicates": 0.99}, "duplicates"),
])
def test_bad_scenario_values_name_the_key(values, key):
    with pytest.raises((ConfigError, ValueError), match=key):
        make_config({"dataset": "digits", **values})


def test_rare_classes_are_the_smaller_half_and_none_when_balanced():
    assert rare_classes(torch.tensor([5, 5, 5])) is None
    assert rare_classes(torch.tensor([5421, 6742, 5900])) is None          # MNIST's own spread is not rarity
    assert rare_classes(torch.tensor([50, 10, 30, 5])).tolist() == [False, True, False, True]


def test_the_archetype_trains_every_flipped_label_at_its_data_share_and_the_counts_add_up():
    run = make_config({"dataset": "digits", "epochs": 2, **SCENARIO})
    trainer = Trainer(run, load_data(run))
    state = trainer.fit()
    for row in state.history:
        assert row["trained_noisy_share"] == pytest.approx(row["data_noisy_share"])
        assert row["trained_rare_share"] == pytest.approx(row["data_rare_share"])
        assert row["trained_duplicate_share"] == pytest.approx(row["data_duplicate_share"])
        assert sum(row["trained_class_share"]) == pytest.approx(1.0)
        assert row["samples_never_trained"] == 0
        assert 0 <= row["test_balanced_accuracy"] <= 1 and len(row["test_class_accuracy"]) == 10
    assert torch.equal(trainer.exposure.times_trained, torch.full((trainer.data.num_train,), 2, dtype=torch.int32))
    assert int(trainer.exposure.times_scored.sum()) == state.cum_samples_scored


def test_a_filter_shifts_its_training_mass_and_rs2_covers_the_data_before_repeating():
    run = make_config({"dataset": "digits", "epochs": 2, "strategy": "batchwise", "label_noise": 0.3})
    trainer = Trainer(run, load_data(run))
    state = trainer.fit()
    assert int(trainer.exposure.times_trained.sum()) == state.cum_samples_trained
    assert int(trainer.exposure.times_scored.sum()) == state.cum_samples_scored
    # hard filtering trains the misclassified: flipped labels are misclassified far more often
    assert state.history[-1]["trained_noisy_share"] > 1.2 * state.history[-1]["data_noisy_share"]
    rs2 = make_config({"dataset": "digits", "epochs": 2, "strategy": "rs2", "strategy_options": {"fraction": 0.5}})
    trainer = Trainer(rs2, load_data(rs2))
    trainer.fit()
    counts, n = trainer.exposure.times_trained, trainer.data.num_train
    per_epoch = round(0.5 * n + 1e-9)
    assert int((counts == 0).sum()) == max(0, n - 2 * per_epoch)        # every sample once ...
    assert int((counts == 2).sum()) == max(0, 2 * per_epoch - n)        # ... before any twice
    assert int(counts.max()) <= 2


def test_sweeps_grid_over_the_scenario_keys_with_twins_that_share_them(tmp_path):
    from assist.experiments.sweep import plan_sweep

    runs = plan_sweep("scenarios-noisy-mnist", tmp_path / "s").runs
    assert len(runs) == 45   # 3 noise levels x 3 seeds x (4 strategies + their twin)
    by_id = {run.run_id: run for run in runs}
    assert {run.config.label_noise for run in runs} == {0.0, 0.2, 0.4}
    for run in runs:
        if run.role == "strategic":
            twin = by_id[run.twin_id].config
            assert (twin.strategy, twin.label_noise, twin.rng_seed) == ("archetype", run.config.label_noise,
                                                                        run.config.rng_seed)
