"""common.poses: pose errors, quaternions, rigid transforms, pose files and TUM trajectories."""

import math

import numpy as np
import pytest

from common.errors import InputError
from common.formats import (
    PoseRecord,
    format_pose_line,
    read_matrix_file,
    read_pose_file,
    read_tum,
    write_pose_file,
    write_tum,
)
from common.poses import (
    check_rigid,
    invert_rigid,
    lag_along_motion,
    pose_errors,
    quaternion_to_rotation,
    rotation_to_quaternion,
    summarize_errors,
)


def rot_x(deg):
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def rot_y(deg):
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def rot_z(deg):
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def pose(rot=None, t=(0, 0, 0)):
    out = np.eye(4)
    if rot is not None:
        out[:3, :3] = rot
    out[:3, 3] = t
    return out


# --- pose errors -------------------------------------------------------------------------------

def test_pose_errors_translation_is_the_camera_centre_distance():
    t_err, r_err = pose_errors(pose(t=(1.03, 2.04, 3.0)), pose(t=(1, 2, 3)))
    assert t_err == pytest.approx(0.05, abs=1e-12) and r_err == pytest.approx(0.0, abs=1e-6)
    # Same centres, different orientations: no translation error.
    t_err, _ = pose_errors(pose(rot_z(40), (1, 1, 1)), pose(rot_x(-20), (1, 1, 1)))
    assert t_err == 0.0


@pytest.mark.parametrize("est, gt, angle", [
    (rot_z(30), np.eye(3), 30.0),
    (rot_x(25), rot_x(10), 15.0),
    (rot_y(-50), rot_y(40), 90.0),
    (rot_z(180), np.eye(3), 180.0),
    (rot_x(90), rot_y(90), 120.0),  # R_x(90)·R_y(90)ᵀ has trace 0 → acos(-1/2)
])
def test_pose_errors_rotation_is_the_angle_of_r_est_r_gt_transposed(est, gt, angle):
    _, r_err = pose_errors(pose(est, (0, 1, 2)), pose(gt, (0, 1, 2)))
    assert r_err == pytest.approx(angle, abs=1e-6)


def test_pose_errors_combined():
    t_err, r_err = pose_errors(pose(rot_z(90), (3, 0, 4)), pose(np.eye(3), (0, 0, 0)))
    assert (t_err, r_err) == (pytest.approx(5.0), pytest.approx(90.0))


# --- quaternions -------------------------------------------------------------------------------

@pytest.mark.parametrize("rot, q", [
    (np.eye(3), (1, 0, 0, 0)),
    (rot_z(90), (math.sqrt(0.5), 0, 0, math.sqrt(0.5))),
    (rot_x(-60), (math.cos(math.radians(30)), -0.5, 0, 0)),
    (rot_y(120), (0.5, 0, math.sin(math.radians(60)), 0)),
    (rot_x(180), (0, 1, 0, 0)),
    (rot_y(180), (0, 0, 1, 0)),
    (rot_z(180), (0, 0, 0, 1)),
])
def test_rotation_to_quaternion_hand_cases(rot, q):
    assert np.allclose(rotation_to_quaternion(rot), q, atol=1e-12)
    assert np.allclose(quaternion_to_rotation(q), rot, atol=1e-12)


@pytest.mark.parametrize("rot", [rot_x(170) @ rot_y(5), rot_y(170) @ rot_z(5),
                                 rot_z(170) @ rot_x(5), rot_x(10) @ rot_y(20) @ rot_z(30)])
def test_quaternion_round_trip_on_every_branch(rot):
    # Angles near 180° about x, y, z make each diagonal entry the largest (Shepperd's branches).
    q = rotation_to_quaternion(rot)
    assert q[0] >= 0 and np.linalg.norm(q) == pytest.approx(1.0)
    assert np.allclose(quaternion_to_rotation(q), rot, atol=1e-12)


def test_quaternion_round_trip_random_and_sign():
    rng = np.random.default_rng(0)
    for _ in range(200):
        q = rng.normal(size=4)
        q /= np.linalg.norm(q)
        back = rotation_to_quaternion(quaternion_to_rotation(q))
        assert np.allclose(back, q if q[0] >= 0 else -q, atol=1e-10)
    # Unnormalized input is normalized first: (2, 0, 0, 2) is a 90° turn about z.
    assert np.allclose(quaternion_to_rotation([2, 0, 0, 2]), rot_z(90), atol=1e-12)


# --- rigid transforms and matrix files -----------------------------------------------------------

