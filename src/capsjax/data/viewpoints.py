"""Viewpoints: recognising toys from viewpoints never seen in training, generated on the spot (smallNORB-like).

smallNORB (LeCun et al. 2004) photographs 5 categories of toys, 10 instances each, from 18 azimuths x 9
elevations under 6 lightings; Hinton, Sabour & Frosst (2018, sec. 6) train matrix capsules on some
viewpoints and test on the others. This dataset renders the same design without a download:

- **Categories** (labels 0-4, ``class_names``): animal, human, airplane, truck, car, each built from
  parametrised parts (:mod:`capsjax.data.shapes`): an animal is an ellipsoid body and head on four
  cylinder legs with a cylinder neck and tail; a human a box torso, ellipsoid head, cylinder arms and
  legs; an airplane an ellipsoid fuselage with box wings, tailplane and fin (some with two cylinder
  engines); a truck a box cab, cargo box and chassis on six cylinder wheels; a car a box body under an
  ellipsoid cabin on four wheels.
- **Instances**: 10 per category with different proportions (lengths, radii, angles drawn from the
  category's ranges, seeded by ``(seed, category, instance)``); instances 0-4 make the training split,
  5-9 the test split, as in smallNORB.
- **Factors** (``dataset.factors``, int32 per image): ``instance`` (0-9), ``azimuth`` (0, 20, ..., 340
  degrees), ``elevation`` (30, 35, ..., 70 degrees) and ``lighting`` (0-3: light from the upper left,
  upper right, front, top, fixed relative to the camera).
- **Images**: 48x48x1 uint8, orthographic views of the object centred at the origin, black background
  (0), object shaded 30-255 (Lambertian with ambient 0.15, :mod:`capsjax.data.rendering`).
- **Sizes**: 5 categories x 5 instances x 18 azimuths x 9 elevations x 4 lightings = 16,200 images per
  split, every combination once, stored in an order shuffled by ``seed`` (so ``num_examples`` takes
  a random subset of all categories and viewpoints).
- **Generation**: both splits in 20 s on 2 busy CPU cores (10.8 s train, 9.4 s test, compilation and the
  compressed write included; measured on a shared 2-core machine), then read in 0.1 s from
  ``$CAPSJAX_CACHE_DIR`` (default ``~/.cache/capsjax``), ``viewpoints_<split>_seed<seed>_v<version>.npz``
  (3.9 MB each).

Protocols (:func:`viewpoint_split`), as Hinton et al. (2018):

- ``"azimuth"``: familiar = azimuths 300, 320, 340, 0, 20, 40; novel = 60 to 280.
- ``"elevation"``: familiar = the 3 lowest elevations (30, 35, 40); novel = the 6 highest (45 to 70).

Train on the familiar part of the training split; test on the familiar and the novel parts of the test
split (new instances) to compare recognition from familiar and novel viewpoints.
"""

from __future__ import annotations

import os
import pathlib

import numpy as np

from capsjax.data.atomic import atomic_path
from capsjax.data.dataset import ArrayDataset
from capsjax.data.rendering import render
from capsjax.data.shapes import CATEGORIES, build_scene
from capsjax.errors import DataError, UsageError

AZIMUTHS = tuple(range(0, 360, 20))
ELEVATIONS = tuple(range(30, 75, 5))
LIGHTS = np.array([[-0.5, 0.6, 0.6], [0.6, 0.5, 0.6], [0.0, 0.2, 1.0], [0.0, 0.9, 0.4]])
LIGHTS = (LIGHTS / np.linalg.norm(LIGHTS, axis=1, keepdims=True)).astype(np.float32)  # camera frame: right, up, back
LIGHTINGS = tuple(range(len(LIGHTS)))
INSTANCES = {"train": (0, 1, 2, 3, 4), "test": (5, 6, 7, 8, 9)}
SIZE = 48
FACTORS = ("instance", "azimuth", "elevation", "lighting")
PROTOCOLS = {
    "azimuth": ("azimuth", (300, 320, 340, 0, 20, 40)),
    "elevation": ("elevation", ELEVATIONS[:3]),
}
"""Protocol name -> (the factor it splits on, its familiar values); every other value is novel."""
_VERSION = 1  # part of the cache file's name: bump it when the images change


def _check_split(split: str) -> None:
    if split not in INSTANCES:
        raise UsageError(f"viewpoints: unknown split {split!r}; choose one of {sorted(INSTANCES)}")


