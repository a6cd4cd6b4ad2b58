"""Classify and reconstruct image files with a trained run (``capsjax predict``)."""

from __future__ import annotations

import pathlib
from collections.abc import Sequence

import jax
import numpy as np
from flax import nnx

from capsjax.images import read_image, save_png
from capsjax.run import restore_params


def predict_files(workdir, image_paths: Sequence[str], *, output_dir=None) -> list[dict]:
    """For each image: predicted class, class-capsule lengths and a reconstruction PNG.

    Raises:
      ValueError: an input is not an image or has the wrong size (checked before any work).
    """
    config, graphdef, params = restore_params(workdir)
    model_config = getattr(config, config.model)
    images = np.stack([read_image(p, shape=model_config.image_shape) for p in image_paths])
    output = jax.jit(lambda m, x: m(x))(nnx.merge(graphdef, params), images)
    output_dir = pathlib.Path(output_dir or pathlib.Path(workdir) / "predictions")
    results = []
    for k, path in enumerate(image_paths):
        recon_path = None
        if output.reconstructions is not None:
            pair = np.concatenate([images[k], np.asarray(output.reconstructions[k])], axis=1)
            recon_path = str(save_png(output_dir / f"{pathlib.Path(path).stem}_reconstruction.png", pair, scale=4))
        lengths = np.asarray(output.lengths[k])
        results.append({"image": str(path), "class": int(lengths.argmax()), "lengths": lengths.tolist(),
                        "reconstruction": recon_path})
    return results
