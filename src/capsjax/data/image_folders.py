"""Images read with their sizes checked first, and datasets stored as folders of images.

:func:`open_image` reads an image's header and refuses one of more than :data:`MAX_IMAGE_PIXELS` pixels
before anything is decoded (PIL's decompression-bomb errors and warnings are refused the same way);
:func:`decode_image` decodes it. :func:`read_image_folder` reads one split of ``PATH/train/<class>/*``
and ``PATH/test/<class>/*``, or of ``PATH/<class>/*`` split by a seeded test fraction: classes sorted by
name, label = position, every image of one size, all of them together within
:data:`capsjax.data.idx.MAX_ARRAY_BYTES`. Every problem is one :class:`DataFormatError` naming the file.

:mod:`capsjax.data.file_formats` tells this format from the others and re-exports every public name.
"""

from __future__ import annotations

import contextlib
import pathlib
import warnings
from collections.abc import Iterator

import numpy as np
from PIL import Image, UnidentifiedImageError

from capsjax.data import idx
from capsjax.data.dataset import ArrayDataset
from capsjax.data.format_errors import DataFormatError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
MAX_IMAGE_PIXELS = 1 << 24  # 4096 x 4096: far above any image a capsule network is trained on
_GRAY_MODES = ("1", "L", "I", "I;16", "F")


def class_folders(root: pathlib.Path) -> list[pathlib.Path]:
    """The class sub-folders of ``root``, sorted by name (hidden folders skipped)."""
    return sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)


def _image_files(folder: pathlib.Path) -> list[pathlib.Path]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataFormatError(f"{folder}: an empty class folder (no {'/'.join(IMAGE_SUFFIXES)} files)")
    return files


@contextlib.contextmanager
def open_image(path: str | pathlib.Path) -> Iterator[Image.Image]:
    """``path`` opened with PIL (not yet decoded), its size checked against :data:`MAX_IMAGE_PIXELS`.

    Raises:
      DataFormatError: not an image PIL reads, or larger than the limit (a decompression bomb: a small
        file that would decode to gigabytes).
    """
    path = pathlib.Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise DataFormatError(
            f"{path}: refused before decoding: {err} (the limit here: {MAX_IMAGE_PIXELS} pixels, 4096x4096)"
        ) from None
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise DataFormatError(f"{path}: not a readable image ({err})") from None
    with image:
        width, height = image.size
        if width * height > MAX_IMAGE_PIXELS:
            raise DataFormatError(
                f"{path}: a {width}x{height} image ({width * height} pixels), more than the limit of "
                f"{MAX_IMAGE_PIXELS} (4096x4096); resize it first"
            )
        yield image


def decode_image(path: str | pathlib.Path, image: Image.Image, mode: str) -> np.ndarray:
    """The pixels of an image from :func:`open_image`, converted to ``mode`` ("L" or "RGB"), as uint8."""
    try:
        return np.asarray(image.convert(mode), np.uint8)
    except (Image.DecompressionBombError, UnidentifiedImageError, OSError, ValueError) as err:
        raise DataFormatError(f"{path}: not a readable image ({err})") from None


def _image_shape(path: pathlib.Path) -> tuple[int, int, int]:
    """``(height, width, channels)`` of an image from its header (1 channel for grayscale, else 3)."""
    with open_image(path) as image:
        return image.height, image.width, 1 if image.mode in _GRAY_MODES else 3


def _read_image(path: pathlib.Path) -> np.ndarray:
    with open_image(path) as image:
        array = decode_image(path, image, "L" if image.mode in _GRAY_MODES else "RGB")
    return array[..., None] if array.ndim == 2 else array


def _stack_images(paths: list[pathlib.Path]) -> np.ndarray:
    """``[n, h, w, c]`` of same-size images; grayscale ones among colour ones get 3 equal channels.

    Sizes come from the headers first: a size that differs, or more bytes than
    :data:`capsjax.data.idx.MAX_ARRAY_BYTES` in all, is refused before any image is decoded.
    """
    shapes = [_image_shape(p) for p in paths]
    height, width = shapes[0][:2]
    for path, shape in zip(paths, shapes, strict=True):
        if shape[:2] != (height, width):
            raise DataFormatError(
                f"{path}: size {shape[1]}x{shape[0]} differs from {width}x{height} ({paths[0]}); "
                "resize the images to one size"
            )
    channels = max(shape[2] for shape in shapes)
    nbytes = len(paths) * height * width * channels
    if nbytes > idx.MAX_ARRAY_BYTES:
        raise DataFormatError(
            f"{paths[0].parent.parent}: {len(paths)} images of {width}x{height}x{channels} need {nbytes} bytes, "
            f"more than the limit of {idx.MAX_ARRAY_BYTES} (the machine's memory); use fewer or smaller images"
        )
    images = np.empty((len(paths), height, width, channels), np.uint8)
    for k, path in enumerate(paths):
        image = _read_image(path)
        if image.shape[:2] != (height, width):  # the file changed since its header was read
            raise DataFormatError(f"{path}: size {image.shape[1]}x{image.shape[0]} differs from {width}x{height}")
        images[k] = image  # a grayscale image among colour ones broadcasts to 3 equal channels
    return images


def read_image_folder(root: pathlib.Path, split: str, *, test_fraction: float = 0.1, seed: int = 0) -> ArrayDataset:
    """``root/train/<class>/*`` and ``root/test/<class>/*``, or ``root/<class>/*`` split by ``test_fraction``.

    Without train/ and test/, each class's files (sorted by name) are shuffled with ``seed`` and
    its last ``round(test_fraction * n)`` (at least 1) go to the test split.
    """
    root = pathlib.Path(root)
    if (root / "train").is_dir() and (root / "test").is_dir():
        train_classes = [p.name for p in class_folders(root / "train")]
        test_classes = [p.name for p in class_folders(root / "test")]
        if test_classes != train_classes:
            raise DataFormatError(
                f"{root}: train/ has classes {train_classes} but test/ has {test_classes}; they must match"
            )
        folders = class_folders(root / split)
        per_class = [_image_files(f) for f in folders]
    else:
        if not 0 < test_fraction < 1:
            raise DataFormatError(f"{root}: test_fraction must be within (0, 1), got {test_fraction}")
        folders = class_folders(root)
        per_class = []
        rng = np.random.default_rng(seed)
        for folder in folders:
            files = _image_files(folder)
            if len(files) < 2:
                raise DataFormatError(f"{folder}: {len(files)} image; at least 2 per class to split train/test")
            order = rng.permutation(len(files))
            n_test = min(len(files) - 1, max(1, round(test_fraction * len(files))))
            chosen = order[len(files) - n_test :] if split == "test" else order[: len(files) - n_test]
            per_class.append([files[i] for i in sorted(chosen)])
    if not folders:
        raise DataFormatError(f"{root}: no class folders")
    paths = [p for files in per_class for p in files]
    labels = np.concatenate([np.full(len(files), label, np.int32) for label, files in enumerate(per_class)])
    return ArrayDataset(_stack_images(paths), labels, str(root), class_names=tuple(f.name for f in folders))
