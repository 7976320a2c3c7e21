"""The model zoo: name-based factories for the networks the thesis trained.

``create_model("resnet18", in_channels=3, num_classes=10)`` builds a model; ``list_models()``
names what is available. Every factory takes the keyword arguments ``in_channels``,
``num_classes`` and ``image_size``; family members (``fcnet<N>``) get their number first.

Every model exposes its penultimate features through one small interface: ``features(x)``
(the classifier's input, ``(N, D)``) and ``classifier`` (the last ``nn.Linear``), with
``forward(x) == classifier(features(x))``. Strategies that need per-sample last-layer gradient
embeddings (DivBS) use it through :func:`features_and_logits`.

Models draw from the global RNG only in ordinary parameter initialisation, so a caller that
forks the RNG around ``create_model`` gets reproducible weights. The input-shape check runs
a dry forward pass on the ``meta`` device, which allocates nothing and draws no numbers.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from assist.models.dla import build_dla, build_simple_dla
from assist.models.fcnet import build_fcnet, parse_width
from assist.models.lenet import build_lenet
from assist.models.resnet import build_resnet18
from assist.registry import Registry

__all__ = ["MODELS", "build_model", "create_model", "features_and_logits", "list_models"]

MODELS = Registry[nn.Module]("model")
MODELS.register("lenet")(build_lenet)
MODELS.register("resnet18")(build_resnet18)
MODELS.register("dla")(build_dla)
MODELS.register("simpledla")(build_simple_dla)
MODELS.register_family("fcnet", parse_width, examples=["fcnet100", "fcnet1000", "fcnet3000"])(
    build_fcnet
)

# Input size each convolutional model was designed for (CIFAR's), quoted when a data set
# does not fit; fully connected models take any size.
_DESIGN_SIZES: dict[str, tuple[int, int]] = {
    "lenet": (32, 32),
    "resnet18": (32, 32),
    "dla": (32, 32),
    "simpledla": (32, 32),
}


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style pattern (families by their examples)."""
    return MODELS.names(pattern)


def _check_positive_int(key: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{key} must be a positive integer, got {value!r}")


def create_model(
    name: str, *, in_channels: int, num_classes: int, image_size: tuple[int, int] = (32, 32)
) -> nn.Module:
    """Build model ``name`` for images of shape (in_channels, *image_size).

    Raises RegistryError for an unknown name and ValueError when the arguments are invalid
    or the model cannot take inputs of that shape.
    """
    factory = MODELS.resolve(name)
    _check_positive_int("in_channels", in_channels)
    _check_positive_int("num_classes", num_classes)
    try:
        height, width = image_size
    except (TypeError, ValueError):
        raise ValueError(f"image_size must be (height, width), got {image_size!r}") from None
    _check_positive_int("image_size height", height)
    _check_positive_int("image_size width", width)
    kwargs: dict[str, Any] = dict(
        in_channels=in_channels, num_classes=num_classes, image_size=(height, width)
    )
    model = factory(**kwargs)
    _probe_input_shape(name, model, kwargs)
    return model


def _probe_input_shape(name: str, model: nn.Module, kwargs: dict[str, Any]) -> None:
    """Push one zero (1, C, H, W) input through the new model, turning a shape mismatch deep
    inside the network into a one-line ValueError that names it. Eval mode and no_grad: the
    forward draws no random numbers and leaves batch-norm statistics untouched. (A probe on
    the meta device would avoid the forward but costs a 1.7 s import of torch._dynamo.)"""
    channels, (height, width) = kwargs["in_channels"], kwargs["image_size"]
    num_classes = kwargs["num_classes"]
    was_training = model.training
    model.eval()  # batch norm in training mode refuses a batch of one 1x1 map
    try:
        with torch.no_grad():
            output = model(torch.zeros(1, channels, height, width))
    except (RuntimeError, ValueError) as error:
        lines = str(error).strip().splitlines()
        reason = lines[0] if lines else type(error).__name__
        design = _DESIGN_SIZES.get(name)
        expects = f"expects {design[0]}x{design[1]} inputs" if design else "cannot take the inputs"
        raise ValueError(
            f"model {name!r} {expects}, the data set has {height}x{width} "
            f"(input {channels}x{height}x{width}: {reason})"
        ) from None
    finally:
        model.train(was_training)
    if tuple(output.shape) != (1, num_classes):
        raise ValueError(
            f"model {name!r} gave outputs of shape {tuple(output.shape)} for one "
            f"{channels}x{height}x{width} input, expected (1, {num_classes})"
        )


def build_model(config: Any, data: Any) -> nn.Module:
    """The model of a run (``config.model``) for data set ``data``, initialised from
    ``config.rng_seed`` alone: twins start from identical weights, and the process's global
    RNG is left untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.rng_seed)
        return create_model(config.model, in_channels=data.in_channels, num_classes=data.num_classes,
                            image_size=data.image_size)


def features_and_logits(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(features, logits)`` of ``x`` in one forward, through the feature interface above."""
    if not (callable(getattr(model, "features", None)) and isinstance(getattr(model, "classifier", None), nn.Linear)):
        raise ValueError(f"{type(model).__name__} does not expose its penultimate features: give it a "
                         "features(x) method (the classifier's input) and a classifier attribute (the last "
                         "nn.Linear), as ASSIST's models have")
    features = model.features(x)
    return features, model.classifier(features)
