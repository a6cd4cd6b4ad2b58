"""Five kinds of toy, each built from parametrised parts: a four-legged animal, a human figure, an airplane,
a truck and a car (the categories of smallNORB, LeCun et al. 2004).

An instance draws its proportions (lengths, radii, angles) uniformly from its category's ranges with a
generator seeded by ``(seed, category, instance)``, so instance ``k`` of a category is the same toy on
every machine. Objects are built in their own frame (``x`` forward, ``y`` to the left, ``z`` up, standing
on ``z = 0``), then centred and scaled so that the diagonal of their bounding box's footprint spans 85% of
the camera's ``[-1, 1]`` view, or less where the whole bounding box would not fit (an object never leaves
the picture, whatever the viewpoint).
"""

from __future__ import annotations

import dataclasses
import math
import types

import numpy as np

from capsjax.data.rendering import KINDS, Primitives, Scene

CATEGORIES = ("animal", "human", "airplane", "truck", "car")
PADDED = {"ellipsoid": 2, "box": 5, "cylinder": 6}  # the most parts of each kind any category uses
_HALF_FOOTPRINT, _HALF_DIAGONAL = 0.85, 0.98


@dataclasses.dataclass(frozen=True)
class Part:
    """One primitive: ``kind`` in :data:`~capsjax.data.rendering.KINDS`, ``centre [3]``, ``half [3]``
    (half-sizes along its own axes; a cylinder's axis is its third), ``rotation [3, 3]`` (columns: its axes)."""

    kind: str
    centre: np.ndarray
    half: np.ndarray
    rotation: np.ndarray


def _part(kind, centre, half) -> Part:
    return Part(kind, np.asarray(centre, float), np.asarray(half, float), np.eye(3))


def _beam(kind, start, end, across, hint=(0.0, 0.0, 1.0)) -> Part:
    """A part whose third axis runs from ``start`` to ``end``; ``across = (a, b)`` are its half-sizes
    along its first axis (``hint`` made orthogonal to the beam) and its second."""
    start, end = np.asarray(start, float), np.asarray(end, float)
    axis = (end - start) / np.linalg.norm(end - start)
    first = np.asarray(hint, float) - np.dot(hint, axis) * axis
    if np.linalg.norm(first) < 1e-6:  # the hint runs along the beam: any perpendicular will do
        first = np.array([1.0, 0.0, 0.0]) - axis[0] * axis
    first /= np.linalg.norm(first)
    rotation = np.stack([first, np.cross(axis, first), axis], axis=1)
    half = np.array([across[0], across[1], np.linalg.norm(end - start) / 2])
    return Part(kind, (start + end) / 2, half, rotation)


RANGES = {
    "animal": dict(length=(1.3, 2.0), girth=(0.35, 0.5), leg=(0.5, 0.95), neck=(0.35, 0.8), head=(0.25, 0.35),
                   tail=(0.25, 0.6)),
    "human": dict(leg=(0.8, 1.05), torso=(0.6, 0.8), shoulders=(0.4, 0.6), spread=(0.0, 0.25), arm_angle=(10, 55),
                  head=(0.12, 0.17)),
    "airplane": dict(length=(2.2, 2.8), radius=(0.2, 0.28), span=(2.0, 2.8), chord=(0.5, 0.8), sweep=(0, 35),
                     wing_x=(-0.1, 0.25), fin=(0.35, 0.6), engines=(0, 1)),
    "truck": dict(length=(2.4, 3.2), cab=(0.55, 0.8), cab_height=(0.7, 0.95), cargo=(0.95, 1.4), width=(0.9, 1.1),
                  wheel=(0.2, 0.28)),
    "car": dict(length=(2.0, 2.6), width=(0.85, 1.0), body=(0.28, 0.4), roof=(0.3, 0.45), cabin=(0.45, 0.6),
                offset=(-0.12, 0.05), wheel=(0.18, 0.24)),
}  # fmt: skip
"""Each category's proportions (object units; angles in degrees), drawn uniformly per instance, in this order."""


