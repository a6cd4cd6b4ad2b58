"""Classify and reconstruct image files with a trained run (``capsjax predict``)."""

from __future__ import annotations

import os
import pathlib
from collections.abc import Sequence

import numpy as np
from flax import nnx

from capsjax.data.image_files import read_image, save_png, to_uint8
from capsjax.errors import UsageError
from capsjax.training.checkpoint import restore_params
from capsjax.training.config import recorded_class_names
from capsjax.training.evaluation import model_outputs
from capsjax.training.weights import read_weights


def classify_files(
    workdir, image_paths: Sequence[str], *, output_dir=None, resize: bool = False, weights=None
) -> list[dict]:
    """For each image: predicted class (and its name, for runs on an image folder), class scores and a
    reconstruction PNG (input beside reconstruction).

    Images are read with the model's size and channels (grayscale or RGB); ``resize`` fits other sizes.
    The model is a run's latest checkpoint (``workdir``) or, with ``weights``, a weights file (checked
    whole first, :func:`~capsjax.training.weights.read_weights`). Reconstructions go to ``output_dir``,
    by default :func:`default_output_dir`: ``WORKDIR/predictions`` for a run, ``./predictions`` for a
    weights file. Each image gets its own file, :func:`reconstruction_names`: images of one name in
    different folders do not overwrite each other's. Each file is written atomically.

    Returns:
      one dict per image, in order: ``image``, ``class``, ``class_name`` (None without names),
      ``scores`` (a list, one per class) and ``reconstruction`` (the PNG's path; None for a model
      without a decoder).

    Raises:
      ValueError: an input is not an image or has the wrong size (checked before any work).
      WeightsError: ``weights`` is not a usable weights file.
      StorageError: a reconstruction cannot be written (a full disk), naming its path.
    """
    if weights is not None:
        config, graphdef, params, class_names = read_weights(weights)
    else:
        config, graphdef, params = restore_params(workdir)
        class_names = recorded_class_names(pathlib.Path(workdir) / "config.json")
    model_config = getattr(config, config.model)
    images = np.stack([read_image(p, shape=model_config.image_shape, resize=resize) for p in image_paths])
    output_dir = pathlib.Path(output_dir) if output_dir is not None else default_output_dir(workdir)
    _check_output_dir(output_dir)
    output = model_outputs(nnx.merge(graphdef, params), images)
    names = reconstruction_names(image_paths)
    results = []
    for k, path in enumerate(image_paths):
        recon_path = None
        if output.reconstructions is not None:
            pair = np.concatenate([images[k], to_uint8(output.reconstructions[k])], axis=1)
            recon_path = str(save_png(output_dir / names[k], pair, scale=4))
        scores = output.scores[k]
        label = int(scores.argmax())
        results.append(
            {
                "image": str(path),
                "class": label,
                "class_name": class_names[label] if class_names else None,
                "scores": scores.tolist(),
                "reconstruction": recon_path,
            }
        )
    return results


def _check_output_dir(output_dir: pathlib.Path) -> None:
    """Create ``output_dir``; a path that cannot be a folder (under a file, not writable) is bad input."""
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"--output-dir {output_dir}: cannot write there ({err.strerror or err})") from None


def default_output_dir(workdir: str | os.PathLike | None) -> pathlib.Path:
    """Where ``capsjax predict`` writes reconstructions unless told: ``WORKDIR/predictions`` for a
    run, ``./predictions`` (in the current folder) for a weights file (``workdir`` None)."""
    return pathlib.Path(workdir or ".") / "predictions"


def reconstruction_names(image_paths: Sequence[str | os.PathLike]) -> list[str]:
    """One distinct file name per image, in order: ``STEM_reconstruction.png``, and for a stem already
    used ``STEM-2_reconstruction.png``, ``STEM-3_...`` (the first free number).

    Deterministic (the same paths in the same order give the same names), and distinct even where
    file names differ only in case (macOS and Windows would write them to one file).

    Example:
      >>> reconstruction_names(["a/7.png", "b/7.png", "c/8.png"])
      ['7_reconstruction.png', '7-2_reconstruction.png', '8_reconstruction.png']
    """
    used, names = set(), []
    for path in image_paths:
        stem = pathlib.Path(path).stem
        name, count = stem, 1
        while name.casefold() in used:
            count += 1
            name = f"{stem}-{count}"
        used.add(name.casefold())
        names.append(f"{name}_reconstruction.png")
    return names
