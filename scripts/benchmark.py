"""Per-stage speed on this machine, as ratios of timings taken side by side in one process.

    python scripts/benchmark.py [--frames 480] [--size 160x120] [--full] [--full_frames 20] [--json FILE]

Demo size (the demo's widths, random weights, a generated test sequence of --frames frames):
- cli_scoordnet, cli_kfnet: each test CLI's frame rate after its first batch (reading, network,
  filter, writing, evaluation) vs the bare pass over the same frames already in memory (SCoordNet
  alone; both networks + the filter), timed just before and just after the CLI. Target ≥ 0.95.
  cli_scoordnet_cpu, cli_kfnet_cpu: the same in frames per CPU second of the process (all threads),
  which the machine's other jobs change least: what the CLI costs beyond the bare pass.
- kfnet_cli_vs_scoordnet_cli, relocalizer_step: KFNet streaming vs SCoordNet alone, through the CLIs
  and through kfnet.Relocalizer.step (images in memory, PnP included).
- pnp: RANSAC-PnP ms per frame on 60×80 maps (640×480 frames) with 30 % outliers.

--full adds the paper's size (640×480, width 1.0 networks, random weights, --full_frames frames):
- full_kfnet_vs_scoordnet: Relocalizer.step (both networks, filter, PnP) vs SCoordNet's forward
  pass, alternating frame by frame (which goes first alternates too); the median of the
  per-frame ratios. Target ≤ 1.08. full_kfnet_vs_scoordnet_pnp: vs SCoordNet + PnP.
- full_split_*: the parts timed on their own in the same loop: SCoordNet, feature tower, cost
  volume, flow U-Net, filter, PnP, I/O (PNG read + decode, .npy write); ms per frame and share
  of SCoordNet. full_startup_*: the first calls (graph tracing), not in any per-frame number.
- full_cli_scoordnet, full_cli_kfnet (and _cpu): the test CLIs vs the bare pass at this size.
- full_bf16_*: --mixed_precision (bfloat16 on CPU) vs float32 per frame, same weights, and the
  relative difference of the coordinate maps (random weights: no accuracy, only the deviation).
- full_gflops: SCoordNet's achieved GFLOP/s vs a 4096² float32 matmul's.
"""

import argparse
import contextlib
import io
import json
import os
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


def clock(fn, *args):
    """(seconds, result) of one call."""
    t0 = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - t0, out


class Rows:
    """The table: one row per measurement, with a stable key (the --json file holds the numbers too)."""

    def __init__(self):
        self.rows = []

    def add(self, key, what, value, ratio=None, **numbers):
        self.rows.append({"key": key, "measurement": what, "value": value, "ratio": ratio, **numbers})
        print(f"  {key}: {value}" + ("" if ratio is None else f" (ratio {ratio:.3f})"), flush=True)

    def markdown(self):
        lines = ["| key | measurement | value | ratio |", "|---|---|---|---|"]
        for r in self.rows:
            ratio = "–" if r["ratio"] is None else f"{r['ratio']:.2f}"
            lines.append(f"| {r['key']} | {r['measurement']} | {r['value']} | {ratio} |")
        return "\n".join(lines)


def make_sequence(root, size, frames):
    """A generated, prepared scene of `frames` frames per sequence: its test folder."""
    from common.data.prepare import Camera, prepare_scene
    from common.data.synthetic import SceneSettings, write_scene

    width, height = size
    write_scene(root / "scene", SceneSettings(width=width, height=height, frames=frames,
                                              sequences=2, test_sequences=1, seed=0), progress=False)
    f = 525.0 * width / 640
    prepare_scene(root / "scene", root / "data", Camera(focal=f, focal_y=f, cx=width / 2, cy=height / 2,
                                                        depth_focal=f), progress=False)
    return root / "data" / "test"


