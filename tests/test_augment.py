"""Per-sample batched augmentation: geometry against exact references, colour ranges, replay."""

from __future__ import annotations

import colorsys

import pytest
import torch

from assist.data.augment import Augmentation, augmentation_names, index_params, make_augmentation
from assist.data.augment import _shift_hue  # the hue maths is checked against colorsys
from assist.registry import RegistryError


def images(n: int, c: int = 3, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, c, size, size, generator=torch.Generator().manual_seed(seed))


def neutral(recipe: Augmentation, n: int) -> dict[str, torch.Tensor]:
    """Parameters that leave the image unchanged; tests overwrite one at a time."""
    values = {"flip": torch.zeros(n, dtype=torch.bool), "angle": torch.zeros(n), "scale": torch.ones(n),
              "translate": torch.zeros(n, 2, dtype=torch.long), "crop_shift": torch.zeros(n, 2, dtype=torch.long),
              "brightness": torch.ones(n), "contrast": torch.ones(n), "saturation": torch.ones(n), "hue": torch.zeros(n)}
    return {k: values[k] for k in recipe.param_keys}


def shifted(x: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    """Content moved right by dx and down by dy with zero fill (roll, then zero what wrapped)."""
    out = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
    if dy > 0:
        out[:, :, :dy] = 0
    elif dy < 0:
        out[:, :, dy:] = 0
    if dx > 0:
        out[:, :, :, :dx] = 0
    elif dx < 0:
        out[:, :, :, dx:] = 0
    return out


def test_registered_recipes_and_unknown_name():
    assert {"none", "light", "thesis"} <= set(augmentation_names())
    with pytest.raises(RegistryError, match="unknown augmentation 'heavy'.*thesis"):
        make_augmentation("heavy", (32, 32))


def test_thesis_recipe_matches_the_thesis_settings():
    r = make_augmentation("thesis", (32, 32))
    assert (r.flip_p, r.degrees, r.translate, r.scale) == (0.5, 180.0, 0.1, (0.9, 1.1))
    assert r.crop_padding == (4, 4)
    assert (r.brightness, r.contrast, r.saturation, r.hue) == (0.5, 0.5, 0.5, 0.05)
    assert make_augmentation("light", (8, 8)).crop_padding == (1, 1)
    assert make_augmentation("none", (32, 32)).is_identity


@pytest.mark.parametrize("name", ["none", "light", "thesis"])
@pytest.mark.parametrize("channels,size", [(1, 8), (3, 32), (1, 28), (3, 8)])
def test_shapes_dtypes_and_range(name, channels, size):
    recipe = make_augmentation(name, (size, size))
    x = images(16, channels, size)
    params = recipe.sample_params(16, torch.Generator().manual_seed(1))
    assert set(params) == set(recipe.param_keys)
    out = recipe.apply(x, params)
    assert out.shape == x.shape and out.dtype == torch.float32
    assert out.min() >= 0.0 and out.max() <= 1.0  # colour jitter clamps before normalisation
    if name == "none":
        assert torch.equal(out, x)


def test_parameter_ranges():
    recipe = make_augmentation("thesis", (32, 32))
    p = recipe.sample_params(20000, torch.Generator().manual_seed(2))
    assert 0.45 < p["flip"].float().mean() < 0.55
    assert p["angle"].abs().max() <= 180 and p["angle"].abs().max() > 170
    assert p["scale"].min() >= 0.9 and p["scale"].max() <= 1.1
    assert set(p["translate"].unique().tolist()) == set(range(-3, 4))  # round(U(-3.2, 3.2))
    assert set(p["crop_shift"].unique().tolist()) == set(range(-4, 5))
    for key in ("brightness", "contrast", "saturation"):
        assert p[key].min() >= 0.5 and p[key].max() <= 1.5
    assert p["hue"].abs().max() <= 0.05
    assert p["translate"].dtype == torch.int64 and p["flip"].dtype == torch.bool


@pytest.mark.parametrize("size", [32, 28, 8])
def test_flip_only_is_exact(size):
    recipe = make_augmentation("light", (size, size))
    x = images(4, 3, size)
    p = neutral(recipe, 4)
    p["flip"] = torch.tensor([True, False, True, False])
    out = recipe.apply(x, p)
    assert torch.equal(out[0::2], x[0::2].flip(3)) and torch.equal(out[1::2], x[1::2])


@pytest.mark.parametrize("dx,dy", [(3, -2), (-4, 4), (0, 1), (-1, 0)])
def test_integer_crop_shift_is_zero_filled_translation(dx, dy):
    for size in (32, 28, 8):
        recipe = make_augmentation("light", (size, size))
        x = images(3, 3, size)
        p = neutral(recipe, 3)
        p["crop_shift"] = torch.tensor([[dx, dy], [0, 0], [dx, dy]])
        out = recipe.apply(x, p)
        assert torch.equal(out[0], shifted(x[:1], dx, dy)[0]) and torch.equal(out[1], x[1])
        assert torch.equal(out[2], shifted(x[2:], dx, dy)[0])


@pytest.mark.parametrize("key", ["crop_shift", "translate"])
def test_affine_path_shifts_and_flips_like_the_exact_path(key):
    recipe = make_augmentation("thesis", (32, 32))
    x = images(2)
    p = neutral(recipe, 2)
    p[key] = torch.tensor([[3, -2], [-4, 1]])
    p["flip"] = torch.tensor([False, True])
    out = recipe.apply(x, p)
    torch.testing.assert_close(out[0], shifted(x[:1], 3, -2)[0], atol=2e-6, rtol=0)
    torch.testing.assert_close(out[1], shifted(x[1:].flip(3), -4, 1)[0], atol=2e-6, rtol=0)


def test_rotation_by_90_degrees_is_counter_clockwise():
    recipe = make_augmentation("thesis", (32, 32))
    x = images(2)
    p = neutral(recipe, 2)
    p["angle"] = torch.tensor([90.0, -90.0])
    out = recipe.apply(x, p)
    torch.testing.assert_close(out[0], torch.rot90(x[0], 1, (1, 2)), atol=1e-5, rtol=0)
    torch.testing.assert_close(out[1], torch.rot90(x[1], -1, (1, 2)), atol=1e-5, rtol=0)


@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
def test_one_grid_equals_flip_then_affine_then_crop(mode):
    """Composing the three geometric steps into one sampling (with the crop mask) changes nothing."""
    size = (32, 32)
    affine_args = dict(degrees=180, translate=0.1, scale=(0.9, 1.1), interpolation=mode)
    full = Augmentation("geo", size, flip_p=0.5, crop_padding=(4, 4), **affine_args)
    flip = Augmentation("flip", size, flip_p=0.5)
    affine = Augmentation("affine", size, **affine_args)
    crop = Augmentation("crop", size, crop_padding=(4, 4))
    x = images(32)
    p = full.sample_params(32, torch.Generator().manual_seed(3))
    step = flip.apply(x, {"flip": p["flip"]})
    step = affine.apply(step, {k: p[k] for k in ("angle", "scale", "translate")})
    step = crop.apply(step, {"crop_shift": p["crop_shift"]})
    torch.testing.assert_close(full.apply(x, p), step, atol=1e-5, rtol=0)


def test_colour_jitter_formulas():
    recipe = make_augmentation("thesis", (8, 8))
    x = images(2, 3, 8)
    p = neutral(recipe, 2)
    p["brightness"] = torch.tensor([0.5, 1.5])
    out = recipe.apply(x, p)
    torch.testing.assert_close(out, (x * p["brightness"].view(2, 1, 1, 1)).clamp(0, 1), atol=2e-6, rtol=0)
    p = neutral(recipe, 2)
    p["saturation"] = torch.tensor([0.0, 1.0])
    out = recipe.apply(x, p)
    grey = 0.299 * x[0, 0] + 0.587 * x[0, 1] + 0.114 * x[0, 2]
    torch.testing.assert_close(out[0], grey.expand(3, 8, 8), atol=2e-6, rtol=0)  # fully desaturated
    p = neutral(recipe, 2)
    p["contrast"] = torch.tensor([0.0, 1.7])
    out = recipe.apply(x, p)
    mean_grey = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).mean(dim=(1, 2))
    assert out[0].std() < 1e-6 and abs(out[0, 0, 0, 0] - mean_grey[0]) < 1e-6  # zero contrast: mean grey
    expected = (1.7 * x[1] + (1 - 1.7) * mean_grey[1]).clamp(0, 1)
    torch.testing.assert_close(out[1], expected, atol=2e-6, rtol=0)


