"""The built-in synthetic scenes: rooms of textured boxes, ray cast along hand-held loops.

Two rooms (`ROOMS`): "table" (the default), procedurally textured boxes around a central table,
whose test sequences walk the training loop again; "studio", a larger furnished room with the
photographs scikit-image ships as textures, whose test sequences walk other loops (lower and
tighter, higher and wider, looking off-centre), for checking that settings generalize.

World frame: metres, z up, floor at z = 0, the room's vertical axis through the origin. Camera
frame (OpenCV): x right, y down, z forward; poses are camera-to-world; pixel (x, y) has its centre
at integer (x, y). In the table room every sequence walks the same loop around the table, looking
inwards, with its own smooth hand-held noise, so that test sequences revisit the training views
(docs/reference.md §2).
"""

import colorsys
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import open3d as o3d
from tqdm import tqdm

from common.data import photos
from common.errors import InputError

ROOM_XYZ = np.array([4.0, 3.0, 2.5])  # room extent in metres
LOOP_RADII = (1.2, 0.8)  # ellipse around the table, metres (x, y)
EYE_HEIGHT = 1.45  # metres
PITCH_DEG = 17.0  # looking down by this much
LIGHT = np.array([0.4, -0.3, 2.3])  # point light below the ceiling, world frame
DROPOUT_RATE = 0.015  # share of depth pixels randomly missing, as on a Kinect
NO_DEPTH = 65535  # depth PNG value of pixels without depth
STRIPES, CHECKERS, BLOBS, GRADIENT, BRICKS, NOISE = range(6)
ROOMS = ("table", "studio")
DEFAULT_ROOM = "table"


@dataclass(frozen=True)
class Loop:
    """An elliptic camera loop: centre (x, y) and radii in metres, eye height in metres, looking
    down by pitch_deg, heading yaw_deg off the direction across the loop."""

    centre: tuple = (0.0, 0.0)
    radii: tuple = LOOP_RADII
    height: float = EYE_HEIGHT
    pitch_deg: float = PITCH_DEG
    yaw_deg: float = 0.0


TABLE_LOOP = Loop()
# The studio's training loop and the test loops its test sequences take in turn: the first
# 15-20 cm inside and below the training loop, looking down less and to the left; the second
# outside and above it, looking down more and to the right.
STUDIO_LOOP = Loop(centre=(0.2, 0.0), radii=(1.6, 1.1), height=1.5, pitch_deg=18.0)
STUDIO_TEST_LOOPS = (
    Loop(centre=(0.3, 0.05), radii=(1.4, 0.92), height=1.32, pitch_deg=12.0, yaw_deg=9.0),
    Loop(centre=(0.1, -0.05), radii=(1.78, 1.24), height=1.66, pitch_deg=24.0, yaw_deg=-9.0),
)
STUDIO_XYZ = np.array([5.6, 4.0, 2.7])
STUDIO_LIGHT = np.array([0.3, 0.25, 2.55])


def intrinsics_for(width, height):
    """(focal, cx, cy) in pixels: 7-Scenes' f = 525 scaled to the width, centre of the image."""
    return 525.0 * width / 640.0, width / 2.0, height / 2.0


@dataclass
class Scene:
    """Axis-aligned boxes (box 0 is the room, seen from inside) and one material per box face.

    Face k of box b is material 6·b + k, faces ordered −x, +x, −y, +y, −z, +z.
    """

    boxes_n23: np.ndarray  # [N, 2, 3] min and max corners, metres
    palettes_m43: np.ndarray  # [M, 4, 3] RGB in [0, 1], dark to bright
    patterns_m: np.ndarray  # [M] pattern id
    scales_m: np.ndarray  # [M] pattern scale, metres
    angles_m: np.ndarray  # [M] pattern orientation on the face, radians
    seeds_m: np.ndarray  # [M] uint32 noise seed
    raycaster: o3d.t.geometry.RaycastingScene
    light: np.ndarray = field(default_factory=lambda: LIGHT)  # point light, world frame, m
    # Photographic materials (studio): per material a photograph (index into photos), texel
    # offset (s, t) and the colours black and white of the photograph map to (grey ones tinted).
    photos: tuple | None = None  # pyramids of photos.photo_pyramid
    photo_m: np.ndarray | None = None  # [M] index into photos
    offsets_m2: np.ndarray | None = None  # [M, 2] texels
    tints_m23: np.ndarray | None = None  # [M, 2, 3] RGB in [0, 1]


def _overlaps(lo, hi, boxes, margin):
    return any(np.all(lo < b[1] + margin) and np.all(hi > b[0] - margin) for b in boxes)


