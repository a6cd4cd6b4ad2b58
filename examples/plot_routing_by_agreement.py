r"""
Routing by agreement on a real digit
====================================

Dynamic routing (Sabour et al. 2017, Procedure 1) decides how much each primary capsule sends
to each class capsule. It starts from equal coupling coefficients :math:`c_{ij} = 1/10` and, at
every iteration, raises the coupling of a primary capsule to the class capsules whose output
agrees with its vote (a large dot product :math:`\hat u_{j|i} \cdot v_j`).

Here the shipped CapsNet (99.64% on MNIST) routes one test digit for 1 to 5 iterations (it was
trained with 3), with :func:`capsjax.analysis.probes.couplings_by_iteration`.
"""

# %%
# The model and a digit
# ---------------------
import pathlib

import matplotlib.pyplot as plt
import numpy as np

import capsjax
from capsjax.analysis.probes import couplings_by_iteration
from capsjax.data.registry import load_split
from capsjax.ops.preprocess import to_float

try:
    HERE = pathlib.Path(__file__).resolve().parent
except NameError:  # sphinx-gallery may run the script without __file__, from the examples folder
    HERE = pathlib.Path.cwd()
model = capsjax.load_weights(HERE.parent / "weights" / "capsnet_mnist.msgpack")
digits = load_split("mnist", "test", num_examples=1)  # from $CAPSJAX_DATA_DIR, else the cache or a download
image, label = to_float(digits.images[0]), int(digits.labels[0])

ITERATIONS = 5
maps, lengths = couplings_by_iteration(model, image, ITERATIONS)
# maps: [iterations, 6, 6, 32 types, 10 classes], the couplings that produced each iteration's output
couplings = np.asarray(maps).reshape(ITERATIONS, -1, 10)  # [iterations, 1152 primary capsules, classes]
lengths = np.asarray(lengths)  # [iterations, classes]: the class capsules' lengths
winner = int(lengths[-1].argmax())
print(f"label {label}, predicted {winner}; {couplings.shape[1]} primary capsules")

# %%
# Class capsule lengths per iteration
# -----------------------------------
# After one iteration the output is the plain average of all votes (every coupling is 1/10).
# Each further iteration moves weight toward the capsule that agrees, and its length grows.
for it in range(ITERATIONS):
    others = np.delete(lengths[it], winner).max()
    print(f"{it + 1} iteration(s): |v_{winner}| = {lengths[it, winner]:.3f}, longest other = {others:.3f}")

fig, (ax_image, ax) = plt.subplots(1, 2, figsize=(8, 3.4), gridspec_kw={"width_ratios": [1, 2.2]})
ax_image.imshow(digits.images[0, :, :, 0], cmap="gray")
ax_image.set_title(f"test digit, label {label}")
ax_image.axis("off")
steps = np.arange(1, ITERATIONS + 1)
for j in range(10):
    ax.plot(steps, lengths[:, j], marker="o", linewidth=2.5 if j == winner else 1, label=str(j))
ax.axvspan(3.5, ITERATIONS + 0.5, color="gray", alpha=0.12)
ax.text(3.6, 0.5, "beyond the 3\ntrained iterations", fontsize=8)
ax.set_xticks(steps)
ax.set_xlabel("routing iterations")
ax.set_ylabel("class capsule length")
ax.legend(ncol=2, fontsize=7, title="class", loc="center right")
fig.tight_layout()

# %%
# Couplings spread away from 1/10
# -------------------------------
# The distribution over the 1,152 primary capsules of their coupling to the predicted class,
# and to the nine other classes. All start at exactly 0.1; each iteration spreads them: the
# primary capsules whose votes agree give the predicted class a growing share (the long tail to
# the right), the others a shrinking one. "largest for": the fraction of primary capsules whose
# largest coupling goes to the predicted class.
for it in range(ITERATIONS):
    to_winner = couplings[it, :, winner]
    favourite = f"{np.mean(couplings[it].argmax(-1) == winner):.0%}" if it else "- (all tied)"
    print(
        f"{it + 1} iteration(s): c to class {winner}: median {np.median(to_winner):.3f}, "
        f"99th percentile {np.percentile(to_winner, 99):.3f}, max {to_winner.max():.3f}; largest for {favourite}"
    )

fig, axes = plt.subplots(1, 3, figsize=(10, 3.0), sharey=True)
bins = np.linspace(0.0, couplings[2].max(), 40)
for ax, it in zip(axes, (0, 1, 2), strict=True):
    ax.hist(np.delete(couplings[it], winner, axis=1).ravel(), bins=bins, density=True, alpha=0.6, label="other classes")
    ax.hist(couplings[it, :, winner], bins=bins, density=True, alpha=0.6, label=f"class {winner}")
    ax.set_title(f"after {it + 1} iteration{'s' * (it > 0)}", fontsize=10)
    ax.set_xlabel("coupling c_ij")
    ax.set_yscale("log")
axes[0].set_ylabel("density")
axes[0].legend(fontsize=8)
fig.tight_layout()

# %%
# Where the agreeing capsules sit
# -------------------------------
# The coupling to the predicted class after 3 iterations, averaged over the 32 capsule types at
# each position of the 6x6 primary-capsule grid (the grid covers the whole image, each capsule a
# 9x9 receptive field of the 20x20 feature map). ``capsjax.analysis.figures.plot_couplings`` writes
# the map of every type.
grid = np.asarray(maps)[2, :, :, :, winner].mean(axis=-1)  # [6, 6]
fig, axes = plt.subplots(1, 2, figsize=(6.4, 3.0))
axes[0].imshow(digits.images[0, :, :, 0], cmap="gray")
axes[0].axis("off")
shown = axes[1].imshow(grid, cmap="viridis")
axes[1].set_title(f"mean c to class {winner}, 6x6 grid", fontsize=10)
axes[1].axis("off")
fig.colorbar(shown, ax=axes[1])
fig.tight_layout()
plt.show()
