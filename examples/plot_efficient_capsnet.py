r"""
Efficient-CapsNet: self-attention routing
=========================================

Efficient-CapsNet (Mazzia, Salvetti & Chiaberge 2021) keeps CapsNet's class capsules and
decoder, but has far fewer primary capsules (16 instead of 1,152) and routes them in one pass
without iterations: :func:`capsjax.self_attention_routing` couples each primary capsule to
each class by how much its vote agrees with the other primary capsules' votes for that class,
plus a learned prior.

The shipped weights (``weights/efficient_capsnet_mnist.msgpack``) load with
:func:`capsjax.load_weights` like CapsNet's.
"""

# %%
# Load and test
# -------------
import pathlib

import matplotlib.pyplot as plt
import numpy as np

import capsjax
from capsjax.data.registry import load_split
from capsjax.training.evaluation import model_outputs

try:
    HERE = pathlib.Path(__file__).resolve().parent
except NameError:  # sphinx-gallery may run the script without __file__, from the examples folder
    HERE = pathlib.Path.cwd()
weights = HERE.parent / "weights"
model = capsjax.load_weights(weights / "efficient_capsnet_mnist.msgpack")
capsnet = capsjax.load_weights(weights / "capsnet_mnist.msgpack")
for loaded in (model, capsnet):
    total, decoder = capsjax.count_params(loaded), capsjax.count_params(loaded.decoder)
    print(f"{type(loaded).__name__}: {total:,} parameters, {total - decoder:,} without the decoder")

test = load_split("mnist", "test", num_examples=1000)  # from $CAPSJAX_DATA_DIR, else the cache or a download
output = model_outputs(model, test.images)
predicted = output.scores.argmax(-1)
print(f"accuracy on the first {len(test)} test digits: {np.mean(predicted == test.labels):.1%}")
print(f"couplings {output.couplings.shape}: [digits, 16 primary capsules, 10 classes]")

# %%
# The couplings of a few digits
# -----------------------------
# One panel per digit: the coupling of each of the 16 primary capsules (rows) to each class
# (columns), a softmax over the classes plus the learned prior ``log_priors [16, 10]``. The
# trained priors are all close to -0.1, so they cancel most of an even share: a capsule
# couples positively (red) only to the classes its vote agrees on. The predicted class is
# framed.
priors = np.asarray(model.classes.log_priors[...])
print(f"learned priors: mean {priors.mean():.3f}, from {priors.min():.3f} to {priors.max():.3f}")
shown = np.arange(6)
fig, axes = plt.subplots(2, len(shown), figsize=(1.9 * len(shown), 4.6), gridspec_kw={"height_ratios": [1, 1.6]})
limit = float(np.abs(output.couplings[shown]).max())
for col, k in enumerate(shown):
    axes[0, col].imshow(test.images[k, :, :, 0], cmap="gray")
    axes[0, col].set_title(f"label {test.labels[k]}, pred. {predicted[k]}", fontsize=8)
    axes[0, col].axis("off")
    ax = axes[1, col]
    shown_map = ax.imshow(output.couplings[k], cmap="RdYlBu_r", vmin=-limit, vmax=limit)
    ax.add_patch(plt.Rectangle((predicted[k] - 0.5, -0.5), 1, 16, fill=False, edgecolor="black", linewidth=1.5))
    ax.set_xticks(range(10), [str(j) for j in range(10)], fontsize=6)
    ax.set_yticks([0, 15], ["1", "16"], fontsize=6)
    ax.set_xlabel("class", fontsize=7)
axes[1, 0].set_ylabel("primary capsule", fontsize=7)
fig.colorbar(shown_map, ax=axes[1].tolist(), fraction=0.02, label="coupling")

# %%
# How much goes to the predicted class
# ------------------------------------
# Over the 1,000 digits, the softmax part of the couplings (the couplings minus the priors,
# which sums to 1 over the classes): its mean over the 16 primary capsules for the predicted
# class and for each other class. An even split would give 0.1 to every class.
agreement = output.couplings - priors  # [1000, 16, 10], softmax over the classes
rows = np.arange(len(test))
to_predicted = agreement[rows, :, predicted].mean(axis=-1)  # [1000]
to_others = (1.0 - to_predicted) / 9  # [1000]
print(f"softmax share to the predicted class: mean {to_predicted.mean():.3f}; each other class {to_others.mean():.3f}")
fig, ax = plt.subplots(figsize=(5.5, 3.0))
bins = np.linspace(0, 1, 51)
ax.hist(to_others, bins=bins, alpha=0.6, label="each other class")
ax.hist(to_predicted, bins=bins, alpha=0.6, label="predicted class")
ax.axvline(0.1, color="gray", linestyle=":")
ax.set_xlabel("mean softmax share over the 16 primary capsules")
ax.set_ylabel("digits")
ax.legend(fontsize=8)
fig.tight_layout()
plt.show()