def _place_boxes(rng):
    """[N, 2, 3] boxes: the room, a table with things on it, boxes along and on the walls."""
    half = ROOM_XYZ / 2
    room = np.array([[-half[0], -half[1], 0.0], [half[0], half[1], ROOM_XYZ[2]]])
    tsize = np.array([rng.uniform(0.7, 0.95), rng.uniform(0.45, 0.6), rng.uniform(0.7, 0.8)])
    table = np.array([[-tsize[0] / 2, -tsize[1] / 2, 0], [tsize[0] / 2, tsize[1] / 2, tsize[2]]])
    boxes = [room, table]
    on_table = []
    while len(on_table) < 3:
        size = np.array([rng.uniform(0.12, 0.3), rng.uniform(0.12, 0.25), rng.uniform(0.1, 0.4)])
        centre = rng.uniform(-(tsize[:2] - size[:2]) / 2, (tsize[:2] - size[:2]) / 2)
        lo = np.array([*(centre - size[:2] / 2), tsize[2]])
        if not _overlaps(lo, lo + size, on_table, 0.03):
            on_table.append(np.array([lo, lo + size]))
    boxes += on_table
    # Floor boxes stand against a wall, wall boxes (shelves, pictures) hang on one. Floor boxes are
    # lower than the eyes and wall boxes shallow, so the camera loop never runs into one.
    for kind, count in (("floor", 7), ("wall", 7)):
        placed = 0
        while placed < count:
            axis = rng.integers(2)  # the wall is normal to this axis
            side = rng.choice([-1.0, 1.0])
            along = 1 - axis
            depth = rng.uniform(0.2, 0.4) if kind == "floor" else rng.uniform(0.02, 0.25)
            width = rng.uniform(0.3, 0.9)
            height = rng.uniform(0.3, 1.1) if kind == "floor" else rng.uniform(0.15, 0.6)
            lo, hi = np.zeros(3), np.zeros(3)
            wall = side * half[axis]
            lo[axis], hi[axis] = sorted((wall, wall - side * depth))
            lo[along] = rng.uniform(-half[along], half[along] - width)
            hi[along] = lo[along] + width
            lo[2] = 0.0 if kind == "floor" else rng.uniform(0.8, 2.2 - height)
            hi[2] = lo[2] + height
            if not _overlaps(lo, hi, boxes[1:], 0.05):
                boxes.append(np.stack([lo, hi]))
                placed += 1
    return np.stack(boxes)


def _palette(rng):
    """[4, 3] RGB colours in [0, 1] around one hue, sorted dark to bright."""
    base = rng.random()
    hues = (base + rng.uniform(-0.1, 0.1, 4) + 0.5 * (rng.random(4) < 0.3)) % 1.0
    values = np.sort(rng.uniform(0.2, 0.95, 4))
    values[0], values[3] = min(values[0], 0.4), max(values[3], 0.8)
    sats = rng.uniform(0.2, 0.85, 4)
    return np.array([colorsys.hsv_to_rgb(h, s, v) for h, s, v in zip(hues, sats, values)])


def box_triangles(boxes_n23):
    """(vertices [8N, 3], triangles [12N, 3]) of the boxes, two triangles per face in face order."""
    verts, tris = [], []
    for b, box in enumerate(boxes_n23):
        corners = np.array([[box[(k >> a) & 1, a] for a in range(3)] for k in range(8)])
        verts.append(corners)
        for axis in range(3):
            u, v = [a for a in range(3) if a != axis]
            for side in (0, 1):
                quad = [8 * b + (side << axis) + (i << u) + (j << v)
                        for i, j in ((0, 0), (1, 0), (1, 1), (0, 1))]
                tris += [[quad[0], quad[1], quad[2]], [quad[0], quad[2], quad[3]]]
    return np.concatenate(verts), np.array(tris)


def _raycaster(boxes):
    raycaster = o3d.t.geometry.RaycastingScene()
    verts, tris = box_triangles(boxes)
    raycaster.add_triangles(o3d.core.Tensor(verts.astype(np.float32)),
                            o3d.core.Tensor(tris.astype(np.uint32)))
    return raycaster


def make_scene(seed, room=DEFAULT_ROOM):
    """The room (one of ROOMS) of a seed: box layout, face materials and the ray caster."""
    if room == "studio":
        return _make_studio(seed)
    if room != "table":
        raise InputError(f"--room {room}: unknown room; choose one of {', '.join(ROOMS)}")
    rng = np.random.default_rng([seed, 0])
    boxes = _place_boxes(rng)
    m = 6 * len(boxes)
    patterns = rng.integers(0, 6, m)
    patterns[4] = rng.choice([CHECKERS, BRICKS])  # the floor gets tiles
    raycaster = _raycaster(boxes)
    return Scene(
        boxes_n23=boxes.astype(np.float32),
        palettes_m43=np.stack([_palette(rng) for _ in range(m)]).astype(np.float32),
        patterns_m=patterns,
        scales_m=rng.uniform(0.08, 0.3, m).astype(np.float32),
        angles_m=(rng.uniform(0, math.pi, m) * (patterns == STRIPES)
                  + rng.uniform(-0.3, 0.3, m)).astype(np.float32),
        seeds_m=rng.integers(0, 2**32, m, dtype=np.uint32),
        raycaster=raycaster,
    )


