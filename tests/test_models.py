"""Model zoo tests, parametrised over every registered name so new entries are covered."""

from __future__ import annotations

from functools import lru_cache

import pytest
import torch
from torch import nn

from assist.models import MODELS, create_model, list_models
from assist.registry import RegistryError

# Family members beyond the listed examples, to show the family parses any width.
EXTRA_NAMES = ["fcnet7"]
ALL_NAMES = list_models() + EXTRA_NAMES

# Parameter counts of the kuangliu/pytorch-cifar models the thesis trained (3x32x32 input,
# 10 classes); a model registered without an entry here fails test_parameter_count.
KNOWN_COUNTS = {
    ("lenet", 3, 10): 62_006,
    ("lenet", 1, 10): 61_706,
    ("resnet18", 3, 10): 11_173_962,
    ("dla", 3, 10): 16_291_386,
    ("simpledla", 3, 10): 15_142_970,
}

CONFIGS = [(1, 10), (3, 100)]  # (in_channels, num_classes), all on 32x32 images


@lru_cache(maxsize=None)
def built(name: str, in_channels: int, num_classes: int) -> nn.Module:
    """A model shared by read-only tests (ResNet/DLA take ~0.3 s each to build on CPU)."""
    return create_model(name, in_channels=in_channels, num_classes=num_classes)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def fcnet_count(width: int, in_features: int, num_classes: int) -> int:
    return in_features * width + width + width * num_classes + num_classes


def test_registry_lists_the_thesis_models() -> None:
    names = list_models()
    for name in ["lenet", "resnet18", "dla", "simpledla", "fcnet100", "fcnet1000", "fcnet3000"]:
        assert name in names
    assert list_models("fcnet*") == ["fcnet100", "fcnet1000", "fcnet3000"]
    assert list_models() == MODELS.names()


@pytest.mark.parametrize("in_channels,num_classes", CONFIGS)
@pytest.mark.parametrize("name", ALL_NAMES)
def test_output_shape(name: str, in_channels: int, num_classes: int) -> None:
    model = create_model(name, in_channels=in_channels, num_classes=num_classes)
    assert model.training  # returned ready to train, like a freshly built nn.Module
    x = torch.randn(2, in_channels, 32, 32, generator=torch.Generator().manual_seed(0))
    model.eval()
    with torch.no_grad():
        out = model(x)
    assert out.shape == (2, num_classes)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("in_channels,num_classes", [(3, 10), (1, 10), (3, 100)])
@pytest.mark.parametrize("name", ALL_NAMES)
def test_parameter_count(name: str, in_channels: int, num_classes: int) -> None:
    model = built(name, in_channels, num_classes)
    if name.startswith("fcnet"):
        width = int(name[len("fcnet"):])
        expected = fcnet_count(width, in_channels * 32 * 32, num_classes)
    elif (name, in_channels, num_classes) in KNOWN_COUNTS:
        expected = KNOWN_COUNTS[(name, in_channels, num_classes)]
    elif (name, 3, 10) in KNOWN_COUNTS:
        # Other shapes change only the first conv's input channels and the classifier; the
        # 3-channel/10-class count pins the rest, so check the two differences exactly.
        reference = built(name, 3, 10)
        expected = count_parameters(reference) + _head_and_stem_delta(
            reference, in_channels, num_classes
        )
    else:
        pytest.fail(f"no known parameter count for model {name!r}; add it to KNOWN_COUNTS")
    assert count_parameters(model) == expected


def _head_and_stem_delta(reference: nn.Module, in_channels: int, num_classes: int) -> int:
    first_conv = next(m for m in reference.modules() if isinstance(m, nn.Conv2d))
    last_linear = [m for m in reference.modules() if isinstance(m, nn.Linear)][-1]
    per_input_channel = first_conv.weight[:, :1].numel()
    per_class = last_linear.in_features + 1
    return per_input_channel * (in_channels - 3) + per_class * (num_classes - 10)


@pytest.mark.parametrize("name", ALL_NAMES)
def test_one_training_step_changes_parameters(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, in_channels=3, num_classes=10)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 32, 32, generator=gen)
    y = torch.randint(0, 10, (2,), generator=gen)
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model.train()
    loss = nn.functional.cross_entropy(model(x), y)
    assert torch.isfinite(loss)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    unchanged = [
        n for (n, p), b in zip(model.named_parameters(), before) if torch.equal(b, p.detach())
    ]
    assert unchanged == []


