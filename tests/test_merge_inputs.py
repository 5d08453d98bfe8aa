"""Merging prepared input folders for scene-independent OFlowNet training."""

import numpy as np

from common.data.labels import read_label
from common.data.lists import sequence_ids
from common.data.scene import load_input_folder
from common.formats import read_list, read_matrix_file
from scripts.merge_inputs import main as merge
from tests.test_oflownet_train import _train


def test_merged_folder_keeps_frames_and_sequences_and_trains_oflownet(tiny_scene, tmp_path, capsys):
    out = tmp_path / "merged"
    assert merge(["--inputs", str(tiny_scene.train), str(tiny_scene.test), "--output_folder",
                  str(out), "--no_progress"]) == 0
    images = read_list(out / "image_list.txt")
    assert images == read_list(tiny_scene.train / "image_list.txt") + \
        read_list(tiny_scene.test / "image_list.txt")
    assert sequence_ids(images).tolist() == [0] * 12 + [1] * 12 + [2] * 12
    t = read_matrix_file(tiny_scene.train / "transform.txt")
    k = 30  # seq-03 frame 6: labels and pose in the normalized frame
    src_label = read_label(read_list(tiny_scene.test / "label_list.txt")[6], (64, 80))
    label = read_label(read_list(out / "label_list.txt")[k], (64, 80))
    valid = src_label[..., 3] == 1
    assert np.array_equal(label[..., 3], src_label[..., 3])
    assert np.allclose(label[valid, :3], src_label[valid, :3] @ t[:3, :3].T + t[:3, 3], atol=1e-5)
    pose = read_matrix_file(read_list(out / "pose_list.txt")[k])
    assert np.allclose(pose, t @ read_matrix_file(read_list(tiny_scene.test / "pose_list.txt")[6]))
    assert np.array_equal(load_input_folder(out).transform, np.eye(4))
    capsys.readouterr()
    assert _train(out, tmp_path / "m", 1, "--snapshot", "1") == 0
    # 3 sequences of 12 frames, pairs up to 3 apart (the demo's max_gap): 3 × (11 + 10 + 9).
    assert "90 pairs k → k+1…3 (each step both directions) of 36 frames" in capsys.readouterr().out
