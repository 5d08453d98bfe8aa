"""How much can the temporal filter gain on this test sequence? Reruns KFNet's filter over a
KFNet test's measurement maps with the true flow (from labels and ground-truth poses) instead of
OFlowNet's, for a few constant process noises, and prints what bounds the gain:

- how alike consecutive measurement errors are (their correlation along the true flow): a filter
  averages away only what differs from frame to frame;
- what warping itself loses: the previous frame's ground truth warped by the true flow, against
  the current frame's (large at depth edges when map cells are large);
- the measurement's median coordinate error, KFNet's posterior, and the posterior with true flow.

    python kfnet/test.py ... --output_folder OUT --save_measurement
    python scripts/filter_oracle.py --input_folder IN --results_folder OUT --scene synthetic
"""

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse  # noqa: E402
import json  # noqa: E402

from common import formats  # noqa: E402
from common.cli import (  # noqa: E402
    HelpFormatter,
    add_config_flags,
    add_folder_flag,
    quiet_tensorflow,
    run,
)
from common.errors import InputError  # noqa: E402


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    add_folder_flag(parser, "input_folder", "the test folder: image_list.txt, label_list.txt, "
                    "pose_list.txt", required=True)
    add_folder_flag(parser, "results_folder", "output folder of kfnet/test.py --save_measurement",
                    required=True)
    add_config_flags(parser, scene_required=True)
    parser.add_argument("--process_sigma_cm", type=float, nargs="+", default=[0.5, 1.0, 2.0, 5.0, 10.0],
                        help="constant process noise σ_q of the true-flow filter, one run each")
    parser.add_argument("--output", help="also write the numbers to this JSON file")
    args = parser.parse_args(argv)
    if any(s <= 0 for s in args.process_sigma_cm):
        parser.error("--process_sigma_cm values must be positive")
    return args


def read_frames(data, results, camera):
    """oracle.Frame per test frame, from labels, poses and OUT/measurement/coord_<k>.npy."""
    import numpy as np

    from common.data.labels import read_label
    from common.geometry import ground_truth_flow
    from kfnet.oracle import Frame

    folder = Path(results) / "measurement"
    if not folder.is_dir():
        raise InputError(f"no measurement maps in {results}: run kfnet/test.py with --save_measurement")
    poses = data.read_poses()
    frames = []
    for k, new_sequence in enumerate(data.sequence_starts):
        path = formats.coord_file(folder, k)
        if not path.is_file():
            raise InputError(f"missing {path}: the KFNet test did not finish")
        measurement = np.load(path)
        if measurement.shape != (*data.map_hw, 4):
            raise InputError(f"{path} has shape {measurement.shape}, expected {(*data.map_hw, 4)} "
                             f"for {data.image_hw[1]}x{data.image_hw[0]} images")
        label = read_label(data.label_paths[k], data.image_hw, data.label_layouts[k])
        valid = (label[..., 3] > 0.5) & np.all(np.isfinite(label[..., :3]), axis=-1)
        xyz = np.where(valid[..., None], label[..., :3], 0.0)
        flow = np.zeros((*data.map_hw, 2))
        if not new_sequence:
            flow = np.where(valid[..., None], ground_truth_flow(xyz, poses[k - 1], camera), 0.0)
        frames.append(Frame(xyz, valid, measurement, np.minimum(flow, 1e6), bool(new_sequence)))
    return frames


def kfnet_posterior_cm(frames, results):
    import numpy as np

    errors = [np.linalg.norm(formats.read_map_file(formats.coord_file(results, k), 4, f.valid.shape)[..., :3]
                             - f.label, axis=-1)[f.valid] for k, f in enumerate(frames)]
    return 100 * float(np.median(np.concatenate(errors)))


def main(argv=None):
    args = parse_args(argv)
    if args.output and Path(args.output).is_dir():
        raise InputError(f"--output {args.output} is a folder, not a file")
    quiet_tensorflow()
    from common.config import intrinsics, load_config
    from common.data.scene import load_input_folder
    from kfnet.oracle import analyse

    cfg = load_config(args.scene, args.config)
    data = load_input_folder(args.input_folder, cfg.get("sequence_length"), check_images=False)
    frames = read_frames(data, args.results_folder, intrinsics(cfg))
    for k in range(len(frames)):  # before minutes of analysis
        if not formats.coord_file(args.results_folder, k).is_file():
            raise InputError(f"missing {formats.coord_file(args.results_folder, k)}: --results_folder must be a "
                             "kfnet/test.py output folder (its posterior maps beside measurement/)")
    try:
        out = analyse(frames, [s / 100 for s in args.process_sigma_cm])
    except ValueError as e:
        raise InputError(f"{args.input_folder}: {e}") from None
    out["kfnet_posterior_median_cm"] = kfnet_posterior_cm(frames, args.results_folder)
    print(f"true flow: median {out['true_flow_median_cells']:.3f} cells per frame")
    print(f"correlation of consecutive measurement errors along the true flow: {out['error_correlation']:.3f} "
          f"(averaging two such frames removes {100 * out['two_frame_gain']:.1f} % of the error's spread)")
    print(f"warp loss (ground truth warped by the true flow): median {out['warp_loss_median_cm']:.2f} cm, "
          f"mean {out['warp_loss_mean_cm']:.2f} cm")
    print("\n| coordinates | median error (cm) |\n|---|---|")
    print(f"| measurement | {out['measurement_median_cm']:.2f} |")
    print(f"| KFNet posterior (OFlowNet's flow and noise) | {out['kfnet_posterior_median_cm']:.2f} |")
    for sigma, median in out["true_flow_posterior_median_cm"].items():
        print(f"| posterior with the true flow, σ_q = {100 * sigma:g} cm | {median:.2f} |")
    print(f"| posterior with the true flow, σ_q = the warp loss of each cell (at least "
          f"{min(args.process_sigma_cm):g} cm) | {out['true_flow_known_loss_posterior_median_cm']:.2f} |")
    if args.output:
        out["true_flow_posterior_median_cm"] = {f"{100 * s:g}": m for s, m in
                                                out["true_flow_posterior_median_cm"].items()}
        tmp = Path(args.output).with_name(Path(args.output).name + ".tmp")
        tmp.write_text(json.dumps(out, indent=2) + "\n")
        tmp.replace(args.output)


if __name__ == "__main__":
    run(main)
