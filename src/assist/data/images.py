"""Decoding many small image files into one uint8 array, in parallel when it pays.

Each image becomes ``(H, W)`` (grayscale) or ``(H, W, 3)`` (colour). Grayscale modes ("1",
"L", "LA", 16-bit "I;16") give one channel; every other mode (RGB, RGBA, palette, CMYK, ...)
is converted to RGB, dropping alpha. A set mixing grayscale and colour images becomes RGB
(grayscale repeated over three channels): that loses nothing, unlike converting colour to
grey. Images of different sizes are an error, never resized silently.
"""

from __future__ import annotations

import io
import multiprocessing
import os
from collections import Counter
from pathlib import Path
from typing import Sequence, Union

import numpy as np
from PIL import Image

from assist.data.base import DataError

Source = Union[bytes, Path]  # file content (read from an archive) or a path on disk
GRAY_MODES = {"1", "L", "LA", "I;16", "I;16L", "I;16B", "I;16N"}
POOL_MIN_IMAGES = 4096  # below this, starting worker processes costs more than it saves
CHUNK = 2048
PROGRESS_FROM = 1000  # images; smaller sets decode in well under a second


def pixel_limits() -> tuple[int, int]:
    """(pixels one image may have, bytes a whole decoded data set may take), from
    ``ASSIST_MAX_IMAGE_PIXELS`` and ``ASSIST_MAX_DATASET_BYTES`` (defaults: 4096 x 4096, 8 GiB)."""
    values = []
    for name, default in (("ASSIST_MAX_IMAGE_PIXELS", 4096 * 4096), ("ASSIST_MAX_DATASET_BYTES", 8 << 30)):
        text = os.environ.get(name, "")
        try:
            values.append(int(text) if text.strip() else default)
        except ValueError:
            raise DataError(f"{name}={text!r} is not a whole number") from None
    return values[0], values[1]


def _open(source: Source) -> Image.Image:
    return Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)


def image_bytes(source: Source, limit: int) -> int:
    """The bytes an image will take decoded (``H x W x channels``), read from its header
    alone; ValueError when it has more than ``limit`` pixels (a decompression bomb)."""
    with _open(source) as image:
        width, height = image.size
        if width * height > limit:
            raise ValueError(f"{width}x{height} is {width * height:,} pixels, over the limit of {limit:,} per "
                             "image (ASSIST_MAX_IMAGE_PIXELS)")
        return width * height * (1 if image.mode in GRAY_MODES else 3)


def decode_image(source: Source) -> np.ndarray:
    """One image as uint8 ``(H, W)`` or ``(H, W, 3)``; raises on anything unreadable. Its size
    was checked against the pixel limits from its header first (``decode_all``)."""
    with _open(source) as image:
        image.load()
        if image.mode.startswith("I;16"):
            return (np.asarray(image, dtype=np.uint16) >> 8).astype(np.uint8)  # keep the top 8 bits
        if image.mode in ("L", "RGB"):  # the common case needs no conversion
            return np.asarray(image, dtype=np.uint8)
        if image.mode in GRAY_MODES:
            return np.asarray(image.convert("L"), dtype=np.uint8)
        if image.mode == "I":  # Pillow < 10.1 opens 16-bit grayscale PNGs as 32-bit "I"
            values = np.asarray(image, dtype=np.int32)
            if values.size and values.min() >= 0 and values.max() <= 0xFFFF:
                return (values >> 8).astype(np.uint8)
        if image.mode in ("I", "F"):
            raise ValueError(f"unsupported {image.mode!r} (32-bit) image mode")
        return np.asarray(image.convert("RGB"), dtype=np.uint8)


def _decode_chunk(items: Sequence[tuple[str, Source]]) -> list[np.ndarray] | tuple[str, str]:
    """Decode a chunk; on the first failure return ``(name, reason)`` instead of raising, so
    the parent can report the file by name whatever the worker's exception was."""
    out = []
    for name, source in items:
        try:
            out.append(decode_image(source))
        except Exception as exc:  # noqa: BLE001 - any decoder failure means a bad file
            return name, f"{type(exc).__name__}: {exc}"
    return out


def _workers(count: int) -> int:
    if count < POOL_MIN_IMAGES or "fork" not in multiprocessing.get_all_start_methods():
        return 1
    return max(1, min(os.cpu_count() or 1, 8))


def decode_all(items: Sequence[tuple[str, Source]], where: str) -> np.ndarray:
    """Decode every ``(name, source)`` into one ``(N, C, H, W)`` uint8 array.

    DataError names the first file that cannot be decoded, or the first whose size differs
    from the most common size. Large sets are decoded by a pool of forked worker processes
    (they only run Pillow and numpy, never torch).
    """
    from tqdm.auto import tqdm

    _check_sizes(items, where)
    chunk = CHUNK if len(items) >= 4 * CHUNK else max(1, len(items) // 8)  # a moving bar for mid-sized sets
    chunks = [items[i:i + chunk] for i in range(0, len(items), chunk)]
    workers = _workers(len(items))
    # On a terminal, long decodes say what is happening (a bar of images); elsewhere nothing.
    bar = tqdm(total=len(items), desc=f"decoding {len(items):,} images", unit="img", leave=False,
               disable=None if len(items) >= PROGRESS_FROM else True, dynamic_ncols=True)
    results = []
    with bar:
        if workers > 1:
            with multiprocessing.get_context("fork").Pool(workers) as pool:
                for result, part in zip(pool.imap(_decode_chunk, chunks), chunks):
                    results.append(result)
                    bar.update(len(part))
        else:
            for part in chunks:
                results.append(_decode_chunk(part))
                bar.update(len(part))
    arrays: list[np.ndarray] = []
    for result in results:
        if isinstance(result, tuple):
            name, reason = result
            raise DataError(f"{where}: cannot decode image {name}: {reason}")
        arrays.extend(result)
    return _stack(arrays, [name for name, _ in items], where)


def _check_sizes(items: Sequence[tuple[str, Source]], where: str) -> None:
    """Every image's size from its header, before anything is decoded: one over the per-image
    limit, or a set over the per-data-set limit, is refused naming the file or the total."""
    per_image, per_set = pixel_limits()
    total = 0
    for name, source in items:
        try:
            total += image_bytes(source, per_image)
        except ValueError as error:
            raise DataError(f"{where}: image {name}: {error}") from None
        except Exception:  # noqa: BLE001 - an unreadable header: the decode below names the file
            continue
        if total > per_set:
            raise DataError(f"{where}: the images decode to more than {per_set:,} bytes (reached at {name}; "
                            "the limit is ASSIST_MAX_DATASET_BYTES)")


def _stack(arrays: list[np.ndarray], names: list[str], where: str) -> np.ndarray:
    if not arrays:
        raise DataError(f"{where}: no images")
    sizes = Counter(a.shape[:2] for a in arrays)
    size = sizes.most_common(1)[0][0]
    if len(sizes) > 1:
        odd = next(i for i, a in enumerate(arrays) if a.shape[:2] != size)
        raise DataError(f"{where}: image {names[odd]} is {arrays[odd].shape[1]}x{arrays[odd].shape[0]}, "
                        f"but most images are {size[1]}x{size[0]}; resize them to one size")
    if all(a.ndim == 2 for a in arrays):
        return np.stack(arrays)[:, None]
    # Mixed sets (rare) repeat their grayscale images over three channels first.
    rgb = [a if a.ndim == 3 else np.repeat(a[:, :, None], 3, axis=2) for a in arrays]
    return np.ascontiguousarray(np.stack(rgb).transpose(0, 3, 1, 2))