# ---- The studio: a furnished 5.6 m × 4 m room with photographic textures -------------------

def _studio_boxes(rng):
    """([N, 2, 3] boxes, [N] roles): the room, a rug and a kitchen island with things on it in the
    middle, a sofa, a bookshelf with books, a sideboard, a desk with a screen, a pillar, pictures.

    Roles pick the textures: "room", "furniture", "object" (small things) or "picture".
    """
    hx, hy, hz = STUDIO_XYZ / 2
    boxes, roles = [], []

    def add(lo, hi, role):
        boxes.append(np.array([lo, hi], dtype=np.float64))
        roles.append(role)

    def jitter(amount):
        return rng.uniform(-amount, amount)

    add([-hx, -hy, 0.0], [hx, hy, STUDIO_XYZ[2]], "room")
    ix, iy = 0.35 + jitter(0.05), -0.15 + jitter(0.05)
    size = np.array([rng.uniform(1.0, 1.15), rng.uniform(0.45, 0.55), rng.uniform(0.86, 0.92)])
    add([ix - 0.9, iy - 0.65, 0.0], [ix + 0.9, iy + 0.65, 0.01], "object")  # the rug
    island = np.array([[ix - size[0] / 2, iy - size[1] / 2, 0.0],
                       [ix + size[0] / 2, iy + size[1] / 2, size[2]]])
    add(*island, "furniture")
    on_island = []
    while len(on_island) < 4:
        dims = np.array([rng.uniform(0.08, 0.25), rng.uniform(0.08, 0.2), rng.uniform(0.05, 0.3)])
        centre = rng.uniform(island[0, :2] + dims[:2] / 2, island[1, :2] - dims[:2] / 2)
        lo = np.array([*(centre - dims[:2] / 2), size[2]])
        if not _overlaps(lo, lo + dims, on_island, 0.02):
            on_island.append(np.array([lo, lo + dims]))
    for lo, hi in on_island:
        add(lo, hi, "object")
    # The sofa against the −x wall: seat, back rest and two arms.
    y0 = 0.1 + jitter(0.2) - 0.9
    add([-hx, y0, 0.0], [-hx + 0.85, y0 + 1.8, 0.42], "furniture")
    add([-hx, y0, 0.42], [-hx + 0.2, y0 + 1.8, 0.85], "furniture")
    for ya in (y0, y0 + 1.6):
        add([-hx + 0.2, ya, 0.42], [-hx + 0.85, ya + 0.2, 0.62], "furniture")
    # The bookshelf against the +y wall: two sides, five boards, books on the four lower ones.
    x0, shelf_w, depth = -1.6 + jitter(0.15), 1.2, 0.35
    add([x0, hy - depth, 0.0], [x0 + 0.03, hy, 2.0], "furniture")
    add([x0 + shelf_w - 0.03, hy - depth, 0.0], [x0 + shelf_w, hy, 2.0], "furniture")
    for k in range(5):
        z = 0.05 + 0.45 * k
        add([x0 + 0.03, hy - depth, z], [x0 + shelf_w - 0.03, hy, z + 0.025], "furniture")
        if k == 4:
            break
        x = x0 + 0.05 + rng.uniform(0, 0.1)
        while True:
            width = rng.uniform(0.03, 0.09)
            if x + width > x0 + shelf_w - 0.05:
                break
            height = rng.uniform(0.2, 0.38)
            back = hy - depth + rng.uniform(0.02, 0.08)
            add([x, back, z + 0.025], [x + width, hy, z + 0.025 + height], "object")
            x += width + (rng.uniform(0.1, 0.3) if rng.random() < 0.15 else 0.003)
    # The sideboard against the −y wall, with a vase and a lamp on it.
    x0 = 0.2 + jitter(0.15)
    add([x0, -hy, 0.0], [x0 + 1.6, -hy + 0.45, 0.8], "furniture")
    for lo_x, w, h in ((0.25, 0.16, 0.35), (1.1, 0.22, 0.55)):
        lo_x += x0 + jitter(0.08)
        add([lo_x, -hy + 0.12, 0.8], [lo_x + w, -hy + 0.12 + w, 0.8 + h], "object")
    # The desk against the +x wall: a top on two side panels, a screen on it.
    y0 = -0.9 + jitter(0.1)
    add([hx - 0.6, y0, 0.72], [hx, y0 + 1.4, 0.76], "furniture")
    for ya in (y0, y0 + 1.37):
        add([hx - 0.6, ya, 0.0], [hx, ya + 0.03, 0.72], "furniture")
    add([hx - 0.3, y0 + 0.4, 0.76], [hx - 0.25, y0 + 1.0, 1.12], "object")
    # A pillar between the desk and the bookshelf, floor to ceiling.
    px, py = 2.1 + jitter(0.05), 1.38 + jitter(0.05)
    add([px - 0.17, py - 0.17, 0.0], [px + 0.17, py + 0.17, STUDIO_XYZ[2]], "furniture")
    # Pictures: one per wall, above the furniture there (aspect of the photograph they show).
    for axis, side, along, z0 in ((0, -1, 0.1, 1.15), (1, -1, 1.0, 1.5), (0, 1, -0.2, 1.3),
                                  (1, 1, 1.2, 0.9)):
        width = rng.uniform(0.5, 0.8)
        height = width * rng.uniform(0.65, 0.8)
        lo, hi = np.zeros(3), np.zeros(3)
        wall = side * STUDIO_XYZ[axis] / 2
        lo[axis], hi[axis] = sorted((wall, wall - side * 0.03))
        centre = along + jitter(0.1)
        lo[1 - axis], hi[1 - axis] = centre - width / 2, centre + width / 2
        lo[2] = z0 + jitter(0.1)
        hi[2] = lo[2] + height
        add(lo, hi, "picture")
    return np.stack(boxes), roles


