"""Shared fixtures: a tiny synthetic scene (80×64, 3 sequences of 12 frames), made once per run."""

import os

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"

from types import SimpleNamespace  # noqa: E402

import pytest  # noqa: E402

from common.config import load_config  # noqa: E402
from common.data.prepare import Camera, prepare_scene  # noqa: E402

# The synthetic scene is ray cast with Open3D (the "vis" extra): without it, every test that needs
# the scene is skipped; CI installs requirements.txt, which holds it.
NEEDS_OPEN3D = "Open3D (pip install -e .[vis]) renders the synthetic scene"
TINY_SCENE = dict(width=80, height=64, frames=12, sequences=3, test_sequences=1, seed=0)


def tiny_camera():
    """Intrinsics of configs/tiny.yaml (registered depth)."""
    cfg = load_config("tiny")
    return Camera(focal=float(cfg["focal"]), focal_y=float(cfg.get("focal_y") or cfg["focal"]),
                  cx=float(cfg["cx"]), cy=float(cfg["cy"]), depth_focal=float(cfg["depth_focal"]))


@pytest.fixture(scope="session")
def tiny_scene(tmp_path_factory):
    """The tiny scene: .dataset (7-Scenes layout; seq-01, seq-02 train, seq-03 test), .train and
    .test (prepared input folders with lists, labels and transform.txt), .settings."""
    pytest.importorskip("open3d", reason=NEEDS_OPEN3D)
    from common.data.synthetic import SceneSettings, write_scene

    settings = SceneSettings(**TINY_SCENE)
    root = tmp_path_factory.mktemp("tiny_scene")
    dataset, prepared = root / "dataset", root / "prepared"
    write_scene(dataset, settings, progress=False)
    prepare_scene(dataset, prepared, tiny_camera(), progress=False)
    return SimpleNamespace(dataset=dataset, train=prepared / "train", test=prepared / "test",
                           settings=settings)
