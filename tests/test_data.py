"""The shared data module: label layouts, input-folder checks, transform, pipelines, augmentation."""

import numpy as np
import pytest
import tensorflow as tf

from common.data import pipelines
from common.data.augment import augment_frames, random_geometry, warp_images, warp_labels
from common.data.labels import label_layout, read_label, write_label
from common.data.lists import sequence_ids
from common.data.scene import load_input_folder
from common.errors import InputError
from common.formats import read_list
from tests.helpers import make_input_folder, rotation_z


@pytest.fixture()
def label_hw4():
    rng = np.random.default_rng(1)
    lab = rng.normal(size=(6, 10, 4)).astype(np.float32)
    lab[..., 3] = rng.integers(0, 2, size=(6, 10))
    return lab


def test_label_round_trip_map_resolution_raw(tmp_path, label_hw4):
    path = tmp_path / "a.bin"
    write_label(path, label_hw4)
    assert path.stat().st_size == 6 * 10 * 16
    assert label_layout(path, (48, 80)).stride == 1
    np.testing.assert_array_equal(read_label(path, (48, 80)), label_hw4)


def test_label_round_trip_npy(tmp_path, label_hw4):
    path = tmp_path / "a.npy"
    write_label(path, label_hw4)
    np.testing.assert_array_equal(np.load(path), label_hw4)
    np.testing.assert_array_equal(read_label(path, (48, 80)), label_hw4)


def test_label_full_resolution_reads_cell_pixels(tmp_path):
    full = np.zeros((48, 80, 4), np.float32)
    yy, xx = np.mgrid[0:48, 0:80]
    full[..., 0], full[..., 1], full[..., 3] = xx, yy, 1
    for name in ("full.bin", "full.npy"):
        write_label(tmp_path / name, full)
        lab = read_label(tmp_path / name, (48, 80))
        assert lab.shape == (6, 10, 4)
        # Cell (i, j) is pixel (8j, 8i), as the original's resize_nearest_neighbor picks it.
        assert lab[2, 3, 0] == 24 and lab[2, 3, 1] == 16
        np.testing.assert_array_equal(lab[..., 0], xx[::8, ::8])
        np.testing.assert_array_equal(lab[..., 1], yy[::8, ::8])


def test_label_wrong_size_names_file(tmp_path):
    path = tmp_path / "bad.bin"
    np.zeros(17, np.float32).tofile(path)
    with pytest.raises(InputError, match="bad.bin has 68 bytes"):
        label_layout(path, (48, 80))
    npy = tmp_path / "bad.npy"
    np.save(npy, np.zeros((5, 10, 4), np.float32))
    with pytest.raises(InputError, match=r"bad.npy has shape \(5, 10, 4\)"):
        label_layout(npy, (48, 80))
    np.save(npy, np.zeros((6, 10, 4), np.float64))
    with pytest.raises(InputError, match="float32"):
        label_layout(npy, (48, 80))


def test_read_list_resolves_relative_paths(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "list.txt").write_text("a.png\n\n/abs/b.png\n")
    assert read_list(tmp_path / "sub" / "list.txt") == [str(tmp_path / "sub" / "a.png"), "/abs/b.png"]


def test_sequence_ids_from_folders_and_length():
    paths = ["/d/seq-01/a", "/d/seq-01/b", "/d/seq-02/a", "/d/seq-02/b", "/d/seq-01/c"]
    np.testing.assert_array_equal(sequence_ids(paths), [0, 0, 1, 1, 2])
    np.testing.assert_array_equal(sequence_ids(paths, 2), [0, 0, 1, 1, 2])


def test_input_folder_reads_everything(tmp_path):
    t = np.eye(4)
    t[:3, :3] = rotation_z(30)
    t[:3, 3] = [1, 2, 3]
    folder = make_input_folder(tmp_path, frames=(5, 7), transform=t, with_poses=True)
    data = load_input_folder(folder)
    assert len(data) == 12 and data.image_hw == (64, 80) and data.map_hw == (8, 10)
    np.testing.assert_array_equal(data.sequence_ids, [0] * 5 + [1] * 7)
    np.testing.assert_allclose(data.transform, t, atol=1e-12)
    assert data.read_poses().shape == (12, 4, 4)
    assert data.sequence_starts.tolist() == [True] + [False] * 4 + [True] + [False] * 6


def test_missing_transform_is_identity_with_warning(tmp_path, capsys):
    data = load_input_folder(make_input_folder(tmp_path, frames=(2,)))
    np.testing.assert_array_equal(data.transform, np.eye(4))
    assert "no transform.txt" in capsys.readouterr().err


