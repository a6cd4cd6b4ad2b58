r"""
Reconstructions and the model's failures
========================================

CapsNet's decoder redraws a digit from the 16 numbers of one class capsule: the predicted
class's at test time, the true class's in training. A reconstruction shows what the model
believes it saw. On the digits it gets wrong, decoding the capsule of the predicted class and
that of the true class shows both readings.

The shipped CapsNet (99.64% on the 10,000 MNIST test digits) runs on the first 2,000 with
:func:`capsjax.training.evaluation.model_outputs`.
"""

# %%
# Classify and reconstruct
# ------------------------
import pathlib

import matplotlib.pyplot as plt
import numpy as np

import capsjax
from capsjax.data.image_files import reconstruction_grid, tile
from capsjax.data.registry import load_split
from capsjax.training.evaluation import model_outputs

try:
    HERE = pathlib.Path(__file__).resolve().parent
except NameError:  # sphinx-gallery may run the script without __file__, from the examples folder
    HERE = pathlib.Path.cwd()
model = capsjax.load_weights(HERE.parent / "weights" / "capsnet_mnist.msgpack")
test = load_split("mnist", "test", num_examples=2000)  # from $CAPSJAX_DATA_DIR, else the cache or a download

output = model_outputs(model, test.images)  # no labels: each image decoded from its predicted class
predicted = output.scores.argmax(-1)
wrong = np.flatnonzero(predicted != test.labels)
print(f"accuracy on {len(test)} test digits: {np.mean(predicted == test.labels):.2%} ({len(wrong)} wrong)")

# %%
# Inputs over reconstructions
# ---------------------------
# Rows alternate: 8 test digits, then their reconstructions.
fig, ax = plt.subplots(figsize=(7, 3.6))
ax.imshow(reconstruction_grid(test.images[:16], output.reconstructions[:16], columns=8), cmap="gray")
ax.set_title("test digits (rows 1, 3) and their reconstructions (rows 2, 4)", fontsize=10)
ax.axis("off")
fig.tight_layout()

# %%
# The misclassified digits, read both ways
# ----------------------------------------
# For each digit the model gets wrong: the input, the reconstruction from the capsule of the
# predicted class (what the model saw), and from the capsule of the true class (passing the
# labels to the model masks the decoder's input with them).
as_true = model_outputs(model, test.images[wrong], test.labels[wrong]).reconstructions
shown = wrong[:12]
rows = np.stack([test.images[shown] / 255.0, output.reconstructions[shown], as_true[: len(shown)]])  # [3, n, 28, 28, 1]
fig, ax = plt.subplots(figsize=(1.0 * len(shown) + 1.4, 3.6))
ax.imshow(tile(rows.reshape(-1, 28, 28, 1), columns=len(shown), padding=2), cmap="gray")
ax.set_xticks(np.arange(len(shown)) * 30 + 16, [f"{test.labels[k]}->{predicted[k]}" for k in shown], fontsize=8)
ax.set_yticks([16, 46, 76], ["input", "as predicted", "as true class"], fontsize=8)
ax.set_xlabel("true class -> predicted class")
fig.tight_layout()
for k in shown:
    lengths = output.scores[k]
    print(
        f"test digit {k}: label {test.labels[k]}, predicted {predicted[k]}; capsule lengths: "
        f"predicted {lengths[predicted[k]]:.2f}, true {lengths[test.labels[k]]:.2f}"
    )
plt.show()
