r"""
What the 16 dimensions of a capsule encode
==========================================

The class capsule that wins carries more than the class: its 16 numbers are all the decoder
gets to redraw the digit. Moving one of them at a time and decoding shows what each one
controls (Sabour et al. 2017, Fig. 4): stroke width, skew, scale, local parts.

Each dimension of the winning capsule of the shipped CapsNet is moved by -0.25 to +0.25 in
steps of 0.05, as in the paper, with :func:`capsjax.analysis.probes.perturbation_grid`; the
decoder draws each copy.
"""

# %%
# Perturb and decode
# ------------------
import pathlib

import matplotlib.pyplot as plt
import numpy as np

import capsjax
from capsjax.analysis.probes import PAPER_DELTAS, perturbation_grid
from capsjax.data.image_files import tile
from capsjax.data.registry import load_split
from capsjax.ops.preprocess import to_float

try:
    HERE = pathlib.Path(__file__).resolve().parent
except NameError:  # sphinx-gallery may run the script without __file__, from the examples folder
    HERE = pathlib.Path.cwd()
model = capsjax.load_weights(HERE.parent / "weights" / "capsnet_mnist.msgpack")
digits = load_split("mnist", "test", num_examples=4)  # from $CAPSJAX_DATA_DIR, else the cache or a download

chosen = (0, 1, 3)  # a 7, a 2 and a 0
grids = {}
for k in chosen:
    grid, predicted = perturbation_grid(model, to_float(digits.images[k]), PAPER_DELTAS)
    grids[k] = np.asarray(grid)  # [16 dimensions, 11 deltas, 28, 28, 1]
    print(f"test digit {k}: label {digits.labels[k]}, predicted {predicted}, grid {grids[k].shape}")

# %%
# One row per dimension
# ---------------------
# Rows: the 16 dimensions; columns: the change, from -0.25 to +0.25. The middle column is the
# plain reconstruction, the same in every row.
fig, axes = plt.subplots(1, len(chosen), figsize=(4.2 * len(chosen), 6.4))
for ax, k in zip(axes, chosen, strict=True):
    dims, steps = grids[k].shape[:2]
    ax.imshow(tile(grids[k].reshape(dims * steps, 28, 28, 1), columns=steps, padding=1), cmap="gray")
    ax.set_xticks(np.arange(steps) * 29 + 15, [f"{d:+.2f}" for d in PAPER_DELTAS], rotation=90, fontsize=6)
    ax.set_yticks(np.arange(dims) * 29 + 15, [f"dim {d}" for d in range(dims)], fontsize=6)
    ax.set_title(f"digit {digits.labels[k]}", fontsize=10)
fig.tight_layout()

# %%
# How much each dimension changes the image
# -----------------------------------------
# The mean absolute pixel difference between the reconstructions at -0.25 and at +0.25, per
# dimension. Some dimensions barely change the drawing of one digit and reshape another.
fig, ax = plt.subplots(figsize=(8, 3.0))
width = 0.8 / len(chosen)
for n, k in enumerate(chosen):
    change = np.abs(grids[k][:, -1] - grids[k][:, 0]).mean(axis=(1, 2, 3))  # [16]
    ax.bar(np.arange(16) + n * width, change, width, label=f"digit {digits.labels[k]}")
    print(f"digit {digits.labels[k]}: dimensions that change it most: {np.argsort(change)[::-1][:3].tolist()}")
ax.set_xticks(np.arange(16) + width * (len(chosen) - 1) / 2, [str(d) for d in range(16)])
ax.set_xlabel("capsule dimension")
ax.set_ylabel("mean |pixel change|")
ax.legend(fontsize=8)
fig.tight_layout()
plt.show()
