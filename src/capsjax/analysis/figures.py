"""Figures of trained models as PNG files (matplotlib's object API: no pyplot, no display, no global backend)."""

from __future__ import annotations

import math
import pathlib

import jax.numpy as jnp
import numpy as np
from flax import nnx
from matplotlib.figure import Figure

from capsjax.analysis.probes import PAPER_DELTAS, couplings_by_iteration, perturbation_grid
from capsjax.data.dataset import ArrayDataset
from capsjax.data.image_files import reconstruction_grid, save_png, tile
from capsjax.nn.capsnet import CapsNet
from capsjax.ops.augmentation import augment_batch
from capsjax.ops.preprocess import to_float
from capsjax.training.checkpoint import restore_params
from capsjax.training.evaluation import model_outputs


def plot_perturbations(model, images, path: pathlib.Path, deltas=PAPER_DELTAS) -> pathlib.Path:
    """Paper Fig. 4: one block per image, rows = the 16 capsule dimensions, columns = deltas."""
    blocks = []
    for image in images:
        grid, _ = perturbation_grid(model, to_float(image), deltas)
        grid = np.asarray(grid)
        blocks.append(tile(grid.reshape((-1,) + grid.shape[2:]), columns=grid.shape[1], padding=1))
    fig = Figure(figsize=(4.2 * len(blocks), 6.5))
    axes = fig.subplots(1, len(blocks))
    for ax, block in zip(np.atleast_1d(axes), blocks, strict=True):
        ax.imshow(block, cmap="gray")
        ax.set_xticks(
            np.linspace(14, block.shape[1] - 14, len(deltas)), [f"{d:+.2f}" for d in deltas], rotation=90, fontsize=6
        )
        ax.set_yticks(
            np.linspace(14, block.shape[0] - 14, grid.shape[0]), [f"dim {d}" for d in range(grid.shape[0])], fontsize=6
        )
    fig.suptitle("Reconstructions while one dimension of the winning capsule moves by -0.25..+0.25")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def plot_couplings(model, image, path: pathlib.Path, *, iterations: int = 3) -> pathlib.Path:
    """For one image: the coupling of every primary capsule to the predicted class, per capsule type
    (6x6 maps), after 1 and after ``iterations`` routing iterations, beside the image."""
    maps, scores = couplings_by_iteration(model, to_float(image), iterations)
    maps, scores = np.asarray(maps), np.asarray(scores)
    winner = int(scores[-1].argmax())
    types = maps.shape[3]
    cols = 8
    rows = math.ceil(types / cols)
    fig = Figure(figsize=(2 + 2 * cols * 0.9, 1.2 * rows + 1.2))
    grid = fig.add_gridspec(rows, 1 + 2 * cols + 1, width_ratios=[3] + [1] * cols + [0.3] + [1] * cols)
    ax = fig.add_subplot(grid[:, 0])
    ax.imshow(np.asarray(image)[..., 0], cmap="gray")
    ax.set_title(f"input, predicted {winner}", fontsize=8)
    ax.axis("off")
    vmin, vmax = maps[:, :, :, :, winner].min(), maps[:, :, :, :, winner].max()
    for panel, it in enumerate((0, iterations - 1)):
        for t in range(types):
            r, c = divmod(t, cols)
            axis = fig.add_subplot(grid[r, 1 + panel * (cols + 1) + c])
            shown = axis.imshow(maps[it, :, :, t, winner], vmin=vmin, vmax=vmax, cmap="viridis")
            axis.set_xticks([])
            axis.set_yticks([])
            if r == 0 and c == 0:
                axis.set_title(f"after {it + 1} iteration{'s' * (it > 0)}", fontsize=8, loc="left")
    fig.colorbar(shown, ax=fig.axes, fraction=0.015, pad=0.01, label=f"c_ij to class {winner}")
    fig.suptitle(
        f"Coupling c_ij of each primary capsule (6x6 grid per type) to class capsule {winner} "
        f"(uniform 1/{maps.shape[-1]} after the first iteration)",
        fontsize=9,
    )
    fig.savefig(path, dpi=110)
    return path


def reconstructions_with_failures(
    model, dataset: ArrayDataset, path: pathlib.Path, *, count: int = 16, search: int = 2000
) -> tuple[pathlib.Path, int]:
    """Inputs over reconstructions: the first ``count`` test images, then up to ``count`` misclassified."""
    images, labels = dataset.images[:search], dataset.labels[:search]
    output = model_outputs(model, images)
    predicted, recon = output.scores.argmax(-1), output.reconstructions
    wrong = np.flatnonzero(predicted != labels)[:count]
    chosen = np.concatenate([np.arange(count), wrong])
    save_png(path, reconstruction_grid(images[chosen], recon[chosen], columns=8), scale=3)
    return path, len(wrong)


def capsule_figures(workdir, dataset: ArrayDataset, out_dir=None, *, examples: int = 3) -> dict:
    """All figures of a CapsNet run's latest checkpoint (in ``workdir`` by default); returns the paths written."""
    config, graphdef, params = restore_params(workdir)
    if config.model != "capsnet":
        raise ValueError(f"{workdir}: capsule figures need a CapsNet run, got model {config.model!r}")
    return model_figures(nnx.merge(graphdef, params), dataset, out_dir or workdir, examples=examples)