@pytest.mark.parametrize("name", ["lenet", "fcnet100", "simpledla"])
def test_construction_draws_only_parameter_init(name: str) -> None:
    """create_model's shape probe must not touch the global RNG: building through it gives
    the same weights and leaves the same RNG state as calling the factory directly."""
    torch.manual_seed(123)
    via_create = create_model(name, in_channels=1, num_classes=10)
    state_after_create = torch.get_rng_state()
    torch.manual_seed(123)
    direct = MODELS.create(name, in_channels=1, num_classes=10, image_size=(32, 32))
    assert torch.equal(state_after_create, torch.get_rng_state())
    for a, b in zip(via_create.state_dict().values(), direct.state_dict().values()):
        assert torch.equal(a, b)
    # Forward passes (train and eval) draw nothing either: no dropout or random layers.
    state = torch.get_rng_state()
    x = torch.zeros(2, 1, 32, 32)
    via_create.train()(x)
    via_create.eval()(x)
    assert torch.equal(state, torch.get_rng_state())


def test_unknown_name_lists_available_models() -> None:
    with pytest.raises(RegistryError) as caught:
        create_model("vgg16", in_channels=3, num_classes=10)
    message = str(caught.value)
    assert "vgg16" in message
    for name in ["lenet", "resnet18", "dla", "simpledla", "fcnet<N>"]:
        assert name in message


@pytest.mark.parametrize("name", ["fcnet0", "fcnet007", "fcnet-5", "fcnetx", "fcnet"])
def test_bad_fcnet_widths_are_unknown(name: str) -> None:
    with pytest.raises(RegistryError, match="fcnet<N>"):
        create_model(name, in_channels=1, num_classes=10)


def test_lenet_rejects_8x8_naming_the_shape() -> None:
    expected = r"model 'lenet' expects 32x32 inputs, the data set has 8x8"
    with pytest.raises(ValueError, match=expected):
        create_model("lenet", in_channels=1, num_classes=10, image_size=(8, 8))


@pytest.mark.parametrize("name", ["resnet18", "dla", "simpledla"])
def test_conv_nets_reject_too_small_and_too_large_inputs(name: str) -> None:
    for size in [(8, 8), (64, 64)]:
        with pytest.raises(ValueError, match=f"the data set has {size[0]}x{size[1]}"):
            create_model(name, in_channels=3, num_classes=10, image_size=size)


def test_fcnet_takes_any_image_size() -> None:
    model = create_model("fcnet100", in_channels=1, num_classes=10, image_size=(8, 8))
    assert count_parameters(model) == fcnet_count(100, 64, 10)
    out = model(torch.zeros(5, 1, 8, 8))
    assert out.shape == (5, 10)
    model = create_model("fcnet7", in_channels=1, num_classes=10, image_size=(28, 28))
    assert count_parameters(model) == fcnet_count(7, 784, 10)


@pytest.mark.parametrize(
    "kwargs,key",
    [
        (dict(in_channels=0, num_classes=10), "in_channels"),
        (dict(in_channels=3, num_classes=0), "num_classes"),
        (dict(in_channels=3, num_classes=10, image_size=(0, 32)), "height"),
        (dict(in_channels=3, num_classes=10, image_size=(32,)), "image_size"),
        (dict(in_channels=True, num_classes=10), "in_channels"),
    ],
)
def test_invalid_arguments_name_the_key(kwargs: dict, key: str) -> None:
    with pytest.raises(ValueError, match=key):
        create_model("fcnet100", **kwargs)


@pytest.mark.parametrize("name", ALL_NAMES)
def test_every_model_exposes_its_penultimate_features(name):
    """The feature interface DivBS needs: forward(x) == classifier(features(x))."""
    from assist.models import features_and_logits

    torch.manual_seed(0)
    model = create_model(name, in_channels=3, num_classes=10, image_size=(32, 32)).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        features, logits = features_and_logits(model, x)
        assert features.dim() == 2 and features.shape[0] == 2
        assert features.shape[1] == model.classifier.in_features
        assert torch.allclose(logits, model(x), atol=1e-5)
    with pytest.raises(ValueError, match="does not expose its penultimate features"):
        features_and_logits(torch.nn.Linear(4, 2), torch.zeros(1, 4))