@pytest.mark.parametrize("problem, message", [
    ("lengths", "label_list.txt has 3 entries, .*image_list.txt has 4"),
    ("missing_image", "image_list.txt line 2: image not found: .*frame-000001.color.png"),
    ("unreadable_image", "image_list.txt line 3: cannot read image"),
    ("label_size", "label_list.txt line 1: .*has 64 bytes"),
    ("non_rigid", "transform.txt is not rigid"),
    ("singular", "transform.txt is singular"),
    ("size_not_multiple", "image_list.txt line 1: .* is 84x64, not a multiple of 8"),
    ("mixed_sizes", "image_list.txt line 2: .* the first image is 80x64"),
    ("empty", "image_list.txt is empty"),
])
def test_bad_input_folders(tmp_path, problem, message):
    import cv2

    folder = make_input_folder(tmp_path, frames=(4,))
    images = (folder / "image_list.txt").read_text().split()
    labels = (folder / "label_list.txt").read_text().split()
    if problem == "lengths":
        (folder / "label_list.txt").write_text("\n".join(labels[:3]))
    elif problem == "missing_image":
        (folder / images[1]).unlink()
    elif problem == "unreadable_image":
        (folder / images[2]).write_bytes(b"not a png")
    elif problem == "label_size":
        np.zeros(16, np.float32).tofile(folder / labels[0])
    elif problem == "non_rigid":
        np.savetxt(folder / "transform.txt", np.diag([2.0, 1, 1, 1]))
    elif problem == "singular":
        np.savetxt(folder / "transform.txt", np.diag([0.0, 1, 1, 1]))
    elif problem == "size_not_multiple":
        cv2.imwrite(images[0], np.zeros((64, 84, 3), np.uint8))
    elif problem == "mixed_sizes":
        cv2.imwrite(images[1], np.zeros((72, 80, 3), np.uint8))
    elif problem == "empty":
        (folder / "image_list.txt").write_text("\n")
    with pytest.raises(InputError, match=message):
        load_input_folder(folder)


def test_labels_come_out_in_normalized_frame(tmp_path):
    t = np.eye(4)
    t[:3, :3] = rotation_z(90)
    t[:3, 3] = [10, 0, 0]
    data = load_input_folder(make_input_folder(tmp_path, frames=(3,), transform=t))
    batch = next(iter(pipelines.test_dataset(data, batch_size=3)))
    coords, mask = batch["coords"].numpy(), batch["mask"].numpy()
    assert coords.shape == (3, 8, 10, 3) and mask.shape == (3, 8, 10, 1)
    # Frame k=2 of sequence 1, cell (4, 5): world (2, 1, 5) → rotate 90° about z → (−1, 2, 5) + (10, 0, 0).
    np.testing.assert_allclose(coords[2, 4, 5], [9, 2, 5], atol=1e-5)
    assert mask[2, 0, 0, 0] == 0 and np.all(coords[2, 0, 0] == 0) and mask[2, 4, 5, 0] == 1


def test_pipelines_shapes_and_pairs(tmp_path):
    data = load_input_folder(make_input_folder(tmp_path, frames=(3, 5)))
    b = next(iter(pipelines.frame_dataset(data, batch_size=4)))
    assert b["image"].shape == (4, 64, 80, 3) and b["coords"].shape == (4, 8, 10, 3)
    pairs = pipelines.frame_pairs(data)
    # 2 + 4 forward pairs within sequences (the stage trains each both ways); none across the boundary.
    assert pairs.tolist() == [[0, 1], [1, 2], [3, 4], [4, 5], [5, 6], [6, 7]]
    # Gaps up to 3: by gap, then in time; sequence 0 has 3 frames, so no (k, k + 3) pair there.
    assert pipelines.frame_pairs(data, 3).tolist() == pairs.tolist() + [[0, 2], [3, 5], [4, 6], [5, 7],
                                                                        [3, 6], [4, 7]]
    drawn = np.concatenate([b["indices"].numpy() for b in pipelines.pair_dataset(
        data, batch_size=2, augment=False, max_gap=3).take(30)])
    assert {tuple(p) for p in drawn.tolist()} == {tuple(p) for p in pipelines.frame_pairs(data, 3).tolist()}
    # Without augmentation a pair's labels are its frames' labels: x = frame number in sequence.
    b = next(iter(pipelines.pair_dataset(data, batch_size=1, augment=False, max_gap=3)))
    k, k2 = b["indices"].numpy()[0]
    assert b["coords_prev"].numpy()[0, 3, 3, 0] == k - 3 * (k >= 3)
    assert b["coords_cur"].numpy()[0, 3, 3, 0] == k2 - 3 * (k2 >= 3)
    b = next(iter(pipelines.pair_dataset(data, batch_size=2)))
    assert b["image_prev"].shape == (2, 64, 80, 3) and b["mask_cur"].shape == (2, 8, 10, 1)
    wins = pipelines.windows(data, 4)
    # In temporal order, each window followed by its reverse, as the original took them.
    assert wins.tolist() == [[3, 4, 5, 6], [6, 5, 4, 3], [4, 5, 6, 7], [7, 6, 5, 4]]
    b = next(iter(pipelines.window_dataset(data, 4)))
    assert b["images"].shape == (1, 4, 64, 80, 3) and b["coords"].shape == (1, 4, 8, 10, 3)
    # Without augmentation a window's labels are its frames' labels: x = frame number in sequence.
    ks = b["indices"].numpy()[0]
    np.testing.assert_array_equal(b["coords"].numpy()[0, :, 3, 3, 0], ks - 3)
    test = list(pipelines.test_dataset(data, batch_size=3))
    assert [t["index"].numpy().tolist() for t in test] == [[0, 1, 2], [3, 4, 5], [6, 7]]
    assert np.concatenate([t["new_sequence"].numpy() for t in test]).tolist() == \
        [True, False, False, True, False, False, False, False]