def make_model(folder, widths, image_hw):
    """A KFNet model folder with random weights; returns (SCoordNet, OFlowNet) holding them."""
    import tensorflow as tf

    from common.checkpoints import write_model_info
    from oflownet.model import OFlowNet
    from scoordnet.model import SCoordNet

    scoord = SCoordNet(width=widths[0]).build_for(image_hw)
    oflow = OFlowNet(width=widths[1])
    tf.train.Checkpoint(scoordnet=scoord, oflownet=oflow).write(str(folder / "ckpt-1"))
    (folder / "checkpoint").write_text('model_checkpoint_path: "ckpt-1"\n')
    write_model_info(folder, "kfnet", {"scoordnet": widths[0], "oflownet": widths[1]})
    return scoord, oflow


def read_images(test_folder):
    import cv2

    from common.formats import read_list

    return [cv2.imread(p)[..., ::-1].astype("float32") for p in read_list(test_folder / "image_list.txt")]


def bare_scoordnet(net, images, batch):
    """(frames/s, frames per CPU second) of SCoordNet alone on batches of images in memory (after a
    warm-up batch)."""
    import numpy as np
    import tensorflow as tf

    hw = images[0].shape[:2]
    forward = tf.function(lambda x: net(x, training=False),
                          input_signature=[tf.TensorSpec([None, *hw, 3], tf.float32)])
    batches = [tf.constant(np.stack(images[i:i + batch])) for i in range(0, len(images), batch)]
    forward(batches[0])[0].numpy()
    t0, c0 = time.perf_counter(), time.process_time()
    for b in batches:
        coords, sigma = forward(b)
        coords.numpy(), sigma.numpy()
    return len(images) / (time.perf_counter() - t0), len(images) / (time.process_time() - c0)


def bare_kfnet(reloc, images, starts, batch):
    """(frames/s, frames per CPU second) of both networks and the filter on batches in memory (one filter
    call per batch, as kfnet/test.py)."""
    import numpy as np
    import tensorflow as tf

    batches = [(tf.constant(np.stack(images[i:i + batch])), starts[i:i + batch])
               for i in range(0, len(images), batch)]

    def run_all(items):
        reloc.reset()
        for b, new in items:
            z, r, flow, q = reloc.networks(b)
            reloc.filter_frames(z, r, flow, q, new)
            z.numpy(), r.numpy()

    run_all(batches[:2])  # traces the network pass and the filter step
    t0, c0 = time.perf_counter(), time.process_time()
    run_all(batches)
    return len(images) / (time.perf_counter() - t0), len(images) / (time.process_time() - c0)


def cli_speed(main_fn, test_folder, out, model, extra=()):
    """The test CLI's own speed record (OUT/run.json: summary.speed) after a run."""
    argv = ["--input_folder", str(test_folder), "--output_folder", str(out), "--model_folder", str(model),
            "--quiet", "--no_progress", *extra]
    with contextlib.redirect_stdout(io.StringIO()):
        main_fn(argv)
    return json.loads((out / "run.json").read_text())["summary"]["speed"]


def cli_rows(rows, prefix, test_folder, tmp, model, images, widths, batch=4):
    """Both test CLIs against their bare passes (timed just before and after each CLI run)."""
    import numpy as np

    from common.data.scene import load_input_folder
    from kfnet import Relocalizer
    from kfnet import test as kfnet_test
    from kfnet.relocalizer import load_kfnet
    from scoordnet import test as scoord_test

    hw = images[0].shape[:2]
    data = load_input_folder(test_folder, None, require_labels=False)
    with contextlib.redirect_stdout(io.StringIO()):
        kfnet, _ = load_kfnet(model, hw)
    reloc = Relocalizer(kfnet, transform=data.transform)
    starts = np.asarray(data.sequence_starts)
    out = {}
    for name, main_fn, bare in (("scoordnet", scoord_test.main,
                                 lambda: bare_scoordnet(kfnet.scoordnet, images, batch)),
                                ("kfnet", kfnet_test.main, lambda: bare_kfnet(reloc, images, starts, batch))):
        before, cpu_before = bare()
        speed = cli_speed(main_fn, test_folder, tmp / f"{prefix}{name}", model)
        after, cpu_after = bare()
        base, cpu_base = (before + after) / 2, (cpu_before + cpu_after) / 2
        fps = speed["frames_per_second"] or float("nan")  # None: a single batch
        cpu_fps = speed["frames_per_cpu_second"] or float("nan")
        what = "SCoordNet alone" if name == "scoordnet" else "both networks + filter"
        rows.add(f"{prefix}cli_{name}", f"{name}/test.py after its first batch vs the bare pass ({what}, "
                 f"images in memory), {len(images)} frames {hw[1]}×{hw[0]}, widths {widths[0]}/{widths[1]}",
                 f"{fps:.2f} vs {base:.2f} frames/s (bare {before:.2f} before, {after:.2f} after; "
                 f"first batch {speed['startup_s']:.1f} s)", fps / base, cli_fps=fps, bare_fps=base,
                 bare_before=before, bare_after=after, startup_s=speed["startup_s"],
                 whole_run_fps=speed["total_frames"] / speed["total_s"])
        rows.add(f"{prefix}cli_{name}_cpu", f"the same in frames per CPU second of the whole process (every "
                 "thread; changes least with the machine's other jobs)",
                 f"{cpu_fps:.2f} vs {cpu_base:.2f} frames per CPU s (bare {cpu_before:.2f} before, "
                 f"{cpu_after:.2f} after)", cpu_fps / cpu_base, cli_cpu_fps=cpu_fps, bare_cpu_fps=cpu_base)
        out[name] = fps
    return out


