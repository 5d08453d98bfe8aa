"""Per-stage speed on this machine, as ratios measured in one run.

    python scripts/benchmark.py [--frames 480] [--size 160x120]

- SCoordNet test (scoordnet/test.py: reading, network, writing, evaluation) frames/s vs the raw
  model forward pass on the same frames: the pipeline's overhead.
- KFNet streaming test (kfnet/test.py) vs the SCoordNet test: the cost of OFlowNet + the filter.
- kfnet.Relocalizer.step, one frame per call (both networks, the filter, RANSAC-PnP; images
  already in memory) vs the KFNet test CLI.
- The full-size SCoordNet (width 1.0, 640×480) achieved GFLOP/s vs a large float32 matmul's
  GFLOP/s in the same process: how close the network runs to what this machine can do.
- RANSAC-PnP ms per frame on 60×80 maps (640×480 frames) with 30 % outliers.
The networks use the demo widths with random weights (speed does not depend on the weights).
"""

import argparse
import contextlib
import io
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from common.cli import parse_size, quiet_tensorflow, run  # noqa: E402


def conv_flops(net, image_hw):
    """Multiply-adds ×2 of every convolution of a built SCoordNet at an image size."""
    height, width = image_hw
    total, h, w, c_in = 0, height, width, 3
    for layer in [*net.convs, net.prediction]:
        stride = layer.strides[0]
        h, w = -(-h // stride), -(-w // stride)
        k = layer.kernel_size[0]
        total += 2 * h * w * k * k * c_in * layer.filters
        c_in = layer.filters
    return total


def timed(fn, repeat):
    fn()  # warm-up (tracing)
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t0) / repeat


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=480,
                   help="frames of the generated test sequence (each CLI's start-up is spread over them)")
    p.add_argument("--size", type=parse_size, default=(160, 120), help="image size WxH of that sequence")
    p.add_argument("--full_repeat", type=int, default=3, help="timed full-size forward passes")
    args = p.parse_args(argv)
    quiet_tensorflow()
    import cv2
    import numpy as np
    import tensorflow as tf

    from common.checkpoints import write_model_info
    from common.config import load_config, stage_config
    from common.data.prepare import Camera, prepare_scene
    from common.data.synthetic import SceneSettings, write_scene
    from common.formats import read_list
    from kfnet import Relocalizer
    from kfnet import test as kfnet_test
    from oflownet.model import OFlowNet
    from pnp.solve import solve_frame
    from pnp.synthetic import make_frame
    from scoordnet import test as scoord_test
    from scoordnet.model import SCoordNet

    width, height = args.size
    cfg = load_config("synthetic")
    w1, w2 = stage_config(cfg, "scoordnet")["width"], stage_config(cfg, "oflownet")["width"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        print(f"generating a {width}x{height} sequence of {args.frames} frames ...", flush=True)
        write_scene(tmp / "scene", SceneSettings(width=width, height=height, frames=args.frames,
                                                 sequences=2, test_sequences=1, seed=0), progress=False)
        f = 525.0 * width / 640
        prepare_scene(tmp / "scene", tmp / "data", Camera(focal=f, focal_y=f, cx=width / 2, cy=height / 2,
                                                          depth_focal=f), progress=False)
        scoord = SCoordNet(width=w1).build_for((height, width))
        oflow = OFlowNet(width=w2)
        model = tmp / "model"
        tf.train.Checkpoint(scoordnet=scoord, oflownet=oflow).write(str(model / "ckpt-1"))
        (model / "checkpoint").write_text('model_checkpoint_path: "ckpt-1"\n')
        write_model_info(model, "kfnet", {"scoordnet": w1, "oflownet": w2})

        # Raw forward: SCoordNet alone on batches of 4 images already in memory.
        images = tf.random.uniform([4, height, width, 3], 0, 255)
        forward = tf.function(lambda x: scoord(x))
        raw = 4 / timed(lambda: forward(images)[0].numpy(), max(3, args.frames // 4))

        def cli_fps(main_fn, out):
            argv = ["--input_folder", str(tmp / "data" / "test"), "--output_folder", str(tmp / out),
                    "--model_folder", str(model), "--quiet", "--no_progress"]
            t0 = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):
                main_fn(argv)
            return args.frames / (time.perf_counter() - t0)

        cli_fps(scoord_test.main, "warm")  # first run pays graph tracing and file-cache warm-up
        scoord_fps = cli_fps(scoord_test.main, "scoordnet")
        kfnet_fps = cli_fps(kfnet_test.main, "kfnet")
        rows.append(("SCoordNet test vs raw forward", f"{scoord_fps:.1f} vs {raw:.1f} frames/s",
                     f"{scoord_fps / raw:.2f}"))
        rows.append(("KFNet streaming vs SCoordNet test", f"{kfnet_fps:.1f} vs {scoord_fps:.1f} frames/s",
                     f"{kfnet_fps / scoord_fps:.2f}"))

        # The streaming API, one frame per call: both networks, the filter and RANSAC-PnP.
        test_folder = tmp / "data" / "test"
        K = np.array([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]])
        with contextlib.redirect_stdout(io.StringIO()):
            reloc = Relocalizer.load(model, scene="synthetic", intrinsics=K,
                                     transform=test_folder / "transform.txt")
        rgb = [cv2.imread(p)[..., ::-1].copy() for p in read_list(test_folder / "image_list.txt")]
        reloc.step(rgb[0])  # traces the network pass and the filter step
        reloc.reset()
        t0 = time.perf_counter()
        for image in rgb:
            reloc.step(image)
        step_fps = len(rgb) / (time.perf_counter() - t0)
        rows.append(("Relocalizer.step (networks + filter + PnP) vs KFNet test", f"{step_fps:.1f} vs "
                     f"{kfnet_fps:.1f} frames/s", f"{step_fps / kfnet_fps:.2f}"))

    # Full-size SCoordNet against a large matmul.
    full = SCoordNet(width=1.0).build_for((480, 640))
    frame = tf.random.uniform([1, 480, 640, 3], 0, 255)
    full_forward = tf.function(lambda x: full(x))
    t_full = timed(lambda: full_forward(frame)[0].numpy(), args.full_repeat)
    gflops_net = conv_flops(full, (480, 640)) / t_full / 1e9
    n = 4096
    a, b = tf.random.normal([n, n]), tf.random.normal([n, n])
    matmul = tf.function(lambda: tf.matmul(a, b))
    t_mm = timed(lambda: matmul().numpy(), 3)
    gflops_mm = 2 * n**3 / t_mm / 1e9
    rows.append(("full-size SCoordNet (640×480) vs 4096² matmul",
                 f"{gflops_net:.1f} vs {gflops_mm:.1f} GFLOP/s ({t_full:.2f} s per frame)",
                 f"{gflops_net / gflops_mm:.2f}"))

    rng = np.random.default_rng(0)
    K = np.array([[525.0, 0, 320], [0, 525.0, 240], [0, 0, 1]])
    frames = [make_frame(rng, K, outlier_share=0.3) for _ in range(20)]
    solve_frame(frames[0].coords, frames[0].confidence, K)
    t0 = time.perf_counter()
    for fr in frames:
        solve_frame(fr.coords, fr.confidence, K)
    ms = 1000 * (time.perf_counter() - t0) / len(frames)
    rows.append(("RANSAC-PnP, 60×80 map, 30 % outliers", f"{ms:.1f} ms per frame", "–"))

    print(f"\n| measurement ({width}x{height}, widths {w1}/{w2}) | value | ratio |\n|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    run(main)