def test_training_stream_resumes_exactly(tmp_path):
    data = load_input_folder(make_input_folder(tmp_path, frames=(4, 4)))
    full = [b for b in pipelines.frame_dataset(data, batch_size=3, seed=7).take(6)]
    resumed = [b for b in pipelines.frame_dataset(data, batch_size=3, seed=7, start_step=4).take(2)]
    for a, b in zip(full[4:], resumed):
        np.testing.assert_array_equal(a["index"], b["index"])
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["mask"], b["mask"])
    # Each epoch is a permutation of all frames.
    order = np.concatenate([b["index"].numpy() for b in full])[:8]
    assert sorted(order.tolist()) == list(range(8))
    other = np.concatenate([b["index"].numpy() for b in pipelines.frame_dataset(data, 3, seed=8).take(3)])
    assert not np.array_equal(other, np.concatenate([b["index"].numpy() for b in full[:3]]))


def test_augmented_labels_follow_the_image():
    """Image colours encode pixel positions, labels encode each cell's pixel (8j, 8i): after any
    random change, a valid cell's label must name (nearly) the pixel its own pixel now shows."""
    height, width = 96, 128
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.stack([xx, yy, np.zeros_like(xx)], -1)[None]
    h, w = height // 8, width // 8
    jj, ii = np.meshgrid(np.arange(w), np.arange(h))
    coords = np.stack([8 * jj, 8 * ii, np.zeros_like(jj)], -1).astype(np.float32)[None]
    mask = np.ones((1, h, w, 1), np.float32)
    for seed in range(40):
        matrix = random_geometry(tf.constant([seed, 3], tf.int64), (height, width))
        out_img = warp_images(tf.constant(image), matrix).numpy()[0]
        out_coords, out_mask = (t.numpy()[0] for t in warp_labels(coords, mask, matrix, (height, width)))
        valid = out_mask[..., 0] > 0
        assert valid.sum() > 0.3 * h * w
        shown = out_img[::8, ::8, :2][valid]  # what the image shows at each valid cell's pixel
        err = np.abs(shown - out_coords[valid][:, :2])
        # Labels are interpolated on this (planar) label map: off by a fraction of a pixel,
        # except next to the map border, where the nearest cell (within half a cell) is taken.
        assert np.median(err) < 0.05
        assert err.max() <= 4.0 * 1.5 + 1.0
        assert np.all(out_coords[~valid] == 0)


def test_augmentation_photometric_range_and_pair_consistency():
    rng = np.random.default_rng(0)
    images = tf.constant(rng.uniform(0, 255, (2, 32, 48, 3)).astype(np.float32))
    images = tf.concat([images[:1], images[:1]], 0)  # identical pair
    coords = tf.zeros([2, 4, 6, 3])
    mask = tf.ones([2, 4, 6, 1])
    out, _, out_mask = augment_frames(images, coords, mask, tf.constant([1, 2], tf.int64), (32, 48))
    out = out.numpy()
    assert out.min() >= 0 and out.max() <= 255
    np.testing.assert_array_equal(out[0], out[1])  # the same change for both frames of a pair
    np.testing.assert_array_equal(out_mask[0], out_mask[1])


def test_augmented_labels_do_not_blend_across_depth_edges():
    height, width = 96, 128
    h, w = height // 8, width // 8
    jj, ii = np.meshgrid(np.arange(w), np.arange(h))
    z = np.where(jj < w // 2, 1.0, 5.0)  # two walls, 4 m apart, meeting at column 8
    coords = np.stack([0.05 * jj, 0.05 * ii, z], -1).astype(np.float32)[None]
    mask = np.ones((1, h, w, 1), np.float32)
    for seed in range(20):
        matrix = random_geometry(tf.constant([seed, 5], tf.int64), (height, width))
        out, out_mask = (t.numpy()[0] for t in warp_labels(coords, mask, matrix, (height, width)))
        zs = out[..., 2][out_mask[..., 0] > 0]
        assert np.all((np.abs(zs - 1) < 1e-5) | (np.abs(zs - 5) < 1e-5)), np.unique(zs)