def demo_rows(rows, args, tmp):
    import numpy as np

    from common.config import load_config, stage_config
    from kfnet import Relocalizer
    from pnp.solve import solve_frame
    from pnp.synthetic import make_frame

    width, height = args.size
    cfg = load_config("synthetic")
    widths = stage_config(cfg, "scoordnet")["width"], stage_config(cfg, "oflownet")["width"]
    print(f"generating a {width}x{height} sequence of {args.frames} frames ...", flush=True)
    test_folder = make_sequence(tmp / "demo", args.size, args.frames)
    model = tmp / "demo" / "model"
    make_model(model, widths, (height, width))
    images = read_images(test_folder)
    fps = cli_rows(rows, "", test_folder, tmp / "demo", model, images, widths)
    rows.add("kfnet_cli_vs_scoordnet_cli", "KFNet streaming test vs SCoordNet test (CLIs, after the first batch)",
             f"{fps['kfnet']:.1f} vs {fps['scoordnet']:.1f} frames/s", fps["kfnet"] / fps["scoordnet"])

    f = 525.0 * width / 640
    K = np.array([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]])
    with contextlib.redirect_stdout(io.StringIO()):
        reloc = Relocalizer.load(model, scene="synthetic", intrinsics=K, transform=test_folder / "transform.txt")
    reloc.step(images[0]), reloc.step(images[1])  # traces the network pass and the filter step
    reloc.reset()
    t0 = time.perf_counter()
    for image in images:
        reloc.step(image)
    step_fps = len(images) / (time.perf_counter() - t0)
    rows.add("relocalizer_step", "Relocalizer.step (networks + filter + PnP) vs KFNet test CLI",
             f"{step_fps:.1f} vs {fps['kfnet']:.1f} frames/s", step_fps / fps["kfnet"])

    rng = np.random.default_rng(0)
    K = np.array([[525.0, 0, 320], [0, 525.0, 240], [0, 0, 1]])
    frames = [make_frame(rng, K, outlier_share=0.3) for _ in range(20)]
    solve_frame(frames[0].coords, frames[0].confidence, K)
    t0 = time.perf_counter()
    for fr in frames:
        solve_frame(fr.coords, fr.confidence, K)
    ms = 1000 * (time.perf_counter() - t0) / len(frames)
    rows.add("pnp", "RANSAC-PnP, 60×80 map, 30 % outliers", f"{ms:.1f} ms per frame", ms=ms)


