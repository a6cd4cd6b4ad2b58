r"""
Squash: the length of a capsule as a probability
================================================

A capsule is a vector whose length says how likely its entity is present and whose direction
says how it looks. :func:`capsjax.squash` (Sabour et al. 2017, eq. 1) maps any vector ``s``
to a vector ``v`` of the same direction and of length :math:`\|s\|^2 / (1 + \|s\|^2)`, in
[0, 1): short vectors shrink to almost nothing, long ones approach length 1.
"""

# %%
# Length in, length out
# ---------------------
# The length of ``squash(s)`` depends only on the length of ``s``. Rescale one direction and
# measure: the curve is :math:`x^2 / (1 + x^2)`, which crosses 0.5 at :math:`\|s\| = 1`.
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from capsjax import safe_norm, squash

direction = jnp.array([0.6, -0.8, 0.0, 0.0])  # unit length, 4-D: any dimension behaves the same
lengths = jnp.linspace(0.0, 5.0, 201)
s = lengths[:, None] * direction
v = squash(s)  # squash works on the last axis of any shape
v_lengths = safe_norm(v, eps=0.0)

for x in (0.1, 0.5, 1.0, 2.0, 5.0):
    k = int(jnp.argmin(jnp.abs(lengths - x)))
    print(f"|s| = {x:3.1f}  ->  |squash(s)| = {float(v_lengths[k]):.4f}   (x^2/(1+x^2) = {x**2 / (1 + x**2):.4f})")

fig, ax = plt.subplots(figsize=(5.5, 3.6))
ax.plot(lengths, v_lengths, label="|squash(s)|")
ax.plot(lengths, jnp.minimum(lengths, 1.0), ":", color="gray", label="min(|s|, 1)")
ax.axhline(1.0, color="black", linewidth=0.5)
ax.set_xlabel("|s|")
ax.set_ylabel("capsule length |v|")
ax.set_title("squash keeps the length in [0, 1)")
ax.legend()
fig.tight_layout()

# %%
# Directions are kept
# -------------------
# Seven random 2-D vectors before (thin arrows) and after (thick arrows) the squash. Each output
# points the same way as its input; the unit circle is the length no output reaches.
s2 = jax.random.normal(jax.random.key(0), (7, 2)) * jnp.array([1.5, 1.0])
v2 = squash(s2)
cosines = jnp.sum(s2 * v2, axis=-1) / (safe_norm(s2, eps=0.0) * safe_norm(v2, eps=0.0))
print("cosine(s, squash(s)) of each vector:", np.round(np.asarray(cosines), 6))

fig, ax = plt.subplots(figsize=(4.6, 4.6))
theta = np.linspace(0, 2 * np.pi, 200)
ax.plot(np.cos(theta), np.sin(theta), color="gray", linewidth=0.8)
for k, (a, b) in enumerate(zip(np.asarray(s2), np.asarray(v2), strict=True)):
    color = f"C{k}"
    ax.annotate("", xy=a, xytext=(0, 0), arrowprops={"arrowstyle": "->", "color": color, "alpha": 0.5})
    ax.annotate("", xy=b, xytext=(0, 0), arrowprops={"arrowstyle": "-|>", "color": color, "linewidth": 2.2})
limit = float(np.abs(np.asarray(s2)).max()) + 0.2
ax.set_xlim(-limit, limit)
ax.set_ylim(-limit, limit)
ax.set_aspect("equal")
ax.set_title("s (thin) and squash(s) (thick)")
fig.tight_layout()

# %%
# Finite at zero
# --------------
# The epsilon of :func:`capsjax.squash` sits under the square root, so the squash of the zero
# vector is zero and its gradient is finite (zero) there: an empty capsule gives no NaN.
# ``jnp.linalg.norm`` has no such guard: its gradient at zero is NaN.
print("squash(0)                 =", squash(jnp.zeros(2)).tolist())
print("grad |squash(s)|^2 at s=0 =", jax.grad(lambda x: jnp.sum(squash(x) ** 2))(jnp.zeros(2)).tolist())
print("grad |s| (linalg.norm) at 0 =", jax.grad(jnp.linalg.norm)(jnp.zeros(2)).tolist())

plt.show()
