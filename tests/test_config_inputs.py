"""Config input that must be refused with one line naming the key or file (hardening)."""

from __future__ import annotations

import time

import pytest

from assist.api import make_config
from assist.config import ConfigError, apply_overrides, load_config_file


@pytest.mark.parametrize("values, message", [
    ({"learning_rate": float("inf")}, "learning_rate"),
    ({"gamma": float("inf"), "lr_scheduler": "exponential"}, "gamma"),
    ({"batch_size": True}, "batch_size: expected a number, got the boolean True"),
    ({"rng_seed": -1}, "rng_seed"),
    ({"rng_seed": 10**23}, "rng_seed"),
])
def test_numbers_are_finite_and_strict(values, message):
    with pytest.raises(ConfigError, match=message):
        make_config(values)


def test_a_dotted_override_on_a_scalar_key_is_one_line():
    with pytest.raises(ConfigError, match="epochs.x: 'epochs' holds 3, not a mapping"):
        apply_overrides({"epochs": 3}, ["epochs.x=1"])


def test_config_files_refuse_duplicates_aliases_directories_and_binaries(tmp_path):
    twice = tmp_path / "twice.yaml"
    twice.write_text("epochs: 2\nepochs: 3\n")
    with pytest.raises(ConfigError, match="duplicate key 'epochs'"):
        load_config_file(twice)
    bomb = tmp_path / "bomb.yaml"
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    bomb.write_text("\n".join(lines) + "\n")
    started = time.perf_counter()
    with pytest.raises(ConfigError, match="aliases expand to more than"):
        load_config_file(bomb)
    assert time.perf_counter() - started < 5
    with pytest.raises(ConfigError, match="is a directory"):
        load_config_file(tmp_path)
    binary = tmp_path / "weights.bin"
    binary.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ConfigError, match="weights.bin.*not a text file"):
        load_config_file(binary)