def make_viewpoints(
    split: str,
    *,
    seed: int = 0,
    categories=None,
    instances=None,
    azimuths=AZIMUTHS,
    elevations=ELEVATIONS,
    lightings=LIGHTINGS,
) -> ArrayDataset:
    """Render every (category, instance, azimuth, elevation, lighting) combination asked for.

    Args:
      split: "train" or "test"; ``instances`` defaults to its instances (0-4 or 5-9).
      seed: chooses every instance's proportions.
      categories: category indices (default all of :data:`~capsjax.data.shapes.CATEGORIES`).
      instances, azimuths, elevations, lightings: subsets of the defaults, e.g. to render a few images.

    Returns:
      An :class:`ArrayDataset` of images ``[n, 48, 48, 1]`` uint8, labels ``[n]`` int32 (the category) and
      factors ``[n]`` int32 each, in the order category, instance, azimuth, elevation, lighting (the
      last varying fastest).
    """
    _check_split(split)
    categories = range(len(CATEGORIES)) if categories is None else categories
    instances = INSTANCES[split] if instances is None else instances
    for name, asked, known in (("categories", categories, range(len(CATEGORIES))), ("lightings", lightings, LIGHTINGS)):
        if not set(asked) <= set(known):
            raise UsageError(f"make_viewpoints: {name} {list(asked)} are not all in {list(known)}; choose from those")
    views = np.array([(a, e) for a in azimuths for e in elevations], np.float32).reshape(-1, 2)
    images, labels, factors = [], [], {name: [] for name in FACTORS}
    for category in categories:
        for instance in instances:
            images.append(render(build_scene(category, instance, seed=seed), views, LIGHTS[list(lightings)], size=SIZE))
            grid = np.meshgrid([category], [instance], azimuths, elevations, lightings, indexing="ij")
            labels.append(grid[0].reshape(-1))
            for name, values in zip(FACTORS, grid[1:], strict=True):
                factors[name].append(values.reshape(-1))
    return ArrayDataset(
        np.concatenate(images).reshape(-1, SIZE, SIZE, 1),
        np.concatenate(labels).astype(np.int32),
        f"viewpoints(seed={seed})",
        class_names=CATEGORIES,
        factors={name: np.concatenate(values).astype(np.int32) for name, values in factors.items()},
    )


def cache_dir() -> pathlib.Path:
    return pathlib.Path(os.environ.get("CAPSJAX_CACHE_DIR", pathlib.Path.home() / ".cache" / "capsjax"))


def _write(path: pathlib.Path, data: ArrayDataset) -> None:
    with atomic_path(path) as temporary, open(temporary, "wb") as file:  # a file object: savez adds no ".npz"
        np.savez_compressed(file, images=data.images, labels=data.labels, **data.factors)


def _read(path: pathlib.Path) -> ArrayDataset:
    try:
        with np.load(path) as f:
            factors = {name: f[name] for name in FACTORS}
            return ArrayDataset(f["images"], f["labels"], str(path), class_names=CATEGORIES, factors=factors)
    except (OSError, KeyError, ValueError) as err:
        raise DataError(f"{path}: not a viewpoints cache file ({err}); delete it to generate it again") from None


def load_viewpoints(split: str, *, data_dir=None, num_examples: int | None = None, seed: int = 0) -> ArrayDataset:
    """The whole split (16,200 images) in an order shuffled by ``seed``, or its first ``num_examples``.

    Generated on first use (about 10 s a split on 2 CPU cores) and saved in the cache folder, then read from
    there. ``data_dir`` is not used: nothing is read but the cache.
    """
    _check_split(split)
    path = cache_dir() / f"viewpoints_{split}_seed{seed}_v{_VERSION}.npz"
    if not path.exists():
        data = make_viewpoints(split, seed=seed)
        order = np.random.default_rng([seed, split == "test"]).permutation(len(data))
        _write(path, data.select(order))
    return _read(path).take(num_examples)


def viewpoint_split(dataset: ArrayDataset, protocol: str, part: str) -> ArrayDataset:
    """The images of ``dataset`` seen from familiar or from novel viewpoints under ``protocol``.

    Args:
      dataset: a dataset with factors (from :func:`load_viewpoints` or :func:`make_viewpoints`).
      protocol: "azimuth" or "elevation" (see :data:`PROTOCOLS`).
      part: "familiar" (the training viewpoints) or "novel" (the others).

    Returns:
      The images whose factor is (familiar) or is not (novel) one of the protocol's familiar values,
      in their order in ``dataset``, with their labels and factors.
    """
    if protocol not in PROTOCOLS:
        raise UsageError(f"viewpoint_split: unknown protocol {protocol!r}; choose one of {sorted(PROTOCOLS)}")
    if part not in ("familiar", "novel"):
        raise UsageError(f"viewpoint_split: unknown part {part!r}; choose 'familiar' or 'novel'")
    factor, familiar = PROTOCOLS[protocol]
    if dataset.factors is None or factor not in dataset.factors:
        raise UsageError(f"viewpoint_split: {dataset.source} has no {factor!r} factor; use the viewpoints dataset")
    is_familiar = np.isin(dataset.factors[factor], familiar)
    return dataset.select(np.flatnonzero(is_familiar if part == "familiar" else ~is_familiar))
