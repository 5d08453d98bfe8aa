"""Stream the frames through KFNet in order; write the posterior coord_<k>.npy, evaluate on labels.

    python kfnet/test.py --input_folder IN --output_folder OUT --model_folder M --scene chess [--nis]

Each frame gets one pass of SCoordNet (measurement) and of OFlowNet's feature tower, plus the
flow from the previous frame; the filter state is carried from frame to frame and restarts from
the measurement at every sequence start (docs/reference.md §4).
"""

import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from common.cli import quiet_tensorflow, run  # noqa: E402

MEASUREMENT, PRIOR = "measurement", "prior"


def main(argv=None):
    from common.test_cli import test_settings, testing_parser

    parser = testing_parser(__doc__.splitlines()[0])
    parser.add_argument("--nis", action="store_true", default=None,
                        help="cells failing the innovation test (NIS > 7.815) are written out as their "
                             "measurement (coordinates; the written sigma and the filter state stay the "
                             "Kalman posterior's, as in the original)")
    parser.add_argument("--nis_threshold", type=float, default=7.815,
                        help="the innovation test's bound (chi-square, 3 degrees of freedom: 7.815 = 95 %%)")
    parser.add_argument("--save_measurement", action="store_true",
                        help="also write the measurement and prior maps to OUT/measurement, OUT/prior")
    args = parser.parse_args(argv)
    quiet_tensorflow(devices=True)
    import numpy as np
    import tensorflow as tf
    from tqdm import tqdm

    from common import filter as kf
    from common import outputs
    from common.config import load_config
    from common.data.pipelines import test_dataset
    from common.data.scene import load_input_folder
    from common.errors import InputError
    from common.evaluation import CoordErrors
    from common.geometry import transform_points
    from kfnet.model import KFNet
    from common.poses import invert_rigid
    from common.test_cli import build_networks

    if args.batch_size <= 0:
        raise InputError(f"--batch_size must be positive, got {args.batch_size}")
    cfg = test_settings(args, "kfnet")
    use_nis = bool(cfg.get("nis")) if args.nis is None else True
    data = load_input_folder(args.input_folder, cfg.get("sequence_length"), require_labels=False)
    nets, ckpt = build_networks(args.model_folder, ["scoordnet", "oflownet"], data.image_hw,
                                load_config(args.scene, args.config), step=args.checkpoint)
    model = KFNet(nets["scoordnet"], nets["oflownet"])
    out = Path(args.output_folder)
    signature = {"stage": "kfnet", "checkpoint": ckpt, "nis": use_nis, "nis_threshold": args.nis_threshold,
                 "save_measurement": args.save_measurement,
                 "input_folder": str(Path(args.input_folder).resolve())}
    outputs.open_output_folder(out, signature)
    if args.save_measurement:
        (out / MEASUREMENT).mkdir(exist_ok=True)
        (out / PRIOR).mkdir(exist_ok=True)
    to_world = invert_rigid(data.transform)
    h, w = data.map_hw
    channels = model.oflownet.tower.channels

    @tf.function(input_signature=[tf.TensorSpec([None, *data.image_hw, 3], tf.float32),
                                  tf.TensorSpec([1, h, w, channels], tf.float32)])
    def networks(images, feat_before):
        z, r, feats = model.networks(images)
        previous = tf.concat([feat_before, feats[:-1]], 0)
        flow, sigma_q = model.oflownet.flow_from_features(previous, feats)
        return z, r, feats, flow, tf.square(sigma_q)

    map_spec = [tf.TensorSpec([1, h, w, c], tf.float32) for c in (3, 1, 2, 1, 3, 1)]

    @tf.function(input_signature=map_spec)
    def filter_step(post_x, post_p, flow, q, z, r):
        prior_x, prior_p = kf.predict(post_x, post_p, flow, q)
        nis = kf.nis(prior_x, prior_p, z, r)
        x, p = kf.update(prior_x, prior_p, z, r)
        # --nis changes what is written, not the state carried to the next frame (as the original).
        shown = kf.nis_output(x, prior_x, prior_p, z, r, args.nis_threshold) if use_nis else x
        return prior_x, prior_p, x, p, nis, shown

    # Resume: the filter state cannot be read back, so restart at the sequence holding the first
    # frame without an output; every sequence before it is complete.
    missing = [k for k in range(len(data)) if not outputs.coord_file(out, k).exists()]
    start = int(np.flatnonzero(data.sequence_ids == data.sequence_ids[missing[0]])[0]) if missing else len(data)
    if 0 < start < len(data):
        print(f"frames 0-{start - 1} already in {out}; continuing at frame {start}")

    errors = {name: CoordErrors(name) for name in ("measurement", "prior", "posterior")}
    nis_pass, nis_cells = 0, 0

    def evaluate(k, name, coords_world, gt_world, mask):
        return errors[name].add(k, coords_world, gt_world, mask)[0]

    def world(x):
        return transform_points(to_world, x).astype(np.float32)

    if data.has_labels:  # frames finished by an earlier run still count in the summary
        reader = iter(test_dataset(data, args.batch_size))
        for batch in reader:
            for i, k in enumerate(batch["index"].numpy()):
                if k >= start:
                    break
                gt, mask = world(batch["coords"][i].numpy()), batch["mask"][i].numpy()
                evaluate(k, "posterior", np.load(outputs.coord_file(out, k))[..., :3], gt, mask)
                for name, sub in ((MEASUREMENT, MEASUREMENT), ("prior", PRIOR)):
                    f = outputs.coord_file(out / sub, k)
                    if f.exists():
                        evaluate(k, name, np.load(f)[..., :3], gt, mask)
            else:
                continue
            break

    bar = tqdm(total=len(data), initial=start, desc="kfnet test", unit="frame", disable=not args.progress)
    feat_before = tf.zeros([1, h, w, channels])
    state = None
    t0, frames = time.time(), 0
    for batch in test_dataset(data, args.batch_size, start=start):
        z, r, feats, flow, q = networks(batch["image"], feat_before)
        feat_before = feats[-1:]
        for i, k in enumerate(batch["index"].numpy()):
            k = int(k)
            zi, ri = z[i:i + 1], r[i:i + 1]
            prior = None
            if bool(batch["new_sequence"][i]) or state is None:
                state = (zi, ri)
                shown = zi
            else:
                prior_x, prior_p, x, p, nis, shown = filter_step(state[0], state[1], flow[i:i + 1],
                                                                 q[i:i + 1], zi, ri)
                state, prior = (x, p), (prior_x, prior_p)
                nis_pass += int(np.sum(nis.numpy() <= args.nis_threshold))
                nis_cells += int(np.prod(nis.shape))
            post_world = world(shown.numpy()[0])
            outputs.save_npy(outputs.coord_file(out, k),
                             outputs.coord_output(post_world, np.sqrt(state[1].numpy()[0])))
            maps = {"posterior": post_world, "measurement": world(zi.numpy()[0])}
            if prior is not None:
                maps["prior"] = world(prior[0].numpy()[0])
            if args.save_measurement:
                outputs.save_npy(outputs.coord_file(out / MEASUREMENT, k),
                                 outputs.coord_output(maps["measurement"], np.sqrt(ri.numpy()[0])))
                if prior is not None:
                    outputs.save_npy(outputs.coord_file(out / PRIOR, k),
                                     outputs.coord_output(maps["prior"], np.sqrt(prior[1].numpy()[0])))
            if data.has_labels:
                gt, mask = world(batch["coords"][i].numpy()), batch["mask"][i].numpy()
                cm = {name: evaluate(k, name, m, gt, mask) for name, m in maps.items()}
                if not args.quiet:
                    parts = [f"{name} {cm[name]:.2f} cm" for name in ("measurement", "prior", "posterior")
                             if name in cm]
                    bar.write(f"frame {k}: median error " + ", ".join(parts))
            frames += 1
        bar.update(len(batch["index"]))
    bar.close()
    elapsed = time.time() - t0
    summary = {"frames_per_second": frames / elapsed if frames else None}
    if nis_cells:
        summary["nis_pass"] = nis_pass / nis_cells
    if data.has_labels:
        for name, e in errors.items():
            summary[name] = e.summary()
            print(e.summary_line())
    if nis_cells:
        print(f"NIS test passed by {100 * nis_pass / nis_cells:.1f} % of cells "
              f"(threshold {args.nis_threshold:g}{', failing cells take the measurement' if use_nis else ''})")
    outputs.mark_complete(out, summary)
    if frames:
        print(f"{frames} frames in {elapsed:.1f} s ({frames / elapsed:.2f} frames/s); posterior maps in {out}")
    return 0


if __name__ == "__main__":
    run(main)