def _animal(p) -> list[Part]:
    z = p.leg + 0.6 * p.girth
    parts = [_part("ellipsoid", (0, 0, z), (p.length / 2, 0.85 * p.girth, p.girth))]
    for x in (0.36 * p.length, -0.36 * p.length):
        parts += [_beam("cylinder", (x, y, z), (x, y, 0), (0.14, 0.14)) for y in (0.5 * p.girth, -0.5 * p.girth)]
    neck_end = np.array([0.5 * p.length + 0.35 * p.neck, 0, z + p.neck])
    parts.append(_beam("cylinder", (0.38 * p.length, 0, z + 0.3 * p.girth), neck_end, (0.13, 0.13)))
    parts.append(_part("ellipsoid", neck_end + (0.6 * p.head, 0, 0), (1.4 * p.head, 0.75 * p.head, 0.8 * p.head)))
    tail_start = np.array([-0.45 * p.length, 0, z + 0.4 * p.girth])
    parts.append(_beam("cylinder", tail_start, tail_start + (-0.7 * p.tail, 0, -0.6 * p.tail), (0.07, 0.07)))
    return parts


def _human(p) -> list[Part]:
    hip, leg, torso = 0.12, p.leg, p.torso
    feet = [(y, y + math.copysign(p.spread, y)) for y in (hip, -hip)]
    parts = [_beam("cylinder", (0, y, leg), (0, foot, 0), (0.11, 0.11)) for y, foot in feet]
    parts.append(_part("box", (0, 0, leg + torso / 2), (0.18, p.shoulders / 2, torso / 2)))
    parts.append(_part("ellipsoid", (0, 0, leg + torso + 0.9 * p.head), (p.head, 0.9 * p.head, 1.15 * p.head)))
    arm, angle = 0.85 * torso + 0.15, math.radians(p.arm_angle)
    for y in (p.shoulders / 2 + 0.06, -p.shoulders / 2 - 0.06):
        top = np.array([0, y, leg + torso - 0.06])
        end = top + (0.1, math.copysign(arm * math.sin(angle), y), -arm * math.cos(angle))
        parts.append(_beam("cylinder", top, end, (0.09, 0.09)))
    return parts


def _airplane(p) -> list[Part]:
    length, radius, span, chord, wing_x = p.length, p.radius, p.span, p.chord, p.wing_x
    back = math.tan(math.radians(p.sweep))
    parts = [_part("ellipsoid", (0, 0, 0), (length / 2, radius, radius))]
    for side in (1, -1):
        root, tip = (wing_x, 0, -0.3 * radius), (wing_x - back * span / 2, side * span / 2, -0.1 * radius)
        parts.append(_beam("box", root, tip, (0.05, chord / 2)))
        tail_root = (-0.42 * length, 0, 0.2 * radius)
        tail_tip = (-0.42 * length - back * 0.35 * span / 2, side * 0.35 * span / 2, 0.3 * radius)
        parts.append(_beam("box", tail_root, tail_tip, (0.04, chord / 4)))
        if p.engines > 0.5:
            x = wing_x - back * span / 6 + 0.1
            y, z = side * span / 6, -radius - 0.05
            parts.append(_beam("cylinder", (x + 0.25, y, z), (x - 0.25, y, z), (0.09, 0.09)))
    fin_root = (-0.4 * length, 0, 0.5 * radius)
    fin_top = (-0.45 * length - 0.6 * p.fin * back, 0, radius + p.fin)
    parts.append(_beam("box", fin_root, fin_top, (0.04, chord / 3), hint=(0, 1, 0)))
    return parts


def _wheels(xs, width, radius, tyre=0.1) -> list[Part]:
    """A pair of wheels (cylinders across the body, straddling its sides) at each of ``xs``."""
    y = width / 2
    return [
        _beam("cylinder", (x, side * y - tyre, radius), (x, side * y + tyre, radius), (radius, radius))
        for side in (-1, 1)
        for x in xs
    ]


