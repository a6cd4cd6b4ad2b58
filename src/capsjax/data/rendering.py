"""A small ray caster for scenes of ellipsoids, boxes and capped cylinders: grayscale, Lambertian shading.

Each primitive is the unit sphere, cube ``[-1, 1]^3`` or cylinder (``x^2 + y^2 <= 1``, ``|z| <= 1``)
moved by ``world = centre + rotation @ (half * local)``. A ray is mapped into every primitive's unit
frame, where the first hit has a closed form (a quadratic, or the slab test), so the distance along
the ray is the same in both frames and the nearest hit over all primitives is one ``argmin``. The
normal at the hit is the unit-frame normal mapped by the inverse transpose, ``rotation @ (n / half)``.

The camera is orthographic, looks at the origin from azimuth ``a`` and elevation ``e`` (degrees;
``z`` is up, azimuth 0 looks along ``-x``), and sees the square ``[-1, 1]^2`` of its image plane.
Lights are directions in the camera's frame (right, up, towards the camera), so a light keeps its
place in the picture while the viewpoint changes (as the lamps of a turntable rig do).

A scene is a :class:`Scene` of float32 arrays, one group per kind of primitive, padded to fixed
counts with ``valid = False``, so every object is rendered by the same compiled function.

capsjax draws its scenes here rather than through a rendering library (pyrender, Blender): those need
an OpenGL context or a large install that a CI machine or a laptop may not have, while this caster
needs only jax and numpy, runs wherever capsjax runs, and renders both splits of the viewpoint
dataset (:mod:`capsjax.data.viewpoints`) in about 20 s on 2 CPU cores.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

KINDS = ("ellipsoid", "box", "cylinder")
BACKGROUND = 0
DARKEST, BRIGHTEST = 30, 255  # an object's pixels lie in [DARKEST, BRIGHTEST]
_EYE_DISTANCE = 4.0  # the camera plane's distance from the origin; objects lie inside the unit sphere
_TINY = 1e-9


@dataclasses.dataclass(frozen=True)
class Primitives:
    """``count`` primitives of one kind: ``centre [count, 3]``, ``rotation [count, 3, 3]`` (columns: the
    primitive's axes in the world), ``half [count, 3]`` (half-sizes along those axes), ``valid [count]``."""

    centre: np.ndarray
    rotation: np.ndarray
    half: np.ndarray
    valid: np.ndarray


@dataclasses.dataclass(frozen=True)
class Scene:
    """One object: its ellipsoids, boxes and cylinders (see :class:`Primitives`)."""

    ellipsoid: Primitives
    box: Primitives
    cylinder: Primitives


jax.tree_util.register_dataclass(Primitives, data_fields=["centre", "rotation", "half", "valid"], meta_fields=[])
jax.tree_util.register_dataclass(Scene, data_fields=list(KINDS), meta_fields=[])


def camera_frame(azimuth: float, elevation: float) -> np.ndarray:
    """Rows ``right, up, back`` (back points from the origin to the camera), ``[3, 3]`` float32."""
    a, e = np.deg2rad(azimuth), np.deg2rad(elevation)
    back = np.array([np.cos(e) * np.cos(a), np.cos(e) * np.sin(a), np.sin(e)])
    right = np.array([-np.sin(a), np.cos(a), 0.0])
    return np.stack([right, np.cross(back, right), back]).astype(np.float32)


def _unit_frame(prims: Primitives, origins, direction):
    """Rays ``origins [rays, 3]``, ``direction [3]`` in each primitive's unit frame: ``[count, rays, 3]``,
    ``[count, 1, 3]``."""
    o = jnp.einsum("prj,pji->pri", origins[None] - prims.centre[:, None], prims.rotation) / prims.half[:, None]
    d = jnp.einsum("j,pji->pi", direction, prims.rotation) / prims.half
    return o, d[:, None]


def _safe(d):
    return jnp.where(jnp.abs(d) < _TINY, _TINY, d)


def _hit_ellipsoid(o, d):
    """First hits ``t [count, rays]`` (inf: none) and unit-frame normals ``[count, rays, 3]``."""
    a, b, c = (d * d).sum(-1), (o * d).sum(-1), (o * o).sum(-1) - 1
    disc = b * b - a * c
    t = (-b - jnp.sqrt(jnp.maximum(disc, 0))) / a
    return jnp.where((disc >= 0) & (t > 0), t, jnp.inf), o + t[..., None] * d


def _hit_box(o, d):
    d = _safe(d)
    t1, t2 = (-1 - o) / d, (1 - o) / d
    near, far = jnp.minimum(t1, t2), jnp.maximum(t1, t2)
    t_in, t_out = near.max(-1), far.min(-1)
    axis = jax.nn.one_hot(near.argmax(-1), 3, dtype=o.dtype)
    return jnp.where((t_in <= t_out) & (t_in > 0), t_in, jnp.inf), -axis * jnp.sign(d)


def _hit_cylinder(o, d):
    oxy, dxy = o[..., :2], d[..., :2]
    a = jnp.maximum((dxy * dxy).sum(-1), _TINY)
    b, c = (oxy * dxy).sum(-1), (oxy * oxy).sum(-1) - 1
    disc = b * b - a * c
    t_side = (-b - jnp.sqrt(jnp.maximum(disc, 0))) / a
    side_ok = (disc >= 0) & (jnp.abs(o[..., 2] + t_side * d[..., 2]) <= 1)
    cap_z = -jnp.sign(_safe(d[..., 2]))
    t_cap = (cap_z - o[..., 2]) / _safe(d[..., 2])
    p_cap = oxy + t_cap[..., None] * dxy
    cap_ok = (p_cap * p_cap).sum(-1) <= 1
    t_side = jnp.where(side_ok & (t_side > 0), t_side, jnp.inf)
    t_cap = jnp.where(cap_ok & (t_cap > 0), t_cap, jnp.inf)
    p_side = oxy + t_side[..., None] * dxy
    n_side = jnp.concatenate([p_side, jnp.zeros_like(p_side[..., :1])], -1)
    n_cap = jnp.zeros_like(n_side).at[..., 2].set(cap_z)
    return jnp.minimum(t_side, t_cap), jnp.where((t_side <= t_cap)[..., None], n_side, n_cap)


_HITS = {"ellipsoid": _hit_ellipsoid, "box": _hit_box, "cylinder": _hit_cylinder}


def _cast(scene: Scene, origins, direction):
    """Nearest hit of rays ``origins [rays, 3]`` along ``direction [3]``: ``hit [rays]`` bool and unit
    world normals ``[rays, 3]``."""
    ts, normals = [], []
    for kind in KINDS:
        prims = getattr(scene, kind)
        o, d = _unit_frame(prims, origins, direction)
        t, n = _HITS[kind](o, d)
        ts.append(jnp.where(prims.valid[:, None], t, jnp.inf))
        normals.append(jnp.einsum("pri,pji->prj", n / prims.half[:, None], prims.rotation))
    t, n = jnp.concatenate(ts), jnp.concatenate(normals)
    nearest = t.argmin(0)
    normal = jnp.take_along_axis(n, nearest[None, :, None], 0)[0]
    normal = normal / jnp.maximum(jnp.linalg.norm(normal, axis=-1, keepdims=True), _TINY)
    return jnp.isfinite(t.min(0)), normal


def _view(scene: Scene, frame, lights, ambient, size: int):
    """One view (``frame [3, 3]`` from :func:`camera_frame`) under each of ``lights [lights, 3]``:
    ``[lights, size, size]`` uint8."""
    pixel = (jnp.arange(size, dtype=jnp.float32) + 0.5) / size * 2 - 1
    x, y = jnp.meshgrid(pixel, -pixel)  # row 0 is the top of the picture
    origins = x.reshape(-1, 1) * frame[None, 0] + y.reshape(-1, 1) * frame[None, 1] + _EYE_DISTANCE * frame[None, 2]
    hit, normal = _cast(scene, origins, -frame[2])
    lambert = jnp.maximum(normal @ (lights @ frame).T, 0)  # lights to world: camera rows are its axes
    shade = DARKEST + (BRIGHTEST - DARKEST) * (ambient + (1 - ambient) * lambert)
    image = jnp.where(hit[:, None], jnp.round(shade), BACKGROUND).astype(jnp.uint8)
    return image.T.reshape(len(lights), size, size)


@functools.partial(jax.jit, static_argnames="size")
def _views(scene: Scene, frames, lights, ambient, size: int):
    return jax.vmap(_view, in_axes=(None, 0, None, None, None))(scene, frames, lights, ambient, size)


def render(scene: Scene, views: np.ndarray, lights: np.ndarray, *, ambient: float = 0.15, size: int = 48) -> np.ndarray:
    """Grayscale pictures of one object from every view under every light.

    Args:
      scene: the object, inside the unit sphere.
      views: ``[views, 2]`` (azimuth, elevation) in degrees.
      lights: ``[lights, 3]`` unit directions towards the light in the camera frame (right, up, back).
      ambient: the brightness, in [0, 1], of a surface facing away from the light.
      size: the pictures' height and width in pixels.

    Returns:
      ``[views, lights, size, size]`` uint8: 0 (background) or ``30 + 225 * (ambient + (1 - ambient)
      * max(0, normal . light))``.
    """
    frames = np.stack([camera_frame(a, e) for a, e in np.asarray(views)])
    out = _views(scene, frames, np.asarray(lights, np.float32), np.float32(ambient), size)
    return np.asarray(out)
