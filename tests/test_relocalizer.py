"""kfnet.Relocalizer: the streaming API gives what kfnet/test.py + pnp/solve.py give."""

import cv2
import numpy as np
import pytest
import tensorflow as tf

from common.checkpoints import write_model_info
from common.config import intrinsics, load_config, stage_config
from common.data.scene import load_input_folder
from common.formats import read_pose_file
from kfnet import Relocalizer
from kfnet import test as kfnet_test
from oflownet.model import OFlowNet
from pnp import solve
from scoordnet.model import SCoordNet
from tests.test_scoordnet import cli, random_tf1_arrays, write_tf1_checkpoint


def _random_kfnet(folder, hw):
    """A KFNet model folder of this project with freshly initialised tiny networks."""
    cfg = load_config("tiny")
    w1, w2 = stage_config(cfg, "scoordnet")["width"], stage_config(cfg, "oflownet")["width"]
    tf.keras.utils.set_random_seed(3)
    scoord, oflow = SCoordNet(width=w1).build_for(hw), OFlowNet(width=w2)
    tf.train.Checkpoint(scoordnet=scoord, oflownet=oflow).write(str(folder / "ckpt-1"))
    (folder / "checkpoint").write_text('model_checkpoint_path: "ckpt-1"\n')
    write_model_info(folder, "kfnet", {"scoordnet": w1, "oflownet": w2})


def _images(data):
    return [cv2.imread(p)[..., ::-1].copy() for p in data.image_paths]


def _cli_then_pnp(input_folder, model, out, *extra):
    assert cli(kfnet_test.main, ["--input_folder", str(input_folder), "--output_folder", str(out / "maps"),
                                 "--model_folder", str(model), "--scene", "tiny", "--no_progress",
                                 "--quiet", *extra]) == 0
    assert cli(solve.main, [str(out / "maps"), str(out / "poses.txt"), "--scene", "tiny",
                            "--thread_num", "1", "--no_progress"]) == 0
    return {r.index: r for r in read_pose_file(out / "poses.txt")}


def _compare(reloc, data, out, poses):
    results = []
    for k, image in enumerate(_images(data)):
        res = reloc.step(image, new_sequence=bool(data.sequence_starts[k]))
        written = np.load(out / "maps" / f"coord_{k}.npy")
        np.testing.assert_allclose(res.coord_output(), written, rtol=1e-5, atol=1e-5)
        if poses[k].pose_cw is None:
            assert res.pose is None and res.failure == poses[k].failure
        else:
            assert res.failure is None
            np.testing.assert_allclose(res.pose, poses[k].pose_cw, atol=1e-6)
        results.append(res)
    return results


def test_relocalizer_matches_the_test_cli_and_pnp_and_resets_at_sequence_starts(tiny_scene, tmp_path):
    data = load_input_folder(tiny_scene.train)  # two sequences: frames 0-11 and 12-23
    _random_kfnet(tmp_path / "m", data.image_hw)
    poses = _cli_then_pnp(tiny_scene.train, tmp_path / "m", tmp_path / "cli", "--save_measurement")
    reloc = Relocalizer.load(tmp_path / "m", scene="tiny", transform=tiny_scene.train / "transform.txt")
    np.testing.assert_allclose(reloc.K, intrinsics(load_config("tiny")))
    results = _compare(reloc, data, tmp_path / "cli", poses)
    for k, res in enumerate(results):
        meas = np.load(tmp_path / "cli" / "maps" / "measurement" / f"coord_{k}.npy")
        np.testing.assert_allclose(res.measurement, meas[..., :3], rtol=1e-5, atol=1e-5)
        assert res.new_sequence == (k in (0, 12)) and res.index == k and res.time_ms > 0
        if k in (0, 12):  # the filter restarts from the measurement: x0 = z0, P0 = R0
            assert res.prior is None
            np.testing.assert_array_equal(res.coords, res.measurement)
            np.testing.assert_array_equal(res.sigma, res.measurement_sigma)
        else:
            assert res.prior is not None and not np.array_equal(res.coords, res.measurement)
    # reset() alone (no flag) restarts too; without it, frame 12 would be filtered.
    reloc.reset()
    again = reloc.step(_images(data)[12])
    assert again.new_sequence and again.prior is None
    np.testing.assert_allclose(again.coords, results[12].coords, rtol=1e-5, atol=1e-5)
    follow = reloc.step(_images(data)[13])
    np.testing.assert_allclose(follow.coords, results[13].coords, rtol=1e-5, atol=1e-5)
    assert len(reloc._passes) == 1  # one traced network pass for the one image size