def _make_studio(seed):
    """The studio of a seed: layout, photographic materials and the ray caster."""
    rng = np.random.default_rng([seed, 3])
    boxes, roles = _studio_boxes(rng)
    names = photos.COLOUR_PHOTOS + photos.GREY_PHOTOS
    pyramids = tuple(photos.photo_pyramid(name) for name in names)
    m = 6 * len(boxes)
    photo = np.zeros(m, dtype=np.int64)
    scales = np.zeros(m, dtype=np.float32)  # metres per photograph width
    angles = np.zeros(m, dtype=np.float32)
    offsets = np.zeros((m, 2), dtype=np.float32)
    tints = np.zeros((m, 2, 3), dtype=np.float32)
    colour = len(photos.COLOUR_PHOTOS)
    surfaces = rng.permutation(np.arange(colour, len(names)))  # the room's faces: all different
    pictures = rng.permutation(colour)
    for b, role in enumerate(roles):
        extent = boxes[b, 1] - boxes[b, 0]
        thin = int(np.argmin(extent))
        # A picture's front faces the room: the −face of one on a + wall and vice versa.
        front = 2 * thin + int(boxes[b, 0, thin] < 0)
        for k in range(6):
            i = 6 * b + k
            if role == "room":
                photo[i], scales[i] = surfaces[k], rng.uniform(1.2, 2.0)
                angles[i] = rng.uniform(-0.2, 0.2)
            else:
                photo[i] = rng.integers(len(names))
                scales[i] = (rng.uniform(0.5, 1.0) if role == "furniture"
                             else rng.uniform(0.15, 0.4))
                angles[i] = rng.uniform(0, 2 * math.pi)
            scales[i] *= photos.COARSEN.get(names[photo[i]], 1.0)
            offsets[i] = rng.uniform(0, 512, 2)
            palette = _palette(rng)
            if role == "picture" and k == front:
                # Upright, cropped to the face and centred (faces: u along the wall, v up).
                photo[i], angles[i] = pictures[b % colour], 0.0
                h0, w0 = pyramids[photo[i]][0].shape[:2]
                width, height = extent[1 - thin], extent[2]
                texel = min(width / w0, height / h0)
                scales[i] = texel * w0
                offsets[i] = (w0 - width / texel) / 2, (h0 + height / texel) / 2
            tints[i] = palette[[0, 3]] if photo[i] >= colour else [[0, 0, 0], [1, 1, 1]]
    return Scene(
        boxes_n23=boxes.astype(np.float32),
        palettes_m43=np.zeros((m, 4, 3), dtype=np.float32),
        patterns_m=np.zeros(m, dtype=np.int64),
        scales_m=scales,
        angles_m=angles,
        seeds_m=rng.integers(0, 2**32, m, dtype=np.uint32),
        raycaster=_raycaster(boxes),
        light=STUDIO_LIGHT,
        photos=pyramids,
        photo_m=photo,
        offsets_m2=offsets,
        tints_m23=tints,
    )


def _hash(ix, iy, seed):
    """Uniform [0, 1) for integer lattice points and uint32 seeds (an integer mixing hash)."""
    h = (np.asarray(ix).astype(np.int64) % 2**32).astype(np.uint32) * np.uint32(0x27D4EB2D)
    h ^= (np.asarray(iy).astype(np.int64) % 2**32).astype(np.uint32) * np.uint32(0x165667B1) + seed
    for shift, mult in ((15, 0x2C1B3C6D), (12, 0x297A2D39)):
        h ^= h >> np.uint32(shift)
        h *= np.uint32(mult)
    h ^= h >> np.uint32(15)
    return (h >> np.uint32(8)).astype(np.float32) / np.float32(2**24)


