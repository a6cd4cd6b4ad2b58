r"""
The 3-D viewpoints dataset
==========================

``viewpoints`` is a smallNORB-like dataset that capsjax renders itself, with nothing to
download: 5 categories of toys (animal, human, airplane, truck, car), 10 instances each with
their own proportions, seen from 18 azimuths x 9 elevations under 4 lightings, 48x48
grayscale. Every image carries the factors it was rendered from
(``dataset.factors["azimuth"]`` and the like), so a test can ask how a model does on
viewpoints it never saw in training, as Hinton, Sabour & Frosst (2018, sec. 6) do on
smallNORB.

:func:`capsjax.data.viewpoints.make_viewpoints` renders any subset of the factors, which is how
this page draws only the images it shows.
"""

# %%
# Every category from every side
# ------------------------------
# Instance 0 of each category (a training instance), every 40 degrees of azimuth (columns) at
# three elevations (rows), under the first lighting.
import matplotlib.pyplot as plt
import numpy as np

from capsjax.data.image_files import tile
from capsjax.data.registry import load_split
from capsjax.data.shapes import CATEGORIES
from capsjax.data.viewpoints import AZIMUTHS, PROTOCOLS, make_viewpoints, viewpoint_split

azimuths, elevations = tuple(range(0, 360, 40)), (30, 50, 70)
views = make_viewpoints("train", instances=[0], azimuths=azimuths, elevations=elevations, lightings=[0])
print(f"rendered {len(views)} images {views.images.shape[1:]}; factors: {sorted(views.factors)}")
# rendered in the order category, instance, azimuth, elevation, lighting: put elevations in rows
grid = views.images.reshape(len(CATEGORIES), len(azimuths), len(elevations), 48, 48).swapaxes(1, 2)
fig, ax = plt.subplots(figsize=(7.0, 10.5))
ax.imshow(tile(grid.reshape(-1, 48, 48), columns=len(azimuths), padding=2, fill=90), cmap="gray")
ax.set_xticks(np.arange(len(azimuths)) * 50 + 26, [f"{a}°" for a in azimuths], fontsize=8)
ax.set_yticks(np.arange(grid.shape[0] * grid.shape[1]) * 50 + 26, [f"{c} {e}°" for c in CATEGORIES for e in elevations])
ax.tick_params(axis="y", labelsize=8)
ax.set_xlabel("azimuth")
ax.set_title("instance 0 of each category; rows: elevation", fontsize=10)
fig.tight_layout()

# %%
# Lightings and instances
# -----------------------
# The four lightings (light from the upper left, upper right, front and top, fixed to the
# camera) of one airplane, then the ten airplanes (instances 0-4 are the training split, 5-9
# the test split) from one viewpoint.
airplane = CATEGORIES.index("airplane")
lit = make_viewpoints("train", categories=[airplane], instances=[0], azimuths=[40], elevations=[40])
fleet = [
    make_viewpoints(split, categories=[airplane], azimuths=[40], elevations=[40], lightings=[0])
    for split in ("train", "test")
]
row = np.concatenate([lit.images] + [part.images for part in fleet])[..., 0]
titles = [f"light {k}" for k in lit.factors["lighting"]]
titles += [f"inst. {k}" for part in fleet for k in part.factors["instance"]]
fig, axes = plt.subplots(1, len(row), figsize=(1.0 * len(row), 1.5))
for ax, image, title in zip(axes, row, titles, strict=True):
    ax.imshow(image, cmap="gray", vmin=0, vmax=255)
    ax.set_title(title, fontsize=7)
    ax.axis("off")
fig.tight_layout()

# %%
# Familiar and novel azimuths
# ---------------------------
# The ``"azimuth"`` protocol of :func:`~capsjax.data.viewpoints.viewpoint_split` trains on
# the six azimuths around the front (300° to 40°) and tests on those and on the twelve others.
# Green frames: familiar views; red: novel ones (instance 5, a test instance, at 30°).
around = make_viewpoints("test", instances=[5], elevations=[30], lightings=[0])
familiar = viewpoint_split(around, "azimuth", "familiar")
novel = viewpoint_split(around, "azimuth", "novel")
print(f"azimuth protocol: familiar azimuths {sorted(set(familiar.factors['azimuth'].tolist()))}")
print(f"                  novel azimuths    {sorted(set(novel.factors['azimuth'].tolist()))}")

is_familiar = np.isin(around.factors["azimuth"], PROTOCOLS["azimuth"][1])
framed = np.zeros((len(around), 52, 52, 3), np.uint8)
framed[is_familiar] = (40, 170, 40)
framed[~is_familiar] = (200, 40, 40)
framed[:, 2:50, 2:50] = around.images.repeat(3, axis=-1)
fig, ax = plt.subplots(figsize=(11, 3.6))
ax.imshow(tile(framed, columns=len(AZIMUTHS), padding=1, fill=255))
ax.set_xticks(np.arange(len(AZIMUTHS)) * 53 + 27, [f"{a}°" for a in AZIMUTHS], fontsize=7)
ax.set_yticks(np.arange(len(CATEGORIES)) * 53 + 27, CATEGORIES, fontsize=8)
ax.set_title("azimuth protocol: familiar (green) and novel (red) viewpoints", fontsize=10)
fig.tight_layout()

# %%
# The whole test split
# --------------------
# ``load_split("viewpoints", split)`` renders a whole split once (16,200 images, about 10 s on
# two CPU cores) and keeps it in ``~/.cache/capsjax``; then it loads in a fraction of a second.
# Its images come in a seeded random order, so its first ``num_examples`` are a random subset.
test = load_split("viewpoints", "test")
print(f"test split: {len(test)} images {test.images.shape[1:]}, classes {test.class_names}")
for name, values in test.factors.items():
    print(f"  {name:>9}: {len(np.unique(values))} values, {values.min()}..{values.max()}")
for protocol in PROTOCOLS:
    sizes = {part: len(viewpoint_split(test, protocol, part)) for part in ("familiar", "novel")}
    print(f"  protocol {protocol!r}: {sizes['familiar']} familiar-view and {sizes['novel']} novel-view images")
plt.show()
