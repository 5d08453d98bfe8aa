"""tf.data pipelines of the three stages and of testing, one function each (docs/reference.md §2, §5).

Every element carries images as float32 RGB in [0, 255] ([H, W, 3]) and labels at map size in
the normalized frame (`T·X`): `coords` [h, w, 3] and `mask` [h, w, 1] (1 = valid). Training
streams are infinite, deterministic for a seed, and can start at any step: the element order
and every augmentation draw depend only on (seed, element number), so a resumed run sees
exactly the stream an uninterrupted one would have seen.
"""

import numpy as np
import tensorflow as tf

from common.data.augment import augment_frames
from common.data.scene import layout_arrays
from common.errors import InputError
from common.geometry import CELL, CELL_OFFSET, transform_coords

AUTOTUNE = tf.data.AUTOTUNE
_FOREVER = 2**62


class _FrameReader:
    """Graph-mode readers of one input folder's images and labels, by frame index."""

    def __init__(self, data):
        self.data = data
        self.image_hw = data.image_hw
        self.map_hw = data.map_hw
        self.images = tf.constant(data.image_paths)
        if data.has_labels:
            self.labels = tf.constant(data.label_paths)
            self.layouts = tf.constant(layout_arrays(data.label_layouts))
        self.transform = tf.constant(data.transform, tf.float32)

    def image(self, k):
        """[H, W, 3] float32 in [0, 255]."""
        raw = tf.io.read_file(self.images[k])
        image = tf.io.decode_image(raw, channels=3, expand_animations=False)
        image = tf.ensure_shape(image, [*self.image_hw, 3])
        return tf.cast(image, tf.float32)

    def label(self, k):
        """(coords [h, w, 3] in the normalized frame, mask [h, w, 1]); invalid cells are zero."""
        layout = self.layouts[k]
        offset, rows, cols, stride = layout[0], layout[1], layout[2], layout[3]
        raw = tf.strings.substr(tf.io.read_file(self.labels[k]), tf.cast(offset, tf.int32),
                                tf.cast(rows * cols * 16, tf.int32))
        grid = tf.reshape(tf.io.decode_raw(raw, tf.float32, little_endian=True), [rows, cols, 4])
        first = (stride // CELL) * CELL_OFFSET  # stride is 1 (map size) or CELL (full resolution)
        grid = grid[first::stride, first::stride]
        grid = tf.ensure_shape(grid, [*self.map_hw, 4])
        xyz = grid[..., :3]
        valid = (grid[..., 3:] > 0.5) & tf.reduce_all(tf.math.is_finite(xyz), -1, keepdims=True)
        mask = tf.cast(valid, tf.float32)
        coords = tf.where(valid, transform_coords(self.transform, xyz), 0.0)
        return coords, mask

    def frames(self, ks):
        """Stacked (images [N,H,W,3], coords [N,h,w,3], mask [N,h,w,1]) of a static-size index list."""
        parts = [(self.image(ks[i]), *self.label(ks[i])) for i in range(ks.shape[0])]
        return tuple(tf.stack(p) for p in zip(*parts))


def _element_stream(num_items, seed, start, shuffle=True):
    """(element number, item index) from element `start` on: epoch after epoch, each a permutation."""
    if num_items == 0:
        raise InputError("nothing to train on: the input folder has no usable training items")
    epoch0, offset = divmod(int(start), num_items)

    def epoch_items(epoch):
        order = tf.range(num_items, dtype=tf.int64)
        if shuffle:
            order = tf.random.experimental.stateless_shuffle(order, seed=tf.stack([seed, epoch]))
        return tf.data.Dataset.from_tensor_slices(order)

    items = tf.data.Dataset.range(epoch0, _FOREVER).flat_map(epoch_items).skip(offset)
    return tf.data.Dataset.zip((tf.data.Dataset.range(start, _FOREVER), items))


def _finish(ds, batch_size):
    return ds.batch(batch_size, drop_remainder=True).prefetch(AUTOTUNE)


def _seed_pair(seed, element):
    return tf.stack([tf.constant(seed, tf.int64), element])


def frame_dataset(data, batch_size=4, augment=True, seed=0, start_step=0, shuffle=True):
    """SCoordNet: batches of single frames, each augmented on its own (docs/reference.md §5.1).

    Elements: image [B,H,W,3], coords [B,h,w,3], mask [B,h,w,1], index [B].
    """
    reader = _FrameReader(data)
    stream = _element_stream(len(data), seed, start_step * batch_size, shuffle)

    def load(element, k):
        images, coords, mask = reader.frames(tf.reshape(k, [1]))
        if augment:
            images, coords, mask = augment_frames(images, coords, mask, _seed_pair(seed, element),
                                                  data.image_hw)
        return {"image": images[0], "coords": coords[0], "mask": mask[0], "index": k}

    return _finish(stream.map(load, num_parallel_calls=AUTOTUNE), batch_size)


def frame_pairs(data, max_gap=1):
    """[P, 2] (k, k + s) frame indices, s = 1 … max_gap: every such pair within a sequence, by gap
    and then in temporal order (max_gap 1: the consecutive pairs)."""
    out = []
    for gap in range(1, int(max_gap) + 1):
        k = np.arange(max(len(data) - gap, 0))
        same = data.sequence_ids[gap:] == data.sequence_ids[:len(data) - gap]
        out.append(np.stack([k[same], k[same] + gap], axis=1).reshape(-1, 2))
    return np.concatenate(out, axis=0)


def pair_dataset(data, batch_size=1, augment=True, seed=0, start_step=0, shuffle=True, max_gap=1):
    """OFlowNet: pairs (k, k + s), s = 1 … max_gap, one photometric change and one rotation per pair.

    The stage trains each pair in both directions (oflownet/stage.py). Augmentation is the
    original's OFlowNet branch: brightness/contrast, then a rotation on 80 % of the pairs.
    Elements: image_prev, image_cur [B,H,W,3]; coords_prev, coords_cur [B,h,w,3];
    mask_prev, mask_cur [B,h,w,1]; indices [B,2] (k, k + s).
    """
    reader = _FrameReader(data)
    pairs = tf.constant(frame_pairs(data, max_gap), tf.int64)
    stream = _element_stream(int(pairs.shape[0]), seed, start_step * batch_size, shuffle)

    def load(element, item):
        ks = tf.ensure_shape(pairs[item], [2])
        images, coords, mask = reader.frames(ks)
        if augment:
            images, coords, mask = augment_frames(images, coords, mask, _seed_pair(seed, element),
                                                  data.image_hw, geometry="rotation")
        return {"image_prev": images[0], "image_cur": images[1], "coords_prev": coords[0],
                "coords_cur": coords[1], "mask_prev": mask[0], "mask_cur": mask[1], "indices": ks}

    return _finish(stream.map(load, num_parallel_calls=AUTOTUNE), batch_size)


def windows(data, length=4):
    """[M, length] frame indices: every run of `length` consecutive frames of one sequence, in
    temporal order, each followed by its reverse."""
    n = len(data)
    starts = [k for k in range(n - length + 1)
              if data.sequence_ids[k] == data.sequence_ids[k + length - 1]]
    forward = np.array([np.arange(s, s + length) for s in starts], dtype=np.int64).reshape(-1, length)
    return np.stack([forward, forward[:, ::-1]], axis=1).reshape(-1, length)


def window_dataset(data, length=4, batch_size=1, augment=False, seed=0, start_step=0, shuffle=False):
    """KFNet: windows of `length` consecutive frames, forward and reversed (docs/reference.md §5).

    Without `shuffle` the windows come in temporal order, each followed by its reverse, epoch
    after epoch, as the original took them (its --shuffle was off by default).

    Elements: images [B,T,H,W,3], coords [B,T,h,w,3], mask [B,T,h,w,1], indices [B,T].
    """
    reader = _FrameReader(data)
    table = tf.constant(windows(data, length), tf.int64)
    stream = _element_stream(int(table.shape[0]), seed, start_step * batch_size, shuffle)

    def load(element, item):
        ks = tf.ensure_shape(table[item], [length])
        images, coords, mask = reader.frames(ks)
        if augment:
            images, coords, mask = augment_frames(images, coords, mask, _seed_pair(seed, element),
                                                  data.image_hw)
        return {"images": images, "coords": coords, "mask": mask, "indices": ks}

    return _finish(stream.map(load, num_parallel_calls=AUTOTUNE), batch_size)


def test_dataset(data, batch_size=1, start=0, stop=None):
    """Frames in list order from `start` on (up to `stop`), with a "new sequence" flag; labels
    when present.

    Elements: index [B], image [B,H,W,3], new_sequence [B] bool; coords, mask if labelled.
    The last batch may be smaller.
    """
    reader = _FrameReader(data)
    starts = tf.constant(data.sequence_starts)

    def load(k):
        out = {"index": k, "image": reader.image(k), "new_sequence": starts[k]}
        if data.has_labels:
            out["coords"], out["mask"] = reader.label(k)
        return out

    end = len(data) if stop is None else min(stop, len(data))
    ds = tf.data.Dataset.range(start, end).map(load, num_parallel_calls=AUTOTUNE)
    return ds.batch(batch_size).prefetch(2).with_options(_fixed_threads())


def _fixed_threads():
    """tf.data options without the autotuner. Measured on a quiet 2-core CPU: with it, about one run
    in four of a test CLI ran its network on one core for the whole run (46 against 90 frames/s at
    160×120, the same CPU time per frame); without it, none of 21 (docs/results.md, "Speed of the
    test CLIs"). AUTOTUNE parallelism then means one call per core."""
    options = tf.data.Options()
    options.autotune.enabled = False
    return options