def test_hue_shift_matches_colorsys():
    x = images(3, 3, 4)
    x[0, :, 0, 0] = 0.4  # grey pixel: no hue
    x[1, :2, 1, 3] = 0.9  # red and green tie for the maximum
    x[2, 1:, 3, 2] = 0.8  # green and blue tie
    shift = torch.tensor([0.05, -0.05, 0.3])
    out = _shift_hue(x, shift)
    for b in range(3):
        for i, j in [(0, 0), (1, 3), (3, 2)]:
            h, s, v = colorsys.rgb_to_hsv(*x[b, :, i, j].tolist())
            expected = colorsys.hsv_to_rgb((h + shift[b].item()) % 1.0, s, v)
            assert out[b, :, i, j].tolist() == pytest.approx(expected, abs=1e-5)


def test_one_channel_skips_saturation_and_hue():
    recipe = make_augmentation("thesis", (8, 8))
    x = images(2, 1, 8)
    p = neutral(recipe, 2)
    p["saturation"] = torch.tensor([0.0, 0.0])
    p["hue"] = torch.tensor([0.05, -0.05])
    assert torch.equal(recipe.apply(x, p), x)


@pytest.mark.parametrize("name", ["light", "thesis"])
def test_parameters_are_per_sample_not_per_batch(name):
    recipe = make_augmentation(name, (32, 32))
    x = images(1).expand(64, 3, 32, 32).contiguous()  # one image, 64 times
    p = recipe.sample_params(64, torch.Generator().manual_seed(4))
    for key, value in p.items():
        assert value.unique(dim=0).shape[0] > 1, key
    out = recipe.apply(x, p)
    distinct = out.flatten(1).unique(dim=0).shape[0]
    assert distinct > 32  # "light" has 2 * 81 views, "thesis" continuous ones


