"""Classify and reconstruct image files with a trained run (``capsjax predict``)."""

from __future__ import annotations

import pathlib
from collections.abc import Sequence

import numpy as np
from flax import nnx

from capsjax.data.image_files import read_image, save_png, to_uint8
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
    The model is a run's latest checkpoint (``workdir``) or, with ``weights``, a weights file
    (reconstructions then go to ``./predictions`` unless ``output_dir`` says otherwise).

    Raises:
      ValueError: an input is not an image or has the wrong size (checked before any work).
    """
    if weights is not None:
        config, graphdef, params, class_names = read_weights(weights)
    else:
        config, graphdef, params = restore_params(workdir)
        class_names = recorded_class_names(pathlib.Path(workdir) / "config.json")
    model_config = getattr(config, config.model)
    images = np.stack([read_image(p, shape=model_config.image_shape, resize=resize) for p in image_paths])
    output = model_outputs(nnx.merge(graphdef, params), images)
    output_dir = pathlib.Path(output_dir or pathlib.Path(workdir or ".") / "predictions")
    results = []
    for k, path in enumerate(image_paths):
        recon_path = None
        if output.reconstructions is not None:
            pair = np.concatenate([images[k], to_uint8(output.reconstructions[k])], axis=1)
            recon_path = str(save_png(output_dir / f"{pathlib.Path(path).stem}_reconstruction.png", pair, scale=4))
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
