"""Training augmentation: brightness/contrast, then one geometric change (docs/reference.md §5).

Stage 1 (SCoordNet) draws one of translation crop, rotation + zoom-in, rotation + shrink;
stage 2 (OFlowNet) only rotates, on 80 % of the pairs, as the original's OFlowNet branch did.

Every random draw is stateless, from a seed pair handed in by the pipeline, so a run and a
resumed run see the same augmented stream. The geometric change is a 3×3 matrix mapping
output pixel coordinates to input pixel coordinates (pixel centres at integers); images are
resampled bilinearly, labels by nearest cell, and cells mapped from outside become invalid.
"""

import math

import tensorflow as tf

from common.geometry import CELL, CELL_OFFSET

P_TRANSLATE = 0.10  # then 45 % zoom-in crop, 45 % shrink, both after a rotation
P_ZOOM = 0.45
MAX_ROTATION_DEG = 30.0
MAX_TRANSLATION = 0.10  # of the image side
P_ROTATE_PAIR = 0.80  # stage 2: share of pairs rotated (the same rotation for both frames)
GEOMETRIES = ("full", "rotation")


def _uniform(seed, lo, hi, shape=()):
    return tf.random.stateless_uniform(shape, seed=seed, minval=lo, maxval=hi)


def photometric(image_hw3, seed):
    """Brightness ±20 and contrast ×[0.8, 1.2] about the image mean; stays in [0, 255]."""
    s1, s2 = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    delta = _uniform(s1, -20.0, 20.0)
    factor = _uniform(s2, 0.8, 1.2)
    mean = tf.reduce_mean(image_hw3, axis=[-3, -2], keepdims=True)
    return tf.clip_by_value((image_hw3 + delta - mean) * factor + mean, 0.0, 255.0)


def _about_centre(linear_22, offset_2, centre_2):
    """3×3 matrix of p ↦ c + A (p − c) + o."""
    a = linear_22
    t = centre_2 - tf.linalg.matvec(a, centre_2) + offset_2
    top = tf.concat([a, t[:, None]], axis=1)
    return tf.concat([top, tf.constant([[0.0, 0.0, 1.0]])], axis=0)


def _unrotation(angle):
    """[2, 2] inverse rotation: the output shows the input rotated by +angle (radians)."""
    c, s = tf.cos(angle), tf.sin(angle)
    return tf.stack([tf.stack([c, s]), tf.stack([-s, c])])


def random_rotation(seed, image_hw):
    """[3, 3] output → input pixel map of stage 2: a rotation of U(±30°) about the image centre
    on 80 % of the draws, else the identity. No translation, zoom or shrink."""
    height, width = float(image_hw[0]), float(image_hw[1])
    centre = (tf.constant([width, height]) - 1.0) / 2.0
    s_choice, s_angle = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    angle = _uniform(s_angle, -MAX_ROTATION_DEG, MAX_ROTATION_DEG) * (math.pi / 180.0)
    rotate = _about_centre(_unrotation(angle), tf.zeros(2), centre)
    return tf.cond(_uniform(s_choice, 0.0, 1.0) < P_ROTATE_PAIR, lambda: rotate, lambda: tf.eye(3))


def random_geometry(seed, image_hw):
    """[3, 3] output-pixel → input-pixel map of one random geometric change (docs/reference.md §5.1)."""
    height, width = float(image_hw[0]), float(image_hw[1])
    size = tf.constant([width, height])
    centre = (size - 1.0) / 2.0
    seeds = tf.random.experimental.stateless_split(seed, 6)
    choice = _uniform(seeds[0], 0.0, 1.0)

    angle = _uniform(seeds[1], -MAX_ROTATION_DEG, MAX_ROTATION_DEG) * (math.pi / 180.0)
    unrotate = _unrotation(angle)

    # Translation crop: the view shifts by up to 10 % of each side.
    shift = _uniform(seeds[2], -MAX_TRANSLATION, MAX_TRANSLATION, [2]) * size
    translate = _about_centre(tf.eye(2), shift, centre)

    # Zoom-in crop: box corner in U(0, 0.2)², side in [0.8, 1 − max corner] (fractions of the
    # image), resized to the full image, from the rotated image.
    corner = _uniform(seeds[3], 0.0, 0.2, [2])
    side = _uniform(seeds[4], 0.8, 1.0 - tf.reduce_max(corner))
    crop_offset = corner * size + side * centre - centre  # where the output centre lands
    zoom = _about_centre(unrotate * side, tf.linalg.matvec(unrotate, crop_offset), centre)

    # Shrink: the rotated image scaled by U(0.8, 1.0) about the centre, zero padding around.
    scale = _uniform(seeds[5], 0.8, 1.0)
    shrink = _about_centre(unrotate / scale, tf.zeros(2), centre)

    return tf.case([(choice < P_TRANSLATE, lambda: translate),
                    (choice < P_TRANSLATE + P_ZOOM, lambda: zoom)], default=lambda: shrink)


