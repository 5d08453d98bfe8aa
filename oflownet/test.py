"""Run OFlowNet on every consecutive frame pair of an input folder; write <k-1>_<k>_flow.npy.

    python oflownet/test.py --input_folder IN --output_folder OUT --model_folder M [--scene S]
"""

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import numpy as np  # noqa: E402

from common.cli import quiet_tensorflow, run  # noqa: E402

EPILOG = """Each file is float32 h x w x 3, as the original writes it: flow u, v in map cells from a cell of
frame k-1 to its position in frame k, and confidence 1/sigma_q. With label_list.txt, frame k's labels
warped back by the flow are compared with frame k-1's (cm); with pose_list.txt too, the flow is
compared with the flow the poses give (cells), using the intrinsics of --scene/--config."""


def label_errors_cm(prior_hw3, usable_hw, coords_cur_hw3, mask_cur_hw1):
    """[n] distances (cm) of a prior to the current labels, over usable cells with a valid label."""
    valid = (mask_cur_hw1[..., 0] > 0.5) & usable_hw
    return 100.0 * np.linalg.norm(prior_hw3 - coords_cur_hw3, axis=-1)[valid]


def ground_truth_flow(world_cur_hw3, mask_cur_hw1, world_prev_hw3, mask_prev_hw1, pose_prev_cw,
                      camera_33):
    """([h, w, 2] flow in cells that frame k−1's pose and intrinsics give each labelled cell of frame k,
    [h, w] bool where it is known: in front, in view, and not hidden in frame k−1)."""
    from common.geometry import ground_truth_flow as projected_flow
    from common.geometry import transform_points
    from common.poses import invert_rigid

    h, w = mask_cur_hw1.shape[:2]
    flow = projected_flow(world_cur_hw3, pose_prev_cw, camera_33)
    jj, ii = np.meshgrid(np.arange(w), np.arange(h))
    pos = flow + np.stack([jj, ii], axis=-1)
    pos = np.where(np.isfinite(pos), pos, -1.0)  # behind the previous camera: off the map
    x, y = pos[..., 0], pos[..., 1]
    inside = (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)
    to_cam = invert_rigid(pose_prev_cw)
    z = transform_points(to_cam, world_cur_hw3)[..., 2]
    # Visibility: the previous label nearest the projection must be valid and about as far from
    # the camera (10 % of the depth, loose enough for slanted surfaces half a cell away).
    ni = np.clip(np.rint(pos[..., 1]), 0, h - 1).astype(int)
    nj = np.clip(np.rint(pos[..., 0]), 0, w - 1).astype(int)
    near_z = transform_points(to_cam, world_prev_hw3[ni, nj])[..., 2]
    visible = (mask_prev_hw1[ni, nj, 0] > 0.5) & (np.abs(near_z - z) <= 0.1 * np.abs(z))
    return np.where(np.isfinite(flow), flow, 0.0), (mask_cur_hw1[..., 0] > 0.5) & inside & visible


class PairScores:
    """Per-pair and overall errors of the flow against labels (and poses, when given).

    `add` takes the flow of the cells of a frame `a` into a frame `b` (the flow file's k−1 → k),
    frame b's labels sampled by it, and the labels of a (label_cur) and b (label_prev, the
    sampled frame, in the filter's naming)."""

    def __init__(self, camera_33, poses_n44, to_world_44):
        self.camera, self.poses, self.to_world = camera_33, poses_n44, to_world_44
        self.coord_cm, self.still_cm, self.flow_cells, self.gt_cells = [], [], [], []

    def add(self, k, flow_hw3, prior_hw3, usable_hw, label_prev, label_cur):
        """Scores pair (k − 1, k), frame k−1's cells flowing into frame k; returns its report line."""
        (coords_prev, mask_prev), (coords_cur, mask_cur) = label_prev, label_cur
        err = label_errors_cm(prior_hw3, usable_hw, coords_cur, mask_cur)
        self.coord_cm.append(err)
        # Baseline: no motion at all, i.e. the previous label at the same cell.
        self.still_cm.append(label_errors_cm(coords_prev, mask_prev[..., 0] > 0.5, coords_cur, mask_cur))
        line = f"pair {k - 1}_{k}: warped label error mean {_mean(err):.2f} cm"
        if self.poses is not None:
            from common.geometry import transform_points

            gt, known = ground_truth_flow(transform_points(self.to_world, coords_cur), mask_cur,
                                          transform_points(self.to_world, coords_prev), mask_prev,
                                          self.poses[k], self.camera)
            epe = np.linalg.norm(flow_hw3[..., :2] - gt, axis=-1)[known]
            self.flow_cells.append(epe)
            self.gt_cells.append(np.linalg.norm(gt, axis=-1)[known])
            line += f", flow error {_mean(epe):.3f} cells"
        return line

    def summary(self):
        err, still = np.concatenate(self.coord_cm), np.concatenate(self.still_cm)
        out = {"warped_label_mean_cm": _mean(err), "warped_label_median_cm": _median(err),
               "warped_label_within_5cm": _mean(err <= 5.0), "zero_flow_mean_cm": _mean(still),
               "label_cells": int(err.size), "labelled_pairs": len(self.coord_cm)}
        if self.flow_cells:
            epe, gt = np.concatenate(self.flow_cells), np.concatenate(self.gt_cells)
            out.update(flow_error_mean_cells=_mean(epe), flow_error_median_cells=_median(epe),
                       ground_truth_flow_mean_cells=_mean(gt), flow_cells=int(epe.size))
        return out

    def summary_lines(self):
        s = self.summary()
        lines = [f"OFlowNet: previous labels warped onto the current frame ({s['labelled_pairs']} pairs, "
                 f"{s['label_cells']} cells): mean {s['warped_label_mean_cm']:.2f} cm, median "
                 f"{s['warped_label_median_cm']:.2f} cm, {100 * s['warped_label_within_5cm']:.1f} % within "
                 f"5 cm (zero flow: mean {s['zero_flow_mean_cm']:.2f} cm)"]
        if "flow_error_mean_cells" in s:
            lines.append(f"OFlowNet: flow error mean {s['flow_error_mean_cells']:.3f} cells, median "
                         f"{s['flow_error_median_cells']:.3f} cells (ground-truth flow mean "
                         f"{s['ground_truth_flow_mean_cells']:.3f} cells = the error of zero flow; "
                         f"{s['flow_cells']} cells)")
        return lines


