r"""
Swapping the routing algorithm
==============================

Every routing algorithm in capsjax has one signature: the votes of one example
``[in_caps, out_caps, out_dim]`` in, a :class:`capsjax.RoutingResult` (output capsules ``v``,
couplings ``c``) out. :func:`capsjax.get_routing` looks one up by name, so the same votes can be
routed by dynamic routing (Sabour et al. 2017), self-attention routing (Mazzia et al. 2021),
inverted dot-product attention (Tsai et al. 2020) or EM routing (Hinton et al. 2018), and a
model takes any of them by changing one field of its config.
"""

# %%
# The same votes, four algorithms
# -------------------------------
# The votes come from the shipped CapsNet (trained with dynamic routing) on 64 test digits:
# ``[64, 1152 primary capsules, 10 classes, 16]``. ``jax.vmap`` batches each routing function,
# written for one example. EM routing also takes the input capsules' activations (their lengths),
# an optional keyword of the shared signature.
import pathlib
import time

import jax
import matplotlib.pyplot as plt
import numpy as np
from flax import nnx

import capsjax
from capsjax.data.registry import load_split
from capsjax.ops.preprocess import to_float

try:
    HERE = pathlib.Path(__file__).resolve().parent
except NameError:  # sphinx-gallery may run the script without __file__, from the examples folder
    HERE = pathlib.Path.cwd()
model = capsjax.load_weights(HERE.parent / "weights" / "capsnet_mnist.msgpack")
test = load_split("mnist", "test", num_examples=64)  # from $CAPSJAX_DATA_DIR, else the cache or a download

primary = model.primary_capsules(to_float(test.images))  # [64, 1152, 8]
votes = model.classes.votes(primary)  # [64, 1152, 10, 16]
activations = capsjax.safe_norm(primary)  # [64, 1152]
print("votes", votes.shape)

results = {}
for name in capsjax.ROUTING_FUNCTIONS:  # dynamic, self_attention, inverted_dot_product, em
    routing = capsjax.get_routing(name)
    extra = {"activations": activations} if name == "em" else {}
    start = time.perf_counter()
    results[name] = jax.vmap(lambda v, kw, routing=routing: routing(v, num_iters=3, **kw))(votes, extra)
    print(f"{name:>21}: v {results[name].v.shape}, c {results[name].c.shape}, {time.perf_counter() - start:.2f} s")

# %%
# Which class does each one favour?
# ---------------------------------
# One measure every algorithm has: the share of the primary capsules' output that each class
# receives, the mean of the couplings ``c[:, j]``. The three agreement-by-dot-product algorithms
# agree with the trained model. EM routing does not: it rewards the class whose votes vary
# least, and this network, trained with dynamic routing, shows agreement as votes that share a
# direction (their mean is long), not as votes that vary less. Routing is part of what a
# network learns; swap it before training, not after.
shares = {name: np.asarray(result.c).mean(axis=1) for name, result in results.items()}  # [64, 10]
for name, share in shares.items():
    print(f"{name:>21}: the class of largest share is the label for {np.mean(share.argmax(-1) == test.labels):.0%}")

first = np.asarray(votes[0])  # one digit's votes [1152, 10, 16]
label = int(test.labels[0])
spread = first.std(axis=0).mean(axis=-1)  # per class: how much the 1152 votes vary
mean_length = np.linalg.norm(first.mean(axis=0), axis=-1)  # per class: how long their mean is
others = np.delete(np.arange(10), label)
print(f"digit 0 (label {label}), the spread of the votes per class:")
print(f"  class {label} {spread[label]:.3f}; smallest {spread.min():.3f} (class {spread.argmin()})")
print("the length of the votes' mean per class:")
print(f"  class {label} {mean_length[label]:.4f}; the other classes' at most {mean_length[others].max():.4f}")

fig, axes = plt.subplots(1, 4, figsize=(12, 2.8), sharey=True)
for ax, (name, share) in zip(axes, shares.items(), strict=True):
    colors = ["C1" if j == label else "C0" for j in range(10)]
    ax.bar(range(10), share[0], color=colors)
    ax.axhline(0.1, color="gray", linewidth=0.8, linestyle=":")
    ax.set_title(name, fontsize=10)
    ax.set_xticks(range(10))
    ax.set_xlabel("class")
axes[0].set_ylabel("mean coupling")
axes[0].set_ylim(0.0, max(float(s[0].max()) for s in shares.values()) * 1.1)
fig.suptitle(f"the couplings of one test digit (label {label}, orange) under each routing", fontsize=10)
fig.tight_layout()

# %%
# A model with another routing: one changed line
# ----------------------------------------------
# :class:`capsjax.RoutingConfig` picks the algorithm by name; the rest of the network is the same.
# ``nnx.eval_shape`` builds a small CapsNet with EM routing and runs its forward pass on shapes
# alone (nothing is computed or compiled): its parameters and outputs. Training one is the same
# change on the command line:
# ``capsjax train --config experiments/configs/mnist.py --config.capsnet.routing.name=em``.
images = jax.ShapeDtypeStruct((4, 28, 28, 1), np.float32)
for name in ("dynamic", "em"):
    config = capsjax.CapsNetConfig(
        conv_channels=32,
        primary_types=4,
        decoder_hidden=(64,),
        routing=capsjax.RoutingConfig(name=name),  # the one line that changes
    )
    abstract = nnx.eval_shape(lambda config=config: capsjax.CapsNet(config, rngs=nnx.Rngs(0)))
    output = nnx.eval_shape(lambda model, x: model(x), abstract, images)
    print(
        f"{name:>8}: {abstract.classes.routing_fn.__name__}, {capsjax.count_params(abstract):,} parameters, "
        f"scores {output.scores.shape}, capsules {output.capsules.shape}, couplings {output.couplings.shape}"
    )
plt.show()