def test_replay_same_params_and_indexed_epoch_table():
    recipe = make_augmentation("thesis", (32, 32))
    x = images(40)
    table = recipe.sample_params(40, torch.Generator().manual_seed(5))
    full = recipe.apply(x, table)
    assert torch.equal(recipe.apply(x, table), full)
    positions = torch.tensor([7, 0, 39, 12, 7])
    part = recipe.apply(x[positions], index_params(table, positions))
    torch.testing.assert_close(part, full[positions], atol=1e-6, rtol=0)


def test_sampling_is_seeded_and_uses_only_the_given_generator():
    recipe = make_augmentation("thesis", (32, 32))
    state = torch.get_rng_state()
    a = recipe.sample_params(10, torch.Generator().manual_seed(6))
    b = recipe.sample_params(10, torch.Generator().manual_seed(6))
    c = recipe.sample_params(10, torch.Generator().manual_seed(7))
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_clear_errors():
    recipe = make_augmentation("thesis", (32, 32))
    p = recipe.sample_params(2, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="built for 32x32"):
        recipe.apply(images(2, 3, 8), p)
    with pytest.raises(ValueError, match="params must have keys"):
        recipe.apply(images(2), {k: v for k, v in p.items() if k != "hue"})
    with pytest.raises(ValueError, match="'flip' has 2 rows for a batch of 3"):
        recipe.apply(images(3), p)
    with pytest.raises(ValueError, match="CPU torch.Generator"):
        recipe.sample_params(2, None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="hue"):
        Augmentation("bad", (32, 32), hue=0.7)


@pytest.mark.parametrize("name", ["light", "thesis"])
def test_the_compiled_kernels_give_the_eager_result(name):
    from assist.engine.runtime import compiler_problem

    problem = compiler_problem("cpu")
    if problem:
        pytest.skip(problem)
    aug = make_augmentation(name, (32, 32))
    g = torch.Generator().manual_seed(3)
    for batch in (17, 64):  # two sizes: dynamic shapes, no recompilation per size
        x = torch.rand(batch, 3, 32, 32, generator=g)
        params = aug.sample_params(batch, g)
        eager = aug.apply(x, params)
        compiled = aug.apply(x, params, compiled=True)
        assert compiled.shape == eager.shape
        assert torch.allclose(compiled, eager, atol=1e-5), (compiled - eager).abs().max()