def test_relocalizer_from_an_original_tf1_checkpoint_with_nis(tiny_scene, tmp_path):
    shapes = {k: tuple(v.shape) for k, v in SCoordNet(1.0).build_for((32, 32)).tf1_variables().items()}
    shapes.update({k: tuple(v.shape) for k, v in OFlowNet(1.0).tf1_variables().items()})
    write_tf1_checkpoint(tmp_path / "orig", random_tf1_arrays(shapes, scale=0.02), step=500)
    data = load_input_folder(tiny_scene.test)
    poses = _cli_then_pnp(tiny_scene.test, tmp_path / "orig", tmp_path / "cli", "--nis")
    reloc = Relocalizer.load(tmp_path / "orig", scene="tiny", nis=True,
                             transform=tiny_scene.test / "transform.txt")
    assert reloc.checkpoint.endswith("model.ckpt-500")
    _compare(reloc, data, tmp_path / "cli", poses)


def test_relocalizer_bad_input(tiny_scene, tmp_path):
    _random_kfnet(tmp_path / "m", (64, 80))
    reloc = Relocalizer.load(tmp_path / "m", scene="tiny")
    with pytest.raises(ValueError, match="multiple of 8"):
        reloc.step(np.zeros((60, 80, 3), np.uint8))
    with pytest.raises(ValueError, match=r"\[H, W, 3\]"):
        reloc.step(np.zeros((64, 80), np.uint8))


class _LabelMeasurement:
    """Stands in for SCoordNet: frame n's labels (normalized frame) with σ = 1 mm, σ = 10 m where
    a cell has no label, so the pose path can be checked against the ground truth."""

    def __init__(self, coords, masks):
        self.coords = tf.constant(coords, tf.float32)
        self.sigma = tf.constant(np.where(masks > 0.5, 1e-3, 10.0), tf.float32)
        self.n = tf.Variable(0)  # a graph-side counter: the network pass is traced once

    def __call__(self, images, training=False):
        n = self.n.assign_add(1) - 1
        return tf.gather(self.coords, n)[None], tf.gather(self.sigma, n)[None]


def test_relocalizer_poses_from_exact_measurements_match_the_ground_truth(tiny_scene, tmp_path):
    from common.data.pipelines import test_dataset
    from common.poses import pose_errors
    from kfnet.model import KFNet

    data = load_input_folder(tiny_scene.test)
    batches = list(test_dataset(data, len(data)))
    coords, masks = batches[0]["coords"].numpy(), batches[0]["mask"].numpy()
    tf.keras.utils.set_random_seed(0)
    model = KFNet(_LabelMeasurement(coords, masks), OFlowNet(width=0.25))
    reloc = Relocalizer(model, intrinsics(load_config("tiny")), tiny_scene.test / "transform.txt")
    gt = data.read_poses()
    errors = []
    for k, image in enumerate(_images(data)):
        res = reloc.step(image)
        assert res.failure is None and res.inliers >= 0.5 * masks[k].sum()
        out = res.coord_output()
        pose, _, _ = solve.solve_frame(out[..., :3], out[..., 3], reloc.K, seed=(0, k))
        np.testing.assert_array_equal(res.pose, pose)  # exactly pnp's solver on the same map
        errors.append(pose_errors(res.pose, gt[k]))
    t_err, r_err = np.array(errors).T
    assert np.median(t_err) < 0.01 and np.median(r_err) < 0.5, (t_err, r_err)