def test_invert_rigid_and_check_rigid():
    t = pose(rot_x(30) @ rot_z(-45), (1, -2, 0.5))
    assert np.allclose(invert_rigid(t) @ t, np.eye(4), atol=1e-12)
    assert np.allclose(invert_rigid(t), np.linalg.inv(t), atol=1e-12)
    assert check_rigid(t) is None
    bad_row = t.copy()
    bad_row[3, 0] = 1
    assert check_rigid(bad_row) == "last row is not 0 0 0 1"
    not_rigid = "is not rigid (its 3x3 part is not a rotation)"
    assert check_rigid(pose(np.diag([1.0, 1, -1]))) == not_rigid
    assert check_rigid(pose(2 * np.eye(3))) == not_rigid
    assert check_rigid(pose(np.zeros((3, 3)))) == "is singular"
    nan = t.copy()
    nan[0, 0] = np.nan
    assert check_rigid(nan) == "has non-finite entries"


def test_read_matrix_file(tmp_path):
    good = tmp_path / "frame.pose.txt"
    np.savetxt(good, pose(rot_z(10), (1, 2, 3)))
    assert np.allclose(read_matrix_file(good), pose(rot_z(10), (1, 2, 3)))
    small = tmp_path / "small.txt"
    np.savetxt(small, np.eye(3))
    with pytest.raises(InputError, match=r"pose file .*small.txt holds 9 numbers, expected 16"):
        read_matrix_file(small)
    words = tmp_path / "words.txt"
    words.write_text("a b c d\n" * 4)
    with pytest.raises(InputError, match="is not a 4x4 matrix of numbers"):
        read_matrix_file(words)
    with pytest.raises(InputError, match="cannot read transform file"):
        read_matrix_file(tmp_path / "missing.txt", what="transform")


# --- pose files ----------------------------------------------------------------------------------

def sample_records():
    return [
        PoseRecord(2, "seq-01/frame-000002.color.png", pose_cw=pose(rot_z(90), (1, 2, 3)),
                   t_err=0.0123, r_err=0.5),
        PoseRecord(0, "seq-01/frame-000000.color.png",
                   pose_cw=pose(rot_x(-30) @ rot_y(70), (-1, 0.5, 2))),
        PoseRecord(1, "seq-01/frame-000001.color.png", failure="only 2 usable\ncells"),
    ]


def test_pose_file_lines_by_hand():
    rec = PoseRecord(2, "img.png", pose_cw=pose(rot_z(90), (1, 2, 3)), t_err=0.0123, r_err=0.5)
    assert format_pose_line(rec) == ("2 img.png 0.70710678 0.00000000 0.00000000 0.70710678 "
                                     "1.00000000 2.00000000 3.00000000 1.2300 0.5000")
    assert format_pose_line(PoseRecord(1, "img.png", failure="no  hypothesis\twith inliers")) == \
        "1 img.png FAILED no hypothesis with inliers"


def test_pose_file_round_trip(tmp_path):
    path = tmp_path / "poses.txt"
    write_pose_file(path, sample_records())
    lines = path.read_text().splitlines()
    assert lines[0].startswith("#") and [ln.split()[0] for ln in lines[1:]] == ["0", "1", "2"]
    back = {r.index: r for r in read_pose_file(path)}
    want = {r.index: r for r in sample_records()}
    assert sorted(back) == [0, 1, 2]
    for k in (0, 2):
        assert back[k].image == want[k].image
        assert np.allclose(back[k].pose_cw, want[k].pose_cw, atol=1e-7)
    assert back[0].t_err is None and back[0].r_err is None
    assert back[2].t_err == pytest.approx(0.0123) and back[2].r_err == pytest.approx(0.5)
    assert back[1].pose_cw is None and back[1].failure == "only 2 usable cells"