def full_rows(rows, args, tmp):
    """The paper's size: KFNet streaming vs SCoordNet alone, the split, the CLIs, bf16."""
    import cv2
    import numpy as np
    import tensorflow as tf
    from tqdm import tqdm

    from common import formats
    from common.distribute import precision_policy
    from kfnet import Relocalizer
    from kfnet.model import KFNet
    from kfnet.relocalizer import KalmanStream
    from oflownet.cost_volume import WINDOW, cost_volume
    from oflownet.model import OFlowNet
    from pnp.solve import solve_frame
    from scoordnet.model import SCoordNet

    width, height = args.full_size
    hw = (height, width)
    widths = tuple(args.full_widths)
    print(f"generating a {width}x{height} sequence of {args.full_frames} frames ...", flush=True)
    test_folder = make_sequence(tmp / "full", args.full_size, args.full_frames)
    model = tmp / "full" / "model"
    scoord, oflow = make_model(model, widths, hw)
    paths = formats.read_list(test_folder / "image_list.txt")
    images = read_images(test_folder)
    f = 525.0 * width / 640
    K = np.array([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]])
    reloc = Relocalizer(KFNet(scoord, oflow), intrinsics=K)
    with precision_policy(True) as policy:
        scoord_bf = SCoordNet(width=widths[0]).build_for(hw)
        oflow_bf = OFlowNet(width=widths[1])
    scoord_bf.set_weights(scoord.get_weights())
    oflow_bf.set_weights(oflow.get_weights())
    reloc_bf = Relocalizer(KFNet(scoord_bf, oflow_bf), intrinsics=K)

    spec = tf.TensorSpec([None, *hw, 3], tf.float32)
    sc = tf.function(lambda x: scoord(x, training=False), input_signature=[spec])
    sc_bf = tf.function(lambda x: scoord_bf(x, training=False), input_signature=[spec])
    tower = tf.function(oflow.features, input_signature=[spec])
    volume = tf.function(lambda a, b: cost_volume(a, b, WINDOW))
    unet = tf.function(lambda v: oflow.flownet(v))
    stream = KalmanStream()
    h, w = hw[0] // 8, hw[1] // 8
    channels = oflow.tower.channels
    io_folder = tmp / "full" / "io"
    io_folder.mkdir()

    def parts(image, path, feat_prev, k):
        """Seconds of each part on its own, and the current frame's features."""
        t = {}
        t["io_read"], raw = clock(lambda: cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_COLOR))
        x = tf.constant(image[None])
        t["tower"], feat = clock(lambda: tower(x).numpy())
        feat = tf.constant(feat)
        t["cost_volume"], vol = clock(lambda: volume(feat_prev, feat).numpy())
        vol = tf.constant(vol.reshape(-1, WINDOW, WINDOW, channels))
        t["flow_unet"], (logits, sigma_q) = clock(lambda: [o.numpy() for o in unet(vol)])
        zs = tf.random.uniform([1, h, w, 3])
        ones = tf.ones([1, h, w, 1])
        stream.filter(zs, ones, None, None, new_sequence=True)
        flow = tf.zeros([1, h, w, 2])
        t["filter"], step = clock(lambda: stream.filter(zs, ones, flow, ones * 0.01))
        step.shown.numpy()
        coords = reloc.world(step.shown.numpy()[0])
        conf = formats.coord_output(coords, np.sqrt(step.p.numpy()[0]))
        t["pnp"], _ = clock(lambda: solve_frame(conf[..., :3], conf[..., 3], K, seed=(0, k)))
        t["io_write"], _ = clock(lambda: formats.save_npy(formats.coord_file(io_folder, k), conf))
        return t, feat

    # Start-up: the first calls trace the graphs (two Relocalizer steps: the second traces the filter).
    startup = {}
    startup["scoordnet"], _ = clock(lambda: sc(tf.constant(images[0][None]))[0].numpy())
    startup["kfnet"], _ = clock(lambda: (reloc.step(images[0]), reloc.step(images[1])))
    startup["scoordnet_bf16"], _ = clock(lambda: sc_bf(tf.constant(images[0][None]))[0].numpy())
    startup["kfnet_bf16"], _ = clock(lambda: (reloc_bf.step(images[0]), reloc_bf.step(images[1])))
    parts(images[0], paths[0], tf.zeros([1, h, w, channels]), 0)
    reloc.reset(), reloc_bf.reset()

    keys = ("scoordnet", "kfnet", "scoordnet_bf16", "kfnet_bf16")
    times = {k: [] for k in keys}
    split = []
    diffs = {"measurement": [], "posterior": []}
    feat_prev = tf.zeros([1, h, w, channels])
    for k in tqdm(range(len(images)), desc="640×480 frames" if hw == (480, 640) else "full frames"):
        image = images[k]
        jobs = {
            "scoordnet": lambda: sc(tf.constant(image[None]))[0].numpy(),
            "kfnet": lambda: reloc.step(image),
            "scoordnet_bf16": lambda: sc_bf(tf.constant(image[None]))[0].numpy(),
            "kfnet_bf16": lambda: reloc_bf.step(image),
        }
        order = keys if k % 2 == 0 else keys[::-1]
        results = {}
        for name in order:
            seconds, results[name] = clock(jobs[name])
            times[name].append(seconds)
        t, feat_prev = parts(image, paths[k], feat_prev, k)
        split.append(t)
        for name, attr in (("measurement", "measurement"), ("posterior", "coords")):
            a, b = getattr(results["kfnet"], attr), getattr(results["kfnet_bf16"], attr)
            diffs[name].append(float(np.median(np.linalg.norm(a - b, axis=-1)) /
                                     np.median(np.linalg.norm(a - np.median(a, (0, 1)), axis=-1))))

    t = {k: np.asarray(v) for k, v in times.items()}
    pnp = np.asarray([s["pnp"] for s in split])
    med = {k: float(np.median(v)) for k, v in t.items()}
    n = len(images)
    size = f"{width}×{height}, widths {widths[0]}/{widths[1]}, {n} frames"
    ratio = float(np.median(t["kfnet"] / t["scoordnet"]))
    rows.add("full_kfnet_vs_scoordnet", f"Relocalizer.step (networks + filter + PnP) vs SCoordNet forward, "
             f"per frame, alternating ({size})",
             f"{1000 * med['kfnet']:.0f} vs {1000 * med['scoordnet']:.0f} ms (means {1000 * t['kfnet'].mean():.0f} "
             f"vs {1000 * t['scoordnet'].mean():.0f}; ratio of sums {t['kfnet'].sum() / t['scoordnet'].sum():.3f})",
             ratio, kfnet_ms=1000 * med["kfnet"], scoordnet_ms=1000 * med["scoordnet"],
             ratio_of_sums=float(t["kfnet"].sum() / t["scoordnet"].sum()),
             per_frame_ratios=[float(x) for x in t["kfnet"] / t["scoordnet"]])
    ratio_pnp = float(np.median(t["kfnet"] / (t["scoordnet"] + pnp)))
    rows.add("full_kfnet_vs_scoordnet_pnp", "the same vs SCoordNet forward + PnP (both giving a pose)",
             f"{1000 * med['kfnet']:.0f} vs {1000 * float(np.median(t['scoordnet'] + pnp)):.0f} ms", ratio_pnp)
    for part, label in (("tower", "feature tower"), ("cost_volume", "cost volume"), ("flow_unet", "flow U-Net"),
                        ("filter", "filter"), ("pnp", "RANSAC-PnP"), ("io_read", "I/O: PNG read + decode"),
                        ("io_write", "I/O: .npy write (atomic)")):
        v = np.asarray([s[part] for s in split])
        rows.add(f"full_split_{part}", f"{label}, ms per frame (ratio: share of SCoordNet's forward)",
                 f"{1000 * np.median(v):.1f} ms", float(np.median(v / t["scoordnet"])), ms=1000 * float(np.median(v)))
    overhead = float(np.median(t["kfnet"] - t["scoordnet"]))
    parts_sum = float(np.median(sum(np.asarray([s[p] for s in split])
                                    for p in ("tower", "cost_volume", "flow_unet", "filter", "pnp"))))
    rows.add("full_split_overhead", "KFNet step − SCoordNet forward vs the sum of tower, volume, U-Net, filter, "
             "PnP timed apart", f"{1000 * overhead:.0f} vs {1000 * parts_sum:.0f} ms", None,
             overhead_ms=1000 * overhead, parts_ms=1000 * parts_sum)
    for name, s in startup.items():
        rows.add(f"full_startup_{name}", f"start-up of {name} (first call{'s' if 'kfnet' in name else ''}: "
                 "tracing), not in the per-frame numbers", f"{s:.1f} s", None, seconds=s)
    for net in ("scoordnet", "kfnet"):
        r = float(np.median(t[f"{net}_bf16"] / t[net]))
        rows.add(f"full_bf16_{net}", f"{'SCoordNet forward' if net == 'scoordnet' else 'Relocalizer.step'} "
                 f"{policy} vs float32, per frame (ratio: bf16 time / fp32 time)",
                 f"{1000 * med[net + '_bf16']:.0f} vs {1000 * med[net]:.0f} ms (×{1 / r:.2f} speed)", r)
    for name, v in diffs.items():
        rows.add(f"full_bf16_diff_{name}", f"bf16 vs fp32 {name} map, same random weights: median point distance "
                 "/ median spread of the map", f"{np.median(v):.4f}", None, relative=float(np.median(v)))

    if not args.skip_full_cli:
        cli_rows(rows, "full_", test_folder, tmp / "full", model, images, widths)

    net = scoord
    frame = tf.constant(images[0][None])
    t_full = timed(lambda: sc(frame)[0].numpy(), args.full_repeat)
    gflops_net = conv_flops(net, hw) / t_full / 1e9
    m = args.matmul
    a, b = tf.random.normal([m, m]), tf.random.normal([m, m])
    matmul = tf.function(lambda: tf.matmul(a, b))
    t_mm = timed(lambda: matmul().numpy(), 3)
    gflops_mm = 2 * m**3 / t_mm / 1e9
    rows.add("full_gflops", f"SCoordNet ({width}×{height}) achieved GFLOP/s vs a {m}² matmul's",
             f"{gflops_net:.1f} vs {gflops_mm:.1f} GFLOP/s ({t_full:.2f} s per frame)", gflops_net / gflops_mm)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 2)[2])
    p.add_argument("--frames", type=int, default=480,
                   help="frames of the generated demo-size test sequence (480)")
    p.add_argument("--size", type=parse_size, default=(160, 120), help="its image size WxH (160x120)")
    p.add_argument("--full", action="store_true", help="also the paper's size (takes minutes)")
    p.add_argument("--full_frames", type=int, default=20, help="frames at the paper's size (20)")
    p.add_argument("--full_size", type=parse_size, default=(640, 480), help="that size WxH (640x480)")
    p.add_argument("--full_widths", type=float, nargs=2, default=(1.0, 1.0), metavar=("SCOORD", "OFLOW"),
                   help="network widths at that size (1.0 1.0: the paper's networks)")
    p.add_argument("--full_repeat", type=int, default=2, help="timed forward passes of the GFLOP/s row (2)")
    p.add_argument("--matmul", type=int, default=4096, help="size of the float32 matmul of the GFLOP/s row (4096)")
    p.add_argument("--only_full", action="store_true", help="--full without the demo-size rows")
    p.add_argument("--skip_full_cli", action="store_true", help="--full without the test CLI rows")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write every row (with its numbers) here")
    args = p.parse_args(argv)
    from common.errors import InputError

    if args.frames < 8 or args.full_frames < 3:
        raise InputError("--frames must be at least 8 and --full_frames at least 3")
    if args.json is not None and not args.json.parent.is_dir():
        raise InputError(f"--json {args.json}: folder {args.json.parent} does not exist")
    quiet_tensorflow()
    rows = Rows()
    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        if not args.only_full:
            demo_rows(rows, args, Path(tmp))
        if args.full or args.only_full:
            full_rows(rows, args, Path(tmp))
    load_after = os.getloadavg()
    w, h = args.size
    print(f"\nload average (1 min) {load[0]:.2f} at the start, {load_after[0]:.2f} at the end; "
          f"{os.cpu_count()} CPUs; demo size {w}x{h}, {args.frames} frames\n")
    print(rows.markdown())
    if args.json is not None:
        from common.locks import atomic_write_text

        atomic_write_text(args.json, json.dumps({"load_average": [load, load_after], "rows": rows.rows},
                                                indent=1) + "\n")
    return 0


if __name__ == "__main__":
    run(main)