def order_symmetry(plus_sq, minus_sq):
    """‖f + g‖ / ‖f − g‖ from Σ‖f + g‖² and Σ‖f − g‖² over the cells of many pairs, f the flow of a
    pair and g that of the same pair with its frames swapped.

    About 0 when swapping the frames reverses the flow (the network matches them); above 1 when
    the flow hardly depends on their order: the network has learned one motion for every pair (the
    training sequences' usual direction) instead of matching. NaN without pairs.
    """
    return float(np.sqrt(plus_sq / minus_sq)) if minus_sq > 0 else (float("inf") if plus_sq > 0 else float("nan"))


ORDER_WARNING = 1.5  # order_symmetry above this: the flow hardly depends on the frames' order
ORDER_PAIRS = 100  # pairs the order check runs on (a property of the network, not of each pair)


def _mean(x):
    return float(np.mean(x)) if np.size(x) else float("nan")


def _median(x):
    return float(np.median(x)) if np.size(x) else float("nan")


def load_network(model_folder, image_hw, cfg_full=None, step=None):
    """(OFlowNet built for image_hw and loaded, checkpoint path) from an OFlowNet or KFNet model
    folder of this project, or an original TF1 release."""
    from common.test_cli import build_networks
    from oflownet.model import OFlowNet

    nets, ckpt = build_networks(model_folder, {"oflownet": lambda w: OFlowNet(width=w).build_for(image_hw)},
                                cfg_full, step=step)
    return nets["oflownet"], ckpt