def warp_images(images_nhw3, matrix_33):
    """Resamples [N, H, W, C] images bilinearly through an output → input pixel map; zeros outside."""
    m = tf.reshape(matrix_33 / matrix_33[2, 2], [9])[:8]
    n = tf.shape(images_nhw3)[0]
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images_nhw3, transforms=tf.tile(m[None], [n, 1]),
        output_shape=tf.shape(images_nhw3)[1:3], fill_value=0.0,
        interpolation="BILINEAR", fill_mode="CONSTANT")


def warp_labels(coords_nhw3, mask_nhw1, matrix_33, image_hw):
    """Resamples [N, h, w, ·] labels through the same pixel map as the image.

    Output cell (i, j) looks up the mapped image point of its pixel (8j, 8i) (common.geometry.
    cell_pixels) in the label map, whose cells stand for the same pixels. Where the four
    surrounding cells are valid and form a continuous surface, the coordinates are interpolated bilinearly, so labels
    follow the image to a fraction of a cell as the original's full-resolution labels did;
    across depth discontinuities and next to invalid cells the nearest cell is taken instead.
    Points outside the image, or on invalid cells, become invalid.
    """
    h, w = image_hw[0] // CELL, image_hw[1] // CELL
    n = tf.shape(coords_nhw3)[0]
    jj, ii = tf.meshgrid(tf.range(w, dtype=tf.float32), tf.range(h, dtype=tf.float32))
    pixels = tf.stack([CELL * jj + CELL_OFFSET, CELL * ii + CELL_OFFSET, tf.ones_like(jj)], -1)
    src = tf.linalg.matvec(matrix_33, pixels)
    src_x, src_y = src[..., 0] / src[..., 2], src[..., 1] / src[..., 2]
    # Only points whose bilinear neighbours all lie in the image: nearer the border the
    # image is blended with the zero fill.
    inside = ((src_x >= 0) & (src_x <= image_hw[1] - 1) & (src_y >= 0) & (src_y <= image_hw[0] - 1))
    flat_coords = tf.reshape(coords_nhw3, [n, h * w, 3])
    flat_mask = tf.reshape(mask_nhw1, [n, h * w, 1])

    def cells(row, col):
        index = tf.clip_by_value(row, 0, h - 1) * w + tf.clip_by_value(col, 0, w - 1)
        return tf.gather(flat_coords, index, axis=1), tf.gather(flat_mask, index, axis=1)

    # The point in map positions (cell j at column j); nearest cell = nearest cell pixel.
    u, v = (src_x - CELL_OFFSET) / CELL, (src_y - CELL_OFFSET) / CELL
    near_coords, near_mask = cells(tf.cast(tf.round(v), tf.int32), tf.cast(tf.round(u), tf.int32))
    # Bilinear between the four cells around the point.
    u0, v0 = tf.floor(u), tf.floor(v)
    fu, fv = (u - u0)[None, :, :, None], (v - v0)[None, :, :, None]
    c0, r0 = tf.cast(u0, tf.int32), tf.cast(v0, tf.int32)
    (x00, m00), (x01, m01) = cells(r0, c0), cells(r0, c0 + 1)
    (x10, m10), (x11, m11) = cells(r0 + 1, c0), cells(r0 + 1, c0 + 1)
    on_map = (u0 >= 0) & (v0 >= 0) & (u0 + 1 <= w - 1) & (v0 + 1 <= h - 1)
    valid4 = (m00 * m01 * m10 * m11 > 0) & on_map[None, :, :, None]
    # A continuous surface: no side of the quad much longer than its shortest one.
    sides = tf.stack([tf.norm(a - b, axis=-1) for a, b in
                      ((x00, x01), (x10, x11), (x00, x10), (x01, x11))], -1)
    smooth = (tf.reduce_max(sides, -1) <= 3.0 * tf.reduce_min(sides, -1) + 1e-3)[..., None]
    blend = (x00 * (1 - fu) * (1 - fv) + x01 * fu * (1 - fv)
             + x10 * (1 - fu) * fv + x11 * fu * fv)
    coords = tf.where(valid4 & smooth, blend, near_coords)
    mask = near_mask * tf.cast(inside, near_mask.dtype)[None, :, :, None]
    return coords * mask, mask


def augment_frames(images_nhw3, coords_nhw3, mask_nhw1, seed, image_hw, geometry="full"):
    """The same photometric and geometric change for N frames (N = 1, or a training pair).

    geometry: "full" (stage 1: random_geometry) or "rotation" (stage 2: random_rotation).
    """
    if geometry not in GEOMETRIES:
        raise ValueError(f"geometry must be one of {GEOMETRIES}, got {geometry!r}")
    s_photo, s_geo = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    images = photometric(images_nhw3, s_photo)
    make = random_geometry if geometry == "full" else random_rotation
    matrix = make(s_geo, image_hw)
    coords, mask = warp_labels(coords_nhw3, mask_nhw1, matrix, image_hw)
    return warp_images(images, matrix), coords, mask
