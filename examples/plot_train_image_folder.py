r"""
Training on an image folder
===========================

Any folder of images laid out as ``train/<class>/*.png`` and ``test/<class>/*.png`` (or only
``<class>/*.png``, split by a seeded test fraction) is a dataset: ``DataConfig(path=...)``, or
``capsjax train --data PATH`` on the command line. The run sizes the network to the images
and to the number of class folders.

Here a folder of three synthetic shapes is drawn with PIL in a temporary directory, and a small
CapsNet trains on it for a few seconds with :func:`capsjax.training.loop.train_and_evaluate`.
"""

# %%
# A folder of shapes
# ------------------
# Circles, squares and triangles of random size, position and brightness, 28x28 grayscale,
# 400 per class for training and 40 for testing.
import pathlib
import shutil
import tempfile

import matplotlib.pyplot as plt
import numpy as np
from PIL import Image, ImageDraw

from capsjax.data.registry import load_split
from capsjax.nn import CapsNetConfig
from capsjax.training.config import DataConfig, OptimConfig, TrainConfig
from capsjax.training.loop import train_and_evaluate
from capsjax.training.metrics import read_metrics

SHAPES = ("circle", "square", "triangle")


def draw(shape: str, rng: np.random.Generator) -> Image.Image:
    """One filled shape on black, 28x28, of random size, centre and brightness."""
    image = Image.new("L", (28, 28), 0)
    pen = ImageDraw.Draw(image)
    r = rng.uniform(5, 10)
    x, y = rng.uniform(r + 1, 27 - r, size=2)
    gray = int(rng.integers(120, 256))
    if shape == "circle":
        pen.ellipse([x - r, y - r, x + r, y + r], fill=gray)
    elif shape == "square":
        pen.rectangle([x - r, y - r, x + r, y + r], fill=gray)
    else:
        corners = [(x + r * np.cos(a), y + r * np.sin(a)) for a in np.pi / 2 + 2 * np.pi * np.arange(3) / 3]
        pen.polygon(corners, fill=gray)
    return image


root = pathlib.Path(tempfile.mkdtemp(prefix="capsjax_shapes_"))
rng = np.random.default_rng(0)
for split, count in (("train", 400), ("test", 40)):
    for shape in SHAPES:
        folder = root / "shapes" / split / shape
        folder.mkdir(parents=True)
        for k in range(count):
            draw(shape, rng).save(folder / f"{k:03d}.png")
data_path = root / "shapes"
for split in ("train", "test"):
    counts = {folder.name: len(list(folder.glob("*.png"))) for folder in sorted((data_path / split).iterdir())}
    print(f"shapes/{split}/: {counts}")

test = load_split("", "test", path=data_path)  # what the run will read: classes sorted by folder name
print(f"test split: {test.images.shape}, classes {test.class_names}")
fig, axes = plt.subplots(1, 9, figsize=(9, 1.4))
for ax, k in zip(axes, np.linspace(0, len(test) - 1, 9).astype(int), strict=True):
    ax.imshow(test.images[k, :, :, 0], cmap="gray", vmin=0, vmax=255)
    ax.set_title(test.class_names[test.labels[k]], fontsize=8)
    ax.axis("off")
fig.tight_layout()

# %%
# Train a small CapsNet
# ---------------------
# A narrow CapsNet (32 channels, 4 primary capsule types, a small decoder), batch 25, 2 epochs
# (96 steps), evaluated on the test split every 16 steps. The metrics land in ``workdir/metrics.jsonl``
# (and TensorBoard), with checkpoints and ``summary.json`` beside them.
config = TrainConfig(
    model="capsnet",
    capsnet=CapsNetConfig(conv_channels=32, primary_types=4, decoder_hidden=(64, 128)),
    data=DataConfig(path=str(data_path), max_shift=2),
    optim=OptimConfig(learning_rate=3e-3),
    batch_size=25,
    epochs=2,
    eval_every_steps=16,
    log_every_steps=8,
)
workdir = root / "run"
summary = train_and_evaluate(config, workdir, progress=False)
print(
    f"{summary['status']}: {summary['step']} steps, {summary['parameters']:,} parameters, "
    f"test accuracy {summary['test_accuracy']:.1%} on {summary['test_examples']} images, "
    f"{summary['wall_time_sec']:.1f} s"
)

# %%
# The learning curve
# ------------------
# Training loss (the margin loss plus the scaled reconstruction loss) over each logging window,
# and test accuracy at each evaluation.
records = read_metrics(workdir / "metrics.jsonl")
train = [(r["step"], r["train/loss"]) for r in records if "train/loss" in r]
tested = [(r["step"], r["test/accuracy"]) for r in records if "test/accuracy" in r]
fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(8, 3.0))
ax_loss.plot(*zip(*train, strict=True), marker="o")
ax_loss.set_xlabel("step")
ax_loss.set_ylabel("training loss")
ax_acc.plot(*zip(*tested, strict=True), marker="o", color="C1")
ax_acc.axhline(1 / len(SHAPES), color="gray", linestyle=":", label="chance")
ax_acc.set_ylim(0, 1.02)
ax_acc.set_xlabel("step")
ax_acc.set_ylabel("test accuracy")
ax_acc.legend()
fig.tight_layout()
shutil.rmtree(root)  # the images and the run
plt.show()