def test_read_pose_file_errors(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("# header\n0 img.png 1 0 0 0 1 2\n")
    with pytest.raises(InputError, match="bad.txt line 2 is not"):
        read_pose_file(bad)
    with pytest.raises(InputError, match="cannot read pose file"):
        read_pose_file(tmp_path / "missing.txt")
    bad.write_text("0 img.png 0 0 0 0 1 2 3\n")  # a zero quaternion is no rotation
    with pytest.raises(InputError, match="bad.txt line 1 is not"):
        read_pose_file(bad)


# --- TUM -----------------------------------------------------------------------------------------

def test_tum_line_by_hand_and_round_trip(tmp_path):
    path = tmp_path / "traj.tum.txt"
    write_tum(path, sample_records())
    lines = path.read_text().splitlines()
    assert lines[0] == "# timestamp tx ty tz qx qy qz qw"
    assert lines[2] == ("2.000000 1.00000000 2.00000000 3.00000000 "
                        "0.00000000 0.00000000 0.70710678 0.70710678")
    assert len(lines) == 3  # the failed frame has no line
    stamps, poses = read_tum(path)
    assert stamps.tolist() == [0.0, 2.0]
    want = sorted((r for r in sample_records() if r.pose_cw is not None), key=lambda r: r.index)
    assert np.allclose(poses, np.stack([r.pose_cw for r in want]), atol=1e-7)


def test_tum_with_timestamps_and_errors(tmp_path):
    path = tmp_path / "traj.txt"
    write_tum(path, sample_records(), timestamps=[10.5, 11.5, 12.5])
    stamps, _ = read_tum(path)
    assert stamps.tolist() == [10.5, 12.5]
    seven = tmp_path / "seven.txt"
    seven.write_text("0 1 2 3 0 0 0\n")
    with pytest.raises(InputError, match="must have 8 columns"):
        read_tum(seven)
    zero = tmp_path / "zero.txt"
    zero.write_text("0 1 2 3 0 0 0 1\n1 1 2 3 0 0 0 0\n")
    with pytest.raises(InputError, match=r"zero.txt row 2: not a rotation quaternion"):
        read_tum(zero)


# --- summaries -----------------------------------------------------------------------------------

def test_summarize_errors_by_hand():
    s = summarize_errors([0.01, 0.03, 0.06], [1.0, 3.0, 1.0], n_failed=1)
    assert s["frames"] == 4 and s["failed"] == 1
    assert s["median_t_cm"] == pytest.approx(4.5)      # median of 1, 3, 6, ∞ cm
    assert s["median_r_deg"] == pytest.approx(2.0)     # median of 1, 1, 3, ∞ °
    assert s["within_5cm_5deg"] == 0.5
    assert s["within_2cm_2deg"] == 0.25
    assert s["within_10cm_5deg"] == 0.75


def test_summarize_errors_thresholds_are_inclusive_and_empty_is_empty():
    s = summarize_errors([0.05, 0.02], [5.0, 2.0])
    assert s["within_5cm_5deg"] == 1.0 and s["within_2cm_2deg"] == 0.5
    assert summarize_errors([], []) == {"frames": 0, "failed": 0}
    all_failed = summarize_errors([], [], n_failed=2)
    assert all_failed["median_t_cm"] == math.inf and all_failed["within_10cm_5deg"] == 0.0


def test_median_difference_interval_is_paired_and_blockwise():
    from common.poses import median_difference_interval

    rng = np.random.default_rng(1)
    a = rng.gamma(2.0, 3.0, size=300)
    # A constant shift on every frame: the paired difference is exactly the shift in every resampling.
    diff, low, high = median_difference_interval(a, a + 1.5)
    assert diff == pytest.approx(1.5) and low == pytest.approx(1.5) and high == pytest.approx(1.5)
    assert median_difference_interval(a, a) == (0.0, 0.0, 0.0)
    # Independent noise of the same law: the interval holds the observed difference and 0, and is the
    # same for the same seed; a failed frame (inf) counts as a miss, not an error.
    b = rng.gamma(2.0, 3.0, size=300)
    diff, low, high = median_difference_interval(a, b)
    assert low < 0 < high and low <= diff <= high
    assert median_difference_interval(a, b) == (diff, low, high)
    assert median_difference_interval(a, b, seed=1) != (diff, low, high)
    b_failed = b.copy()
    b_failed[:10] = np.inf
    assert median_difference_interval(a, b_failed)[0] >= diff
    # Blocks of 30 consecutive frames are wider than single frames when neighbours err alike.
    slow = np.repeat(rng.normal(size=10), 30)
    wide = median_difference_interval(np.zeros(300), slow, block=30)
    narrow = median_difference_interval(np.zeros(300), slow, block=1)
    assert (wide[2] - wide[1]) > 1.5 * (narrow[2] - narrow[1])
    # Too few frames for two blocks: no interval.
    d, lo, hi = median_difference_interval(a[:50], b[:50], block=30)
    assert np.isfinite(d) and np.isnan(lo) and np.isnan(hi)
    with pytest.raises(ValueError):
        median_difference_interval(a, b[:10])


def test_lag_along_motion_by_hand():
    # The camera moves +10 cm along x per frame; the estimates trail by 2 cm and are 5 cm off
    # sideways (which does not count); the third frame failed (NaN) and is skipped.
    gt = np.array([[0.0, 0, 0], [0.1, 0, 0], [0.2, 0, 0], [0.3, 0, 0]])
    est = gt + [[0.0, 0.05, 0]] * 4 - [[0.02, 0, 0]] * 4
    est[2] = np.nan
    lag, step, n = lag_along_motion(est, gt)
    assert (n, lag, step) == (2, pytest.approx(0.02), pytest.approx(0.1))
    lead, _, _ = lag_along_motion(gt + [[0.03, 0, 0]] * 4, gt)
    assert lead == pytest.approx(-0.03)
    # The step back to a previous frame that turned: only the component along it counts.
    turn = np.array([[0.0, 0, 0], [0.0, 0.1, 0]])
    assert lag_along_motion(turn + [[0, 0, 0], [0.04, -0.01, 0]], turn)[0] == pytest.approx(0.01)
    # A still camera or no usable pair: nothing to measure.
    still = lag_along_motion(np.ones((3, 3)), np.ones((3, 3)))
    assert np.isnan(still[0]) and still[2] == 0
