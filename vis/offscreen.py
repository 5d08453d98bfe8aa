"""Open3D's offscreen renderer in a child process, with timeouts and a fallback to matplotlib.

Filament runs on Vulkan (Mesa's llvmpipe on a CPU-only machine). The child
(`python vis/offscreen.py JOB.npz OUT_DIR`) writes one PNG per snapshot; a renderer that cannot
start, crashes or stops producing pictures is noticed here and replaced by matplotlib.
"""

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import subprocess
import tempfile
import time

import numpy as np

from common.errors import InputError
from vis.pointcloud import BACKGROUND

START_TIMEOUT_S = 90.0  # first picture (renderer start, shader compilation)
FRAME_TIMEOUT_S = 60.0  # each further picture


def _wait_for_pictures(proc, folder, progress):
    """(exit code, pictures done) of the worker, or (None, done) after killing it on a timeout."""
    done, deadline = 0, time.monotonic() + START_TIMEOUT_S
    while True:
        code = proc.poll()
        now_done = len(list(Path(folder).glob("frame_*.png")))
        if now_done > done:
            if progress is not None:
                progress.update(now_done - done)
            done, deadline = now_done, time.monotonic() + FRAME_TIMEOUT_S
        if code is not None:
            return code, done
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            return None, done
        time.sleep(0.1)


def render_open3d(points_n3, colors_n3, frame_n, snapshots, view, size_wh, point_size,
                  progress=None):
    """Open3D pictures [H, W, 3] uint8, one per snapshot (all points with frame ≤ it).

    Returns (list of images, None), or (None, one-line reason) when the renderer failed.
    """
    import cv2

    with tempfile.TemporaryDirectory(prefix="kfnet-render-") as tmp:
        job, log_path = Path(tmp) / "job.npz", Path(tmp) / "log.txt"
        np.savez(job, points=points_n3.astype(np.float32), colors=colors_n3.astype(np.float32),
                 frames=frame_n.astype(np.int64), snapshots=np.asarray(snapshots, np.int64),
                 eye=view.eye, centre=view.centre, up=view.up, fov=view.fov,
                 size=np.asarray(size_wh), point_size=point_size)
        with open(log_path, "w") as log:
            proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), str(job), tmp],
                                    stdout=log, stderr=subprocess.STDOUT)
            code, done = _wait_for_pictures(proc, tmp, progress)
        if code is None:
            limit = START_TIMEOUT_S if done == 0 else FRAME_TIMEOUT_S
            return None, f"no picture within {limit:.0f} s"
        if code != 0 or done != len(snapshots):
            lines = [ln.strip() for ln in log_path.read_text().splitlines() if ln.strip()]
            return None, f"renderer exited with code {code}: {lines[-1] if lines else 'no message'}"
        pictures = [cv2.imread(str(Path(tmp) / f"frame_{i:05d}.png")) for i in range(done)]
        return [cv2.cvtColor(p, cv2.COLOR_BGR2RGB) for p in pictures], None


def _worker(job_path, out_dir):
    """Child process: renders each snapshot of the job to OUT_DIR/frame_<n>.png."""
    import open3d as o3d
    from open3d.visualization import rendering

    o3d.utility.set_verbosity_level(o3d.utility.VerbosityLevel.Error)
    job = np.load(job_path, allow_pickle=False)
    w, h = (int(v) for v in job["size"])
    renderer = rendering.OffscreenRenderer(w, h)
    scene = renderer.scene
    # Without post-processing the background (alone) comes out sRGB-decoded: pre-encode it.
    background = [1.055 * c ** (1 / 2.4) - 0.055 if c > 0.0031308 else 12.92 * c
                  for c in BACKGROUND]
    scene.set_background([*background, 1.0])
    # Tone mapping would wash out the colour code; points are flat-coloured, unlit.
    scene.view.set_post_processing(False)
    material = rendering.MaterialRecord()
    material.shader = "defaultUnlit"
    material.point_size = float(job["point_size"])
    # Explicit clip planes: setup_camera() would take them from the (still empty) scene's bounds.
    reach = float(np.linalg.norm(job["eye"] - job["centre"]))
    renderer.scene.camera.set_projection(float(job["fov"]), w / h, 0.01 * reach, 100.0 * reach,
                                         rendering.Camera.FovType.Vertical)
    renderer.scene.camera.look_at(job["centre"], job["eye"], job["up"])
    points, colors, frames = job["points"], job["colors"], job["frames"]
    previous = -np.inf
    for n, snap in enumerate(job["snapshots"]):
        new = (frames > previous) & (frames <= snap)
        if new.any():
            cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points[new].astype(float)))
            cloud.colors = o3d.utility.Vector3dVector(colors[new].astype(float))
            scene.add_geometry(f"points_{n}", cloud, material)
        previous = snap
        o3d.io.write_image(str(Path(out_dir) / f".frame_{n:05d}.png"), renderer.render_to_image())
        # Renamed only when complete, so the parent never reads a half-written picture.
        (Path(out_dir) / f".frame_{n:05d}.png").rename(Path(out_dir) / f"frame_{n:05d}.png")


def render(points_n3, colors_n3, frame_n, snapshots, view, size_wh, point_size, renderer,
           progress=None):
    """(list of images or None, name of the renderer used); None means draw with matplotlib.

    renderer: 'auto' tries Open3D and says so when it falls back; 'open3d' makes a failure an
    error; 'matplotlib' skips Open3D.
    """
    if renderer == "matplotlib":
        return None, "matplotlib"
    images, reason = render_open3d(points_n3, colors_n3, frame_n, snapshots, view, size_wh,
                                   point_size, progress)
    if images is not None:
        return images, "open3d"
    if renderer == "open3d":
        raise InputError(f"Open3D offscreen rendering failed ({reason})")
    print(f"note: Open3D offscreen rendering failed ({reason}); drawing with matplotlib instead")
    return None, "matplotlib"


def main(argv=None):
    """The child's command line (internal: started by render(), not meant to be run by hand)."""
    import argparse

    parser = argparse.ArgumentParser(
        description="Internal worker of the vis/ scripts' --save: renders the snapshots of JOB.npz with "
                    "Open3D's offscreen renderer into OUT_DIR, one PNG each. Not meant to be run by hand.")
    parser.add_argument("job", help="the .npz job file render() writes")
    parser.add_argument("out_dir", help="folder for the PNG pictures")
    args = parser.parse_args(argv)
    _worker(args.job, args.out_dir)


if __name__ == "__main__":
    main()