def _truck(p) -> list[Part]:
    length, cab, width = p.length, p.cab, p.width
    front, floor = length / 2, 1.3 * p.wheel
    cargo = length - cab - 0.08
    parts = [
        _part("box", (0, 0, floor - 0.05), (length / 2, 0.42 * width, 0.08)),
        _part("box", (front - cab / 2, 0, floor + p.cab_height / 2), (cab / 2, 0.46 * width, p.cab_height / 2)),
        _part("box", (-front + cargo / 2, 0, floor + p.cargo / 2), (cargo / 2, width / 2, p.cargo / 2)),
    ]
    xs = (front - cab / 2, -front + 0.55 * cargo, -front + 0.2 * cargo)
    return parts + _wheels(xs, width, p.wheel)


def _car(p) -> list[Part]:
    bottom = 0.7 * p.wheel
    parts = [
        _part("box", (0, 0, bottom + p.body / 2), (p.length / 2, p.width / 2, p.body / 2)),
        _part("ellipsoid", (p.offset * p.length, 0, bottom + p.body), (p.cabin * p.length / 2, 0.46 * p.width, p.roof)),
    ]
    return parts + _wheels((0.33 * p.length, -0.33 * p.length), p.width, p.wheel)


_BUILDERS = {"animal": _animal, "human": _human, "airplane": _airplane, "truck": _truck, "car": _car}


def build_parts(category: int, instance: int, *, seed: int = 0) -> list[Part]:
    """The parts of instance ``instance`` of category ``CATEGORIES[category]``, in the object's own frame."""
    name = CATEGORIES[category]
    rng = np.random.default_rng([seed, category, instance])
    proportions = {key: float(rng.uniform(low, high)) for key, (low, high) in RANGES[name].items()}
    return _BUILDERS[name](types.SimpleNamespace(**proportions))


def _normalise(parts: list[Part]) -> list[Part]:
    """Centre the parts' bounding box on the origin and scale the half-diagonal of its footprint to
    ``_HALF_FOOTPRINT``, or its half-diagonal to ``_HALF_DIAGONAL`` if that is smaller."""
    signs = np.array(np.meshgrid([-1, 1], [-1, 1], [-1, 1])).reshape(3, -1)
    corners = np.concatenate([(p.rotation @ (p.half[:, None] * signs)).T + p.centre for p in parts])
    low, high = corners.min(0), corners.max(0)
    half = (high - low) / 2
    scale = min(_HALF_FOOTPRINT / np.linalg.norm(half[:2]), _HALF_DIAGONAL / np.linalg.norm(half))
    centre = (low + high) / 2
    return [dataclasses.replace(p, centre=(p.centre - centre) * scale, half=p.half * scale) for p in parts]


def _pack(parts: list[Part], count: int) -> Primitives:
    """``parts`` (all of one kind) padded to ``count`` as float32 arrays."""
    if len(parts) > count:
        raise ValueError(f"shapes: {len(parts)} parts of one kind, more than the {count} in PADDED; raise PADDED")
    pad = count - len(parts)
    return Primitives(
        centre=np.array([p.centre for p in parts] + [np.zeros(3)] * pad, np.float32).reshape(count, 3),
        rotation=np.array([p.rotation for p in parts] + [np.eye(3)] * pad, np.float32).reshape(count, 3, 3),
        half=np.array([p.half for p in parts] + [np.ones(3)] * pad, np.float32).reshape(count, 3),
        valid=np.array([True] * len(parts) + [False] * pad),
    )


def build_scene(category: int, instance: int, *, seed: int = 0) -> Scene:
    """Instance ``instance`` of category ``category``, centred and scaled, as a renderable :class:`Scene`."""
    parts = _normalise(build_parts(category, instance, seed=seed))
    return Scene(**{kind: _pack([p for p in parts if p.kind == kind], PADDED[kind]) for kind in KINDS})