# Lattice values of the value noise; a seed picks its own 256 × 256 window (cheaper than hashing).
# One extra row and column repeat the first, so a cell's four corners never wrap around.
_LATTICE = np.random.default_rng(12345).random((256, 256), dtype=np.float32)
_LATTICE = np.pad(_LATTICE, ((0, 1), (0, 1)), mode="wrap").ravel()


def value_noise(x, y, seed):
    """Smooth noise in [0, 1) with features about one unit of x, y apart (float32)."""
    fx, fy = np.floor(x), np.floor(y)
    ix = (fx.astype(np.int32) + (seed & np.uint32(255)).astype(np.int32)) & 255
    iy = (fy.astype(np.int32) + (seed >> np.uint32(8) & np.uint32(255)).astype(np.int32)) & 255
    fx, fy = (x - fx).astype(np.float32), (y - fy).astype(np.float32)
    sx, sy = fx * fx * (3 - 2 * fx), fy * fy * (3 - 2 * fy)
    i00 = iy * 257 + ix
    c00, c01 = np.take(_LATTICE, i00), np.take(_LATTICE, i00 + 1)
    c10, c11 = np.take(_LATTICE, i00 + 257), np.take(_LATTICE, i00 + 258)
    top = c00 + sx * (c01 - c00)
    bottom = c10 + sx * (c11 - c10)
    return top + sy * (bottom - top)


def _pattern(kind, a, b, s, seed):
    """Palette position in [0, 3] of one pattern at face coordinates (a, b), metres, scale s."""
    if kind == STRIPES:
        thin = np.where((b / (2.3 * s)) % 1.0 < 0.15, 1.0, 0.0)
        return np.where((a / s) % 1.0 < 0.5, 0.0, 3.0) + thin
    if kind == CHECKERS:
        return 3.0 * ((np.floor(a / s) + np.floor(b / s)) % 2)
    if kind == BLOBS:
        n = value_noise(a / s, b / s, seed)
        return 3.0 * np.clip((n - 0.4) * 5, 0, 1)
    if kind == GRADIENT:
        return 3.0 * np.abs((a / (5 * s)) % 2.0 - 1.0)
    if kind == BRICKS:
        row = np.floor(b / s)
        col = np.floor(a / (2 * s) + _hash(row, row, seed))
        mortar = ((b / s) % 1.0 < 0.1) | ((a / (2 * s) + _hash(row, row, seed)) % 1.0 < 0.05)
        return np.where(mortar, 0.0, 0.8 + 2.2 * _hash(col, row, seed + np.uint32(1)))
    n = 0.7 * value_noise(a / s, b / s, seed) + 0.3 * value_noise(3 * a / s, 3 * b / s, seed)
    return 3.0 * np.clip(n, 0, 1)


def _antialias(scale, footprint):
    """Weight 1 → 0 as a pattern of this scale (metres) shrinks from 4 to 2 pixel footprints."""
    return np.clip(scale / footprint / 2.0 - 1.0, 0.0, 1.0)


def albedo(scene, points_n3, material_n, footprint_n):
    """[N, 3] surface colour in [0, 1] at world points on materials (pixel footprint, metres)."""
    if scene.photos is not None:
        return _photo_albedo(scene, points_n3, material_n, footprint_n)
    box, axis = material_n // 6, material_n % 6 // 2
    rel = points_n3 - scene.boxes_n23[box, 0]  # face coordinates start at the box's min corner
    u = np.where(axis == 0, rel[:, 1], rel[:, 0])
    v = np.where(axis == 2, rel[:, 1], rel[:, 2])
    angle, scale = scene.angles_m[material_n], scene.scales_m[material_n]
    seed = scene.seeds_m[material_n]
    cos, sin = np.cos(angle), np.sin(angle)
    a, b = u * cos + v * sin, v * cos - u * sin
    position = np.empty(len(points_n3), dtype=np.float32)
    kinds = scene.patterns_m[material_n]
    for kind in np.unique(kinds):
        sel = kinds == kind
        position[sel] = _pattern(kind, a[sel], b[sel], scale[sel], seed[sel])
    # Far-away or tiny patterns fade to their mean instead of flickering from frame to frame.
    position = 1.5 + _antialias(scale, footprint_n) * (position - 1.5)
    # Large-scale drift makes places along one face distinguishable.
    position += 1.6 * (value_noise(u / 0.6, v / 0.6, seed + np.uint32(7)) - 0.5)
    position = np.clip(position, 0.0, 3.0)
    low = np.minimum(position.astype(np.int64), 2)
    frac = (position - low)[:, None]
    palettes = scene.palettes_m43.reshape(-1, 3)
    lower = palettes[4 * material_n + low]
    colour = lower + frac * (palettes[4 * material_n + low + 1] - lower)
    # Fine grain (a few centimetres) gives optical flow something to lock onto.
    grain = np.ones(len(points_n3), dtype=np.float32)
    for cell, amount in ((0.025, 0.22), (0.07, 0.15)):
        n = value_noise(u / cell, v / cell, seed + np.uint32(11)) - 0.5
        grain += 2 * amount * _antialias(cell, footprint_n) * n
    return colour * grain[:, None]


