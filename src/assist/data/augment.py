"""Batched image augmentation with per-sample random parameters, registered by recipe name.

Why not torchvision v2: it draws one parameter set per call, so a whole batch would share one
flip/rotation/jitter. Here every sample gets its own parameters, and the batch is transformed at
once with tensor ops (no Python loop per sample), on whatever device the batch lives on.

Parameters are drawn (``sample_params``, CPU tensors from the caller's ``torch.Generator``)
separately from being applied (``apply``), so a view can be replayed: epochwise filtering draws one
table for all N samples at epoch start and indexes it by sample (``index_params``), so that the
training pass sees the same augmented view as the scoring pass ("hard" filtering).

Geometry. Flip, random affine and crop-with-padding are composed into one inverse affine map per
sample and applied with a single ``grid_sample`` (one resampling instead of three). Zero padding
followed by a random crop is an integer translation with zero fill; that zero fill is reproduced
with a mask, so the composition equals the sequential flip -> affine -> crop pipeline. Crop padding
is 4 px for 32x32 images and round(size / 8) for other sizes (1 px for 8x8 digits). "thesis"
samples with nearest neighbour, torchvision RandomAffine's default (``interpolation`` can be
"bilinear"). Recipes without an affine ("light") always sample nearest at integer offsets, which
copies pixels exactly.

Colour. Brightness, contrast and saturation are per-sample blends with the same formulas as
torchvision's ColorJitter (grey = 0.299 R + 0.587 G + 0.114 B). Hue is shifted exactly in HSV
space (vectorised RGB -> hue -> RGB, not the YIQ approximation). The four are applied in a fixed
order (brightness, contrast, saturation, hue); torchvision shuffles that order per call. Images
with one channel skip saturation and hue.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F

from assist.registry import Registry

Params = dict[str, torch.Tensor]

_GREY_WEIGHTS = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class Augmentation:
    """One augmentation recipe bound to an image size. Ranges follow torchvision's arguments:
    angle ~ U(-degrees, degrees); affine shift ~ round(U(-translate, translate) * size) pixels;
    scale ~ U(scale); crop shift ~ randint(-padding, padding) pixels per axis; brightness,
    contrast, saturation factors ~ U(max(0, 1 - v), 1 + v); hue shift ~ U(-hue, hue) turns."""

    name: str
    image_size: tuple[int, int]
    flip_p: float = 0.0
    degrees: float = 0.0
    translate: float = 0.0
    scale: tuple[float, float] = (1.0, 1.0)
    crop_padding: tuple[int, int] = (0, 0)  # (rows, columns) of zero padding before the crop
    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    hue: float = 0.0
    interpolation: str = "bilinear"

    def __post_init__(self) -> None:
        h, w = self.image_size
        if h < 1 or w < 1:
            raise ValueError(f"augmentation {self.name!r}: image_size must be positive, got {self.image_size}")
        for key in ("flip_p", "degrees", "translate", "brightness", "contrast", "saturation", "hue"):
            if getattr(self, key) < 0:
                raise ValueError(f"augmentation {self.name!r}: {key} must be >= 0, got {getattr(self, key)}")
        if self.flip_p > 1 or self.hue > 0.5:
            raise ValueError(f"augmentation {self.name!r}: flip_p must be <= 1 and hue <= 0.5")
        if not 0 < self.scale[0] <= self.scale[1]:
            raise ValueError(f"augmentation {self.name!r}: scale must be 0 < low <= high, got {self.scale}")
        if min(self.crop_padding) < 0:
            raise ValueError(f"augmentation {self.name!r}: crop_padding must be >= 0, got {self.crop_padding}")
        if self.interpolation not in ("bilinear", "nearest"):
            raise ValueError(f"augmentation {self.name!r}: interpolation must be 'bilinear' or 'nearest', got {self.interpolation!r}")

    @property
    def uses_affine(self) -> bool:
        return self.degrees > 0 or self.translate > 0 or self.scale != (1.0, 1.0)

    @property
    def param_keys(self) -> tuple[str, ...]:
        """Keys of the parameter dict this recipe draws and expects, in drawing order."""
        keys: list[str] = []
        if self.flip_p > 0:
            keys.append("flip")
        if self.uses_affine:
            keys += ["angle", "scale", "translate"]
        if max(self.crop_padding) > 0:
            keys.append("crop_shift")
        keys += [k for k in ("brightness", "contrast", "saturation", "hue") if getattr(self, k) > 0]
        return tuple(keys)

    @property
    def is_identity(self) -> bool:
        return not self.param_keys

    def sample_params(self, n: int, generator: torch.Generator) -> Params:
        """Per-sample parameters for ``n`` images, drawn only from ``generator`` (a CPU generator).

        ``flip`` bool (n,); ``angle`` degrees (n,); ``scale`` (n,); ``translate`` and ``crop_shift``
        int64 (n, 2) as (dx, dy) pixels the content moves right/down; colour factors float (n,)."""
        if n < 0:
            raise ValueError(f"augmentation {self.name!r}: n must be >= 0, got {n}")
        if not isinstance(generator, torch.Generator) or generator.device.type != "cpu":
            raise ValueError(f"augmentation {self.name!r}: sample_params needs a CPU torch.Generator, got {generator!r}")

        def uniform(low: float, high: float, shape: tuple[int, ...] = (n,)) -> torch.Tensor:
            return low + (high - low) * torch.rand(shape, generator=generator)

        params: Params = {}
        if self.flip_p > 0:
            params["flip"] = torch.rand(n, generator=generator) < self.flip_p
        if self.uses_affine:
            params["angle"] = uniform(-self.degrees, self.degrees)
            params["scale"] = uniform(*self.scale)
            h, w = self.image_size
            max_shift = torch.tensor([self.translate * w, self.translate * h])
            params["translate"] = torch.round(uniform(-1.0, 1.0, (n, 2)) * max_shift).long()
        if max(self.crop_padding) > 0:
            pad_h, pad_w = self.crop_padding
            dx = torch.randint(-pad_w, pad_w + 1, (n,), generator=generator)
            dy = torch.randint(-pad_h, pad_h + 1, (n,), generator=generator)
            params["crop_shift"] = torch.stack([dx, dy], dim=1)
        for key in ("brightness", "contrast", "saturation"):
            strength = getattr(self, key)
            if strength > 0:
                params[key] = uniform(max(0.0, 1.0 - strength), 1.0 + strength)
        if self.hue > 0:
            params["hue"] = uniform(-self.hue, self.hue)
        return params

    def apply(self, x: torch.Tensor, params: Params, *, compiled: bool = False) -> torch.Tensor:
        """Augment float images ``x`` (B, C, H, W) in [0, 1]; returns a new tensor in [0, 1].
        ``compiled``: run the image-sized work through ``torch.compile`` when the recipe has
        colour jitter (fused loops: about 1.5x for "thesis" on a CPU, docs/benchmarks.md), equal
        to the eager result up to rounding."""
        self._check(x, params)
        # Per-sample matrices and masks are small: compute them where the params live (the CPU,
        # usually) and send them to x's device in one copy, so the device runs only image-sized ops.
        plan = {k: params[k] for k in ("brightness", "contrast", "saturation", "hue") if k in params}
        if any(k in params for k in ("flip", "angle", "crop_shift")):
            plan.update(_plan_geometry(params, self.image_size))
        plan = _to_device(plan, x.device)
        # compiled kernels pay where colour jitter makes many image-sized passes to fuse; a
        # flip-and-crop recipe is one cheap resample, faster eager (docs/benchmarks.md)
        colour = any(k in plan for k in ("brightness", "contrast", "saturation", "hue"))
        resample, jitter = _compiled_kernels() if compiled and colour else (_resample, _colour_jitter)
        if "theta" in plan:  # nearest sampling copies pixels exactly for pure flips and integer shifts
            base = _base_grid(x.shape[2], x.shape[3], x.device, x.dtype)
            x = resample(x, plan, self.interpolation if self.uses_affine else "nearest", base)
        return jitter(x, plan)

    def _check(self, x: torch.Tensor, params: Params) -> None:
        if x.dim() != 4 or not x.is_floating_point():
            raise ValueError(f"augmentation {self.name!r}: expected float images (B, C, H, W), got {x.dtype} {tuple(x.shape)}")
        if tuple(x.shape[2:]) != tuple(self.image_size):
            raise ValueError(f"augmentation {self.name!r}: built for {self.image_size[0]}x{self.image_size[1]} images, got {x.shape[2]}x{x.shape[3]}")
        if set(params) != set(self.param_keys):
            raise ValueError(f"augmentation {self.name!r}: params must have keys {sorted(self.param_keys)}, got {sorted(params)}")
        for key, value in params.items():
            if value.shape[0] != x.shape[0]:
                raise ValueError(f"augmentation {self.name!r}: param {key!r} has {value.shape[0]} rows for a batch of {x.shape[0]}")


def index_params(params: Params, positions: torch.Tensor) -> Params:
    """Rows ``positions`` of a parameter table (e.g. one drawn for a whole epoch)."""
    return {key: value[positions.to(value.device)] for key, value in params.items()}


def _to_device(plan: Params, device: torch.device) -> Params:
    """``plan`` on ``device``. For an accelerator it travels as one pinned float32 block: one
    asynchronous copy instead of one copy per key, each of which would wait for the device."""
    if not plan or all(v.device == device for v in plan.values()):
        return plan
    if device.type != "cuda":
        return {k: v.to(device) for k, v in plan.items()}
    n = next(iter(plan.values())).shape[0]
    columns = [v.reshape(n, -1).to(torch.float32) for v in plan.values()]
    block = torch.empty((n, sum(c.shape[1] for c in columns)), pin_memory=True)
    block = torch.cat(columns, dim=1, out=block).to(device, non_blocking=True)
    out, start = {}, 0
    for (key, value), col in zip(plan.items(), columns):
        out[key] = block[:, start:start + col.shape[1]].reshape(value.shape)
        start += col.shape[1]
    return out


def _plan_geometry(p: Params, image_size: tuple[int, int]) -> Params:
    """flip -> affine (rotate about the centre, scale, translate) -> integer shift, as one map.

    In pixel coordinates centred on the image, an output point q reads the input at
    ``Flip @ A^-1 @ (q - shift - translate)`` with ``A = scale * R(angle)``; positive angles turn
    the content counter-clockwise as displayed. The sampling grid wants this map in normalised
    coordinates (pixel * 2 / size), hence the aspect-ratio factors. Missing parameters mean
    identity. Returns ``theta`` (B, 2, 3) and, with a crop, the rows/columns it keeps (1.0) or
    zero-fills (0.0): those whose position before the shift lies outside the image."""
    h, w = image_size
    like = next(iter(p.values()))
    b, device = like.shape[0], like.device
    radians = torch.deg2rad(p["angle"].float()) if "angle" in p else torch.zeros(b, device=device)
    inv_scale = 1.0 / p["scale"].float() if "scale" in p else 1.0
    cos, sin = torch.cos(radians) * inv_scale, torch.sin(radians) * inv_scale
    mirror = 1.0 - 2.0 * p["flip"].float() if "flip" in p else 1.0
    l00, l01, l10, l11 = mirror * cos, -mirror * sin, sin, cos  # Flip @ R(-angle) / scale
    total = torch.zeros(b, 2, device=device)
    for key in ("translate", "crop_shift"):
        if key in p:
            total = total + p[key].float()
    off_x = -(l00 * total[:, 0] + l01 * total[:, 1]) * (2.0 / w)
    off_y = -(l10 * total[:, 0] + l11 * total[:, 1]) * (2.0 / h)
    plan = {"theta": torch.stack([l00, l01 * (h / w), off_x, l10 * (w / h), l11, off_y], dim=1).view(b, 2, 3)}
    if "crop_shift" in p:
        rows = torch.arange(h, device=device) - p["crop_shift"][:, 1:].float()
        cols = torch.arange(w, device=device) - p["crop_shift"][:, :1].float()
        plan["keep_rows"] = ((rows >= 0) & (rows < h)).float()
        plan["keep_cols"] = ((cols >= 0) & (cols < w)).float()
    return plan


@lru_cache(maxsize=16)
def _base_grid(h: int, w: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Pixel-centre coordinates (x, y, 1) in affine_grid's normalised units (align_corners=False),
    shape (H*W, 3); cached because building it costs several small kernel launches per batch."""
    xs = (torch.arange(w, device=device, dtype=dtype) * 2 + 1) / w - 1
    ys = (torch.arange(h, device=device, dtype=dtype) * 2 + 1) / h - 1
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([xx, yy, torch.ones_like(xx)], dim=-1).reshape(h * w, 3)