def main(argv=None):
    from common.test_cli import load_test_folder, test_settings, testing_parser

    p = testing_parser(__doc__.splitlines()[0])
    p.epilog = EPILOG
    args = p.parse_args(argv)
    quiet_tensorflow(devices=True)
    import time

    import tensorflow as tf
    from tqdm import tqdm

    from common import formats
    from common.config import intrinsics, load_config
    from common.data.pipelines import test_dataset
    from common.errors import InputError
    from common.filter import warped_labels
    from common.poses import invert_rigid

    if args.batch_size <= 0:
        raise InputError(f"--batch_size must be positive, got {args.batch_size}")
    cfg_full = load_config(args.scene, args.config)
    cfg = test_settings(args, "oflownet")
    data, source = load_test_folder(args, cfg.get("sequence_length"))
    net, ckpt = load_network(args.model_folder, data.image_hw, cfg_full, step=args.checkpoint)
    out = Path(args.output_folder)
    starts = data.sequence_starts
    signature = {"stage": "oflownet", "checkpoint": ckpt, "sequence_length": cfg.get("sequence_length"),
                 **source}
    formats.open_output_folder(out, signature)

    h, w = data.map_hw
    camera = intrinsics(cfg)
    poses = None
    if data.has_labels and data.pose_paths is not None:
        if 0 <= camera[0, 2] <= data.image_hw[1] and 0 <= camera[1, 2] <= data.image_hw[0]:
            poses = data.read_poses()
        else:
            print(f"note: the config's principal point ({camera[0, 2]:g}, {camera[1, 2]:g}) lies outside "
                  f"the {data.image_hw[1]}x{data.image_hw[0]} images; no flow error (pass --scene)")
    to_world = invert_rigid(data.transform)

    @tf.function(input_signature=[tf.TensorSpec([None, *data.image_hw, 3], tf.float32)])
    def features(images):
        return net.features(images)

    feat_spec = tf.TensorSpec([None, h, w, net.tower.channels], tf.float32)

    @tf.function(input_signature=[feat_spec, feat_spec])
    def flow_of(feat_prev, feat_cur):
        flow, sigma_q = net.flow_from_features(feat_prev, feat_cur)
        return tf.concat([flow, 1.0 / tf.maximum(sigma_q, 1e-12)], axis=-1)

    @tf.function(input_signature=[tf.TensorSpec([None, h, w, 2], tf.float32),
                                  tf.TensorSpec([None, h, w, 3], tf.float32),
                                  tf.TensorSpec([None, h, w, 1], tf.float32)])
    def warp_labels(flow, coords_prev, mask_prev):
        return warped_labels(flow, coords_prev, mask_prev)

    pairs = [k for k in range(len(data)) if not starts[k]]
    todo = {k for k in pairs if not formats.flow_file(out, k).exists()}
    if len(todo) < len(pairs):
        print(f"{len(pairs) - len(todo)} of {len(pairs)} flow maps already in {out}; computing the rest")
    needed = todo | {k - 1 for k in todo}  # frames whose features a remaining pair uses
    scores = PairScores(camera, poses, to_world) if data.has_labels else None
    last = None  # (k, features, label) of the previous batch's last frame
    computed, net_seconds, t0 = 0, 0.0, time.time()
    order_sums = [0.0, 0.0, 0]  # Σ‖f + g‖², Σ‖f − g‖², pairs: g = the flow with the frames swapped
    bar = tqdm(total=len(data), desc="oflownet test", unit="frame", disable=not args.progress)
    for batch in test_dataset(data, args.batch_size):
        ks = [int(k) for k in batch["index"].numpy()]
        feats = None
        if needed & set(ks):
            t = time.time()
            feats = features(batch["image"])
            net_seconds += time.time() - t
            computed += len(ks)
        frames = [(k, None if feats is None else feats[i],
                   (batch["coords"][i].numpy(), batch["mask"][i].numpy()) if data.has_labels else None)
                  for i, k in enumerate(ks)]
        chain = ([last] if last is not None else []) + frames
        links = [(a, b) for a, b in zip(chain[:-1], chain[1:]) if not starts[b[0]]]
        run_pairs = [(a, b) for a, b in links if b[0] in todo]
        flows = {}
        if run_pairs:
            t = time.time()
            # The written direction is k−1 → k: frame k−1's cells are the "current" ones, whose
            # position is sought in frame k (flow_from_features gives current → previous).
            feats_prev = tf.stack([a[1] for a, _ in run_pairs])
            feats_cur = tf.stack([b[1] for _, b in run_pairs])
            result = flow_of(feats_cur, feats_prev).numpy()
            net_seconds += time.time() - t
            n = min(len(run_pairs), ORDER_PAIRS - order_sums[2])  # the order check's pairs: the first ones
            if n > 0:
                swapped = flow_of(feats_prev[:n], feats_cur[:n]).numpy()[..., :2]
                order_sums[0] += float(np.sum(np.square(result[:n, ..., :2] + swapped)))
                order_sums[1] += float(np.sum(np.square(result[:n, ..., :2] - swapped)))
                order_sums[2] += n
            for (_, b), f in zip(run_pairs, result):
                formats.save_npy(formats.flow_file(out, b[0]), f)
                flows[b[0]] = f
        if scores is not None and links:
            flow = np.stack([flows[b[0]] if b[0] in flows
                             else formats.read_map_file(formats.flow_file(out, b[0]), 3, (h, w), "flow file")
                             for _, b in links])
            prior, usable = warp_labels(flow[..., :2], np.stack([b[2][0] for _, b in links]),
                                        np.stack([b[2][1] for _, b in links]))
            for n, (a, b) in enumerate(links):
                line = scores.add(b[0], flow[n], prior[n].numpy(), usable[n].numpy(), b[2], a[2])
                if not args.quiet:
                    bar.write(line)
        last = frames[-1]
        bar.update(len(ks))
    bar.close()
    seconds = time.time() - t0

    summary = {"pairs": len(pairs), "computed_frames": computed,
               "frames_per_second": computed / seconds if computed else None,
               "network_frames_per_second": computed / net_seconds if computed and net_seconds else None}
    if scores is not None:
        summary.update(scores.summary())
        for line in scores.summary_lines():
            print(line)
    if order_sums[2]:
        summary["order_symmetry"] = order_symmetry(*order_sums[:2])
        print(f"OFlowNet: order check ‖f + g‖ / ‖f − g‖ = {summary['order_symmetry']:.2f} over {order_sums[2]} pairs "
              f"(g: the flow with the two frames swapped; about 0: the flow reverses with them)")
        if not summary["order_symmetry"] <= ORDER_WARNING:
            print(f"warning: OFlowNet's flow hardly depends on the order of the frames "
                  f"({summary['order_symmetry']:.2f} > {ORDER_WARNING:g}): it has learned one motion for every "
                  f"pair instead of matching them, and KFNet's prior will be poor; train it longer or on "
                  f"pairs further apart (config max_gap) "
                  f"(docs/results.md, 'OFlowNet that does not match')")
    formats.mark_complete(out, {"oflownet": summary})
    if computed:
        print(f"{computed} frames in {seconds:.1f} s: {summary['frames_per_second']:.1f} frames/s "
              f"(network alone {summary['network_frames_per_second']:.1f} frames/s)")
    print(f"wrote {len(pairs)} flow maps to {out}")
    return 0


if __name__ == "__main__":
    run(main)