def _photo_albedo(scene, points_n3, material_n, footprint_n):
    """albedo() of photographic materials: the face's photograph, tiled mirrored, tinted."""
    box, axis = material_n // 6, material_n % 6 // 2
    rel = points_n3 - scene.boxes_n23[box, 0]
    u = np.where(axis == 0, rel[:, 1], rel[:, 0])
    v = np.where(axis == 2, rel[:, 1], rel[:, 2])
    angle = scene.angles_m[material_n]
    cos, sin = np.cos(angle), np.sin(angle)
    a, b = u * cos + v * sin, v * cos - u * sin
    colour = np.empty((len(points_n3), 3), dtype=np.float32)
    which = scene.photo_m[material_n]
    for p in np.unique(which):
        sel = which == p
        pyramid = scene.photos[p]
        texel = scene.scales_m[material_n[sel]] / pyramid[0].shape[1]  # metres
        offset = scene.offsets_m2[material_n[sel]]
        grey = photos.sample(pyramid, a[sel] / texel + offset[:, 0], offset[:, 1] - b[sel] / texel,
                             footprint_n[sel] / texel)
        tint = scene.tints_m23[material_n[sel]]
        colour[sel] = tint[:, 0] + grey * (tint[:, 1] - tint[:, 0])
    # Slow brightness drift tells the repetitions of a tiled photograph apart.
    drift = 1.0 + 0.5 * (value_noise(u / 0.7, v / 0.7, scene.seeds_m[material_n]) - 0.5)
    return colour * drift[:, None]


def camera_rotation(yaw, pitch, roll):
    """[..., 3, 3] camera-to-world rotations: heading yaw (rad, from +x towards +y), looking down
    by pitch, rolled by roll about the viewing direction."""
    cy, sy, cp, sp = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch)
    forward = np.stack([cy * cp, sy * cp, -sp], -1)
    right0 = np.stack([sy, -cy, np.zeros_like(yaw)], -1)
    down0 = np.cross(forward, right0)
    cr, sr = np.cos(roll)[..., None], np.sin(roll)[..., None]
    right, down = cr * right0 + sr * down0, -sr * right0 + cr * down0
    return np.stack([right, down, forward], -1)


def _smooth_noise(rng, n, sigma_frames):
    """[n] zero-mean unit-variance noise smoothed over about sigma_frames frames."""
    pad = int(4 * sigma_frames)
    white = rng.normal(size=n + 2 * pad)
    k = np.exp(-0.5 * (np.arange(-pad, pad + 1) / sigma_frames) ** 2)
    out = np.convolve(white, k / np.sqrt(np.sum(k**2)), mode="valid")
    return out[:n]


def _wobble(rng, n, offset, drift, shake):
    """[n] hand-held deviation: a constant offset, slow sinusoidal drift and a small shake."""
    t = np.arange(n)
    out = np.full(n, np.clip(rng.normal(0, offset), -2 * offset, 2 * offset))
    for _ in range(2):
        period = rng.uniform(60, 240)
        amplitude = rng.uniform(0.3, 1.0) * drift
        out += amplitude * np.sin(2 * math.pi * t / period + rng.uniform(0, 2 * math.pi))
    return out + shake * _smooth_noise(rng, n, 2.0)


def loop_poses(frames, loop_frames, rng, loop=TABLE_LOOP):
    """[frames, 4, 4] camera-to-world poses of one hand-held walk around the loop.

    One round takes loop_frames frames (at ±10 % varying speed); the camera looks across the loop
    towards its centre (turned by loop.yaw_deg), turning at the same rate as it walks.
    """
    t = np.arange(frames)
    k = rng.integers(1, 4)
    phase = (rng.uniform(-0.03, 0.03) + t / loop_frames) * 2 * math.pi
    phase += 0.1 / k * np.sin(2 * math.pi * k * t / loop_frames + rng.uniform(0, 2 * math.pi))
    # Adding a zero centre changes no bit, so the table room's poses stay what they were.
    centre = np.stack([loop.centre[0] + loop.radii[0] * np.cos(phase),
                       loop.centre[1] + loop.radii[1] * np.sin(phase),
                       np.full(frames, loop.height)], -1)
    centre += np.stack([_wobble(rng, frames, 0.03, 0.03, 0.003) for _ in range(3)], -1)
    yaw, pitch, roll = (math.radians(1) * _wobble(rng, frames, 1.5, 2.0, 0.15) for _ in range(3))
    yaw += phase + math.pi + math.radians(loop.yaw_deg)
    poses = np.tile(np.eye(4), (frames, 1, 1))
    poses[:, :3, :3] = camera_rotation(yaw, pitch + math.radians(loop.pitch_deg), roll)
    poses[:, :3, 3] = centre
    return poses