def model_figures(model, dataset: ArrayDataset, out_dir, *, examples: int = 3) -> dict:
    """Fig. 4 (dimension perturbations) and reconstructions with failures of a model with a decoder
    (a CapsNet or an EfficientCapsNet, e.g. :func:`capsjax.load_weights`'s) on ``dataset``, and a
    CapsNet's couplings by routing iteration, as PNGs in ``out_dir``; returns the paths."""
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    recon_path, failures = reconstructions_with_failures(model, dataset, out_dir / "reconstructions_and_failures.png")
    figures = {
        "perturbations": str(plot_perturbations(model, dataset.images[:examples], out_dir / "capsule_dimensions.png")),
        "reconstructions": str(recon_path),
        "failures_shown": failures,
        "digits": len(dataset.images[:examples]),
    }
    if isinstance(model, CapsNet):  # couplings after 1, 2, 3 iterations of dynamic routing
        figures["couplings"] = str(plot_couplings(model, dataset.images[0], out_dir / "couplings.png"))
    return figures


def augmentation_examples(images, path: pathlib.Path, *, key, copies: int = 7, **options) -> pathlib.Path:
    """A grid: each row one of ``images`` (uint8 ``[n, h, w, c]``), then ``copies`` random augmentations
    of it by :func:`capsjax.ops.augmentation.augment` with ``options``, as a PNG at ``path``."""
    images = to_float(np.asarray(images))
    repeated = jnp.repeat(images, copies, axis=0)
    augmented = np.asarray(augment_batch(repeated, key, **options)).reshape(len(images), copies, *images.shape[1:])
    rows = np.concatenate([np.asarray(images)[:, None], augmented], axis=1)
    save_png(path, tile(rows.reshape(-1, *images.shape[1:]), columns=copies + 1), scale=3)
    return path


def plot_predictions(images, labels, predictions: dict, path: pathlib.Path, *, columns: int = 8) -> pathlib.Path:
    """Images with their label and each model's prediction (red when wrong)."""
    rows = math.ceil(len(images) / columns)
    fig = Figure(figsize=(1.6 * columns, 1.9 * rows))
    axes = fig.subplots(rows, columns)
    for k, ax in enumerate(np.ravel(axes)):
        ax.axis("off")
        if k >= len(images):
            continue
        ax.imshow(np.asarray(images[k])[..., 0], cmap="gray")
        words = [f"{name}:{int(p[k])}" for name, p in predictions.items()]
        wrong = any(int(p[k]) != int(labels[k]) for p in predictions.values())
        ax.set_title(f"label {int(labels[k])}\n" + " ".join(words), fontsize=7, color="red" if wrong else "black")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def plot_accuracy_pairs(
    curves: dict,
    path: pathlib.Path,
    *,
    target: float | None = None,
    marked=None,
    xlabel: str = "clean test accuracy %",
    ylabel: str = "transformed test accuracy %",
    zoom: float = 3.0,
) -> pathlib.Path:
    """One line per model through its checkpoints: ``curves[name] = (x accuracies, y accuracies)``
    in percent, in training order; a dotted line marks ``target`` (the matched x accuracy) and a
    star each model's point in ``marked[name] = (x, y)``. With a ``target``, a second panel shows
    the ``zoom`` points of x below it and everything above, where the comparison is made."""
    panels = 2 if target is not None else 1
    fig = Figure(figsize=(5.0 * panels, 4.0))
    axes = fig.subplots(1, panels, squeeze=False)
    for k, ax in enumerate(axes[0]):
        for name, (x, y) in curves.items():
            (line,) = ax.plot(x, y, marker="o", markersize=3, label=name)
            if marked and name in marked:
                ax.plot(*marked[name], marker="*", markersize=14, color=line.get_color(), linestyle="none")
        if target is not None:
            ax.axvline(target, color="gray", linestyle=":", label=f"matched at {target:.2f}%")
        if k == 1:
            low = target - zoom
            high = max(max(x) for x, _ in curves.values()) + 0.2
            near = [yi for x, y in curves.values() for xi, yi in zip(x, y, strict=True) if xi >= low]
            ax.set_xlim(low, high)
            ax.set_ylim(min(near) - 0.5, max(near) + 0.5)
            ax.set_title("near the matched accuracy", fontsize=9)
        elif marked:
            ax.set_title("checkpoints through training; stars: the matched ones", fontsize=9)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def plot_error_bars(
    panels: dict[str, dict[str, tuple[float, float]]], path: pathlib.Path, *, ylabel: str = "test error %"
) -> pathlib.Path:
    """One panel per ``panels`` key (e.g. a dataset), one bar per variant at its mean with a +-std
    error bar: ``panels[panel][variant] = (mean, std)``. Each panel has its own y scale, as errors on
    different datasets differ by orders of magnitude."""
    fig = Figure(figsize=(3.2 * len(panels) + 0.8, 3.8))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (title, bars) in zip(axes, panels.items(), strict=True):
        names = list(bars)
        means, stds = zip(*(bars[name] for name in names), strict=True)
        ax.bar(range(len(names)), means, yerr=stds, capsize=4, color=[f"C{k}" for k in range(len(names))])
        ax.set_xticks(range(len(names)), names, rotation=40, ha="right", fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path