def _warp(x: torch.Tensor, plan: Params, mode: str) -> torch.Tensor:
    """Resample every image through its own affine map; zero-fill outside, and outside the crop."""
    return _resample(x, plan, mode, _base_grid(x.shape[2], x.shape[3], x.device, x.dtype))


def _resample(x: torch.Tensor, plan: Params, mode: str, base: torch.Tensor) -> torch.Tensor:
    b, _, h, w = x.shape
    theta = plan["theta"].to(x.dtype)
    grid = torch.matmul(base, theta.transpose(1, 2)).view(b, h, w, 2)
    out = F.grid_sample(x, grid, mode=mode, padding_mode="zeros", align_corners=False)
    if "keep_rows" in plan:
        keep = plan["keep_rows"].to(x.dtype)[:, :, None] * plan["keep_cols"].to(x.dtype)[:, None, :]
        out = out.mul_(keep[:, None])
    return out


def _factor(ratio: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return ratio.to(x.dtype)[:, None, None, None]


def _grey(x: torch.Tensor) -> torch.Tensor:
    r, g, b = x.unbind(1)
    return (_GREY_WEIGHTS[0] * r + _GREY_WEIGHTS[1] * g + _GREY_WEIGHTS[2] * b).unsqueeze(1)


def _shift_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate the HSV hue of RGB images by ``shift`` turns per sample (saturation and value kept)."""
    r, g, b = x.unbind(1)
    top, bottom = x.amax(dim=1), x.amin(dim=1)
    spread = top - bottom
    # hue in sextants: (g-b)/spread if red is the maximum, else 2+(b-r)/spread if green, else 4+(r-g)/spread.
    # Branch masks as floats: sign(c - top) + 1 is 1 where c is the maximum; where() and bool ops are slow on CPU.
    red = torch.sign(r - top).add_(1.0)
    green = torch.sign(g - top).add_(1.0).mul_(1.0 - red)
    blue = (1.0 - red).sub_(green)
    sextant = red * (g - b) + green * (b - r + 2.0 * spread) + blue * (r - g + 4.0 * spread)
    sextant = sextant.div_(spread.clamp_min(1e-12))  # grey pixels: numerator 0, hue 0
    sextant = sextant.add_(6.0 * _factor(shift, x)[:, 0])
    # HSV -> RGB without branches: channel = V - (V - min) * clamp(2 - |k - 2|, 0, 1), k = (n + H) mod 6
    n = torch.arange(5.0, 0.0, -2.0, dtype=x.dtype, device=x.device)[None, :, None, None]  # 5, 3, 1 (no host copy)
    k = sextant[:, None] + n
    k = k.sub_(torch.floor(k / 6.0).mul_(6.0))
    ramp = k.sub_(2.0).abs_().neg_().add_(2.0).clamp_(0.0, 1.0)
    return top[:, None] - ramp.mul_(spread[:, None])


def _colour_jitter(x: torch.Tensor, p: Params) -> torch.Tensor:
    """Brightness, contrast, saturation, hue (each only if its parameter is present); every step
    blends towards a reference image and clamps to [0, 1], as torchvision's ColorJitter does."""
    if "brightness" in p:  # blend with black
        x = (x * _factor(p["brightness"], x)).clamp_(0.0, 1.0)
    if "contrast" in p:  # blend with the image's mean grey level (grey is linear: mix channel means)
        means = x.mean(dim=(2, 3), keepdim=True)
        level = _grey(means) if x.shape[1] == 3 else means
        x = torch.lerp(level, x, _factor(p["contrast"], x)).clamp_(0.0, 1.0)
    if x.shape[1] == 3:
        if "saturation" in p:  # blend with the per-pixel grey image
            x = torch.lerp(_grey(x), x, _factor(p["saturation"], x)).clamp_(0.0, 1.0)
        if "hue" in p:
            x = _shift_hue(x, p["hue"])
    return x


@lru_cache(maxsize=1)
def _compiled_kernels():
    """The resampling and colour kernels through torch.compile (dynamic shapes: any batch size)."""
    return torch.compile(_resample, dynamic=True), torch.compile(_colour_jitter, dynamic=True)


AUGMENTATIONS: Registry[Augmentation] = Registry("augmentation")


def default_crop_padding(image_size: tuple[int, int]) -> tuple[int, int]:
    """4 pixels for 32x32 (the CIFAR convention), round(size / 8) for other sizes (1 for 8x8)."""
    return round(image_size[0] / 8), round(image_size[1] / 8)


@AUGMENTATIONS.register("none")
def _none(image_size: tuple[int, int]) -> Augmentation:
    return Augmentation("none", tuple(image_size))


@AUGMENTATIONS.register("light")
def _light(image_size: tuple[int, int]) -> Augmentation:
    """Random crop with padding + horizontal flip (the common CIFAR recipe)."""
    return Augmentation("light", tuple(image_size), flip_p=0.5, crop_padding=default_crop_padding(image_size))


@AUGMENTATIONS.register("thesis")
def _thesis(image_size: tuple[int, int]) -> Augmentation:
    """The thesis's CIFAR recipe (section 4.2.3): flip, affine, crop with padding, colour jitter."""
    return Augmentation(
        "thesis", tuple(image_size), flip_p=0.5, degrees=180.0, translate=0.1, scale=(0.9, 1.1),
        crop_padding=default_crop_padding(image_size),
        brightness=0.5, contrast=0.5, saturation=0.5, hue=0.05, interpolation="nearest",
    )


def make_augmentation(name: str, image_size: tuple[int, int]) -> Augmentation:
    """The recipe registered as ``name``, bound to ``image_size`` (height, width)."""
    return AUGMENTATIONS.create(name, (int(image_size[0]), int(image_size[1])))


def augmentation_names() -> list[str]:
    return AUGMENTATIONS.names()


__all__ = ["AUGMENTATIONS", "Augmentation", "Params", "augmentation_names", "default_crop_padding", "index_params", "make_augmentation"]