def render(scene, pose_cw, width, height, rng, intrinsics=None):
    """(colour [H, W, 3] uint8 RGB, depth [H, W] uint16 mm, NO_DEPTH holes) seen from pose_cw;
    intrinsics (fx, fy, cx, cy) default to `intrinsics_for(width, height)`."""
    f, cx, cy = intrinsics_for(width, height)
    fy = f
    if intrinsics is not None:
        f, fy, cx, cy = intrinsics
    xs, ys = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    # Ray directions with camera-frame z = 1, so the hit distance is the depth along z.
    dirs_cam = np.stack([(xs - cx) / f, (ys - cy) / fy, np.ones_like(xs)], -1).reshape(-1, 3)
    dirs = np.einsum("nj,ij->ni", dirs_cam, pose_cw[:3, :3].astype(np.float32))
    rays = np.hstack([np.broadcast_to(pose_cw[:3, 3].astype(np.float32), dirs.shape), dirs])
    hits = scene.raycaster.cast_rays(o3d.core.Tensor(rays))
    depth = hits["t_hit"].numpy()
    hit = np.flatnonzero(np.isfinite(depth))
    material = hits["primitive_ids"].numpy()[hit].astype(np.int64) // 2
    depth, dirs = depth[hit], dirs[hit]
    points = pose_cw[:3, 3].astype(np.float32) + depth[:, None] * dirs

    # Faces are axis-aligned: the normal is ±e_axis, turned towards the camera.
    axis = (material % 6 // 2)[:, None]
    dir_axis = np.take_along_axis(dirs, axis, 1)[:, 0]
    cos_view = np.abs(dir_axis) / np.linalg.norm(dirs, axis=1)
    normal_sign = -np.sign(dir_axis)
    footprint = depth / f / np.maximum(cos_view, 0.2)
    colour = albedo(scene, points, material, footprint)

    to_light = scene.light.astype(np.float32) - points
    dist = np.linalg.norm(to_light, axis=1)
    lambert = np.maximum(normal_sign * np.take_along_axis(to_light, axis, 1)[:, 0] / dist, 0.0)
    lift = np.zeros_like(points)
    np.put_along_axis(lift, axis, 1e-3 * normal_sign[:, None], 1)
    shadow_rays = np.hstack([points + lift, to_light])
    lit = ~scene.raycaster.test_occlusions(o3d.core.Tensor(shadow_rays), tfar=0.999).numpy()
    shade = 0.35 + 0.9 * lambert * np.where(lit, 1.0, 0.25) / (1.0 + 0.08 * dist**2)
    rgb = np.zeros((width * height, 3), dtype=np.float32)
    rgb[hit] = 255 * colour * shade[:, None]
    rgb += 1.5 * rng.standard_normal(rgb.shape, dtype=np.float32)
    rgb = np.clip(np.round(rgb), 0, 255).astype(np.uint8)

    depth_mm = np.full(width * height, NO_DEPTH, dtype=np.uint16)
    keep = (rng.random(len(hit), dtype=np.float32) >= DROPOUT_RATE) & (cos_view > 0.08)
    depth_mm[hit[keep]] = np.clip(np.round(1000 * depth[keep]), 1, NO_DEPTH - 1).astype(np.uint16)
    return rgb.reshape(height, width, 3), depth_mm.reshape(height, width)


# ---- Writing a scene in the 7-Scenes layout ---------------------------------------------------

MARKER = "synthetic_scene.json"  # settings of the generator; "complete" once every file is written
VERSION = 4  # bump when the renderer changes, so old outputs are not taken for new ones
FRAME_FILES = ("color.png", "depth.png", "pose.txt")


@dataclass(frozen=True)
class SceneSettings:
    """What make_synthetic_scene.py generates; the last test_sequences sequences are for testing."""

    width: int = 640
    height: int = 480
    frames: int = 300
    sequences: int = 3
    test_sequences: int = 1
    seed: int = 0
    loop_frames: int | None = None  # frames per walk around the loop; None: max(frames, 200)
    room: str = DEFAULT_ROOM  # one of ROOMS

    def __post_init__(self):
        if self.loop_frames is None:
            # At most 1.8° of turning per frame; shorter sequences walk part of the loop.
            object.__setattr__(self, "loop_frames", max(self.frames, 200))

    def check(self):
        """Raises InputError (naming the flag) for settings that make no usable scene."""
        if self.width % 8 or self.height % 8:
            raise InputError(f"--size {self.width}x{self.height}: width and height must be "
                             f"multiples of 8")
        if self.frames < 2:
            raise InputError(f"--frames {self.frames}: need at least 2 frames per sequence")
        if not 1 <= self.sequences <= 99:
            raise InputError(f"--sequences {self.sequences}: must be between 1 and 99")
        if not 0 <= self.test_sequences < self.sequences:
            raise InputError(f"--test_sequences {self.test_sequences}: must be at least 0 and "
                             f"fewer than --sequences {self.sequences}")
        if self.loop_frames < 2:
            raise InputError(f"--loop_frames {self.loop_frames}: must be at least 2")
        if self.room not in ROOMS:
            raise InputError(f"--room {self.room}: unknown room; choose one of {', '.join(ROOMS)}")


def _write_bytes(path, data):
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _png(image):
    ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


def _record(settings):
    """The marker's settings; the default room is left out, so that its scenes written before
    there were two rooms stay valid (and byte for byte the same)."""
    record = {"version": VERSION, **asdict(settings)}
    if record["room"] == DEFAULT_ROOM:
        del record["room"]
    return record


def _write_marker(path, settings, complete):
    record = {**_record(settings), "complete": complete}
    _write_bytes(path, json.dumps(record).encode())


def _format_matrix(m):
    return "".join(" ".join(f"{v:.10f}" for v in row) + "\n" for row in m)


def _prepare_folder(out, settings):
    """True if `out` already holds this scene complete; otherwise makes it ready to be written."""
    marker = out / MARKER
    if out.exists() and not out.is_dir():
        raise InputError(f"output folder {out} is a file (--output_folder)")
    if out.is_dir() and any(out.iterdir()):
        if not marker.is_file():
            raise InputError(f"output folder {out} is not empty and holds no scene made by "
                             f"make_synthetic_scene.py; choose another --output_folder")
        try:
            old = json.loads(marker.read_text())
        except (OSError, ValueError):
            raise InputError(f"cannot read {marker}; delete it or choose another "
                             f"--output_folder") from None
        want = _record(settings)
        if {k: v for k, v in old.items() if k != "complete"} == want:
            return bool(old.get("complete"))
        # Other settings: remove what the generator wrote (and nothing else) before writing anew.
        for path in out.glob("seq-[0-9][0-9]/frame-[0-9][0-9][0-9][0-9][0-9][0-9].*"):
            if path.name.split(".", 1)[1] in FRAME_FILES:
                path.unlink()
        for folder in out.glob("seq-[0-9][0-9]"):
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
    out.mkdir(parents=True, exist_ok=True)
    _write_marker(marker, settings, complete=False)
    return False


def sequence_loop(settings, index):
    """The loop sequence `index` (0-based) walks: the room's training loop, or for the studio's
    test sequences its test loops in turn."""
    if settings.room != "studio":
        return TABLE_LOOP
    first_test = settings.sequences - settings.test_sequences
    if index < first_test:
        return STUDIO_LOOP
    return STUDIO_TEST_LOOPS[(index - first_test) % len(STUDIO_TEST_LOOPS)]


def sequence_poses(settings, index):
    """[frames, 4, 4] camera-to-world poses of sequence `index` (0-based) of a scene."""
    rng = np.random.default_rng([settings.seed, 1, index])
    return loop_poses(settings.frames, settings.loop_frames, rng, sequence_loop(settings, index))


def write_scene(out, settings, progress=True):
    """Renders the scene into `out` in the 7-Scenes layout; False if it was already there.

    Frames are deterministic for the settings, so an interrupted run resumes where it stopped.
    """
    settings.check()
    out = Path(out)
    if _prepare_folder(out, settings):
        return False
    scene = make_scene(settings.seed, settings.room)
    w, h = settings.width, settings.height
    bar = tqdm(total=settings.frames * settings.sequences, desc="rendering", unit="frame",
               disable=not progress)
    for s in range(settings.sequences):
        folder = out / f"seq-{s + 1:02d}"
        folder.mkdir(exist_ok=True)
        for k, pose in enumerate(sequence_poses(settings, s)):
            stem = folder / f"frame-{k:06d}"
            if not all(Path(f"{stem}.{name}").is_file() for name in FRAME_FILES):
                noise = np.random.default_rng([settings.seed, 2, s, k])
                rgb, depth = render(scene, pose, w, h, noise)
                _write_bytes(Path(f"{stem}.color.png"), _png(rgb[:, :, ::-1]))
                _write_bytes(Path(f"{stem}.depth.png"), _png(depth))
                _write_bytes(Path(f"{stem}.pose.txt"), _format_matrix(pose).encode())
            bar.update()
    bar.close()
    f, cx, cy = intrinsics_for(w, h)
    _write_bytes(out / "intrinsics.txt", f"{f!r} {f!r} {cx!r} {cy!r}\n".encode())
    n_train = settings.sequences - settings.test_sequences
    names = [f"sequence{s + 1}\n" for s in range(settings.sequences)]
    _write_bytes(out / "TrainSplit.txt", "".join(names[:n_train]).encode())
    _write_bytes(out / "TestSplit.txt", "".join(names[n_train:]).encode())
    _write_marker(out / MARKER, settings, complete=True)
    return True
