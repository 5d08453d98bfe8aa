"""Camera poses from scene-coordinate maps (coord_<k>.npy) by confidence-guided RANSAC-PnP.

    python pnp/solve.py <coord folder> <output pose file> [--gt pose_list.txt] [--thread_num N]

Writes the pose file (ours, or ACE's / DSAC*'s with --format), a TUM trajectory
`<stem>.tum.txt` (with --gt also the ground truth `<stem>.gt.tum.txt`, and with several
sequences one pair `<stem>.<sequence>[.gt].tum.txt` each) and a summary `<stem>.summary.json`
(errors when ground truth is given, time per frame) next to it (docs/reference.md §2, §6).
`solve_frame` is the one-frame solver.
"""

import os
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parents[1])
if __name__ == "__main__":
    # Frames run in parallel processes; BLAS threads inside each would only fight them.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import multiprocessing  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

from common.cli import add_config_flags, run  # noqa: E402
from common.config import intrinsics, load_config, override  # noqa: E402
from common.data.labels import HEADER_ERRORS  # noqa: E402
from common.errors import InputError  # noqa: E402
from common.formats import (  # noqa: E402
    FORMATS,
    PoseRecord,
    find_coord_files,
    foreign_lines,
    pnp_output_paths,
    pose_file_text,
    read_timestamps,
    tum_text,
)
from common.geometry import cell_pixels  # noqa: E402
from common.locks import atomic_write_texts, lock_folder  # noqa: E402
from common.poses import INDOOR_THRESHOLDS, OUTDOOR_THRESHOLDS, pose_errors  # noqa: E402
from pnp.evaluate import (  # noqa: E402
    format_summary,
    frames_and_sequences,
    load_ground_truth,
    summarize,
)
from pnp.ransac import ransac_pnp  # noqa: E402

# 10 px at 7-Scenes' f = 525 (640×480): ~1.1° of view angle, i.e. 4 cm sideways at 2 m, so
# cells with a few centimetres of error still count. Other focal lengths keep the angle.
THRESHOLD_PX_AT_525 = 10.0


def default_threshold(K):
    """Inlier threshold in pixels for camera matrix K: 10 px scaled by focal / 525."""
    return THRESHOLD_PX_AT_525 * float(K[0, 0] + K[1, 1]) / (2 * 525.0)


def usable_cells(coords_hw3, confidence_hw, min_confidence=0.0, drop_ratio=0.1):
    """[h, w] mask of cells worth using: finite, confidence > 0 and ≥ min_confidence, and not
    hopeless — confidence ≥ drop_ratio × the median confidence of the frame's finite cells."""
    ok = np.all(np.isfinite(coords_hw3), axis=-1) & np.isfinite(confidence_hw) & (confidence_hw > 0)
    ok &= confidence_hw >= min_confidence
    if ok.any():
        ok &= confidence_hw >= drop_ratio * np.median(confidence_hw[ok])
    return ok


def solve_frame(coords, confidence, K, cell=8, threshold=None, hypotheses=256, seed=0,
                min_confidence=0.0, drop_ratio=0.1, sampling="confidence", weighting="confidence",
                refine_iterations=10, min_inliers=8):
    """Camera-to-world pose of one frame from its scene-coordinate map.

    Args:
      coords: [h, w, 3] world coordinates, metres. confidence: [h, w] 1/σ (1/metres).
      K: 3×3 camera matrix of the image; cell (i, j) is pixel (cell·j, cell·i) (common.geometry.
         cell_pixels).
      threshold: inlier reprojection error in pixels (None: `default_threshold(K)`).
      hypotheses: most minimal samples. seed: int or tuple of ints (numpy Generator seed).
      min_confidence, drop_ratio: see `usable_cells`. sampling, weighting: "confidence" or
      "uniform". refine_iterations: Gauss-Newton steps per final refinement round.
      min_inliers: fewer inliers than this is a failure.
    Returns:
      (pose_cw [4, 4] or None on failure, inlier_mask [h, w] bool, info dict with inliers,
      usable, samples, hypotheses, time_ms and failure (None or the reason)).
    Raises:
      ValueError: coords is not [h, w, 3] or confidence not [h, w].
    """
    start = time.perf_counter()
    coords = np.asarray(coords)
    confidence = np.asarray(confidence)
    if coords.ndim != 3 or coords.shape[2] != 3 or confidence.shape != coords.shape[:2]:
        raise ValueError(f"coords must be [h, w, 3] and confidence [h, w], got "
                         f"{coords.shape} and {confidence.shape}")
    h, w = confidence.shape
    K = np.asarray(K, dtype=np.float64)
    thr = default_threshold(K) if threshold is None else float(threshold)
    usable = usable_cells(coords, confidence, min_confidence, drop_ratio)
    info = {"inliers": 0, "usable": int(usable.sum()), "samples": 0, "hypotheses": 0,
            "failure": None}
    mask = np.zeros((h, w), bool)
    if info["usable"] < 4:
        info["failure"] = f"only {info['usable']} usable cells (need at least 4)"
    else:
        ii, jj = np.nonzero(usable)
        pixels = cell_pixels(h, w, cell)[ii, jj]
        # Absurd but finite inputs may overflow; such hypotheses are dropped, not reported.
        with np.errstate(all="ignore"):
            result = ransac_pnp(pixels, coords[ii, jj].astype(np.float64),
                                confidence[ii, jj].astype(np.float64), K,
                                np.random.default_rng(seed),
                                threshold=thr, hypotheses=hypotheses, sampling=sampling,
                                weighting=weighting, refine_iterations=refine_iterations,
                                min_inliers=min_inliers, min_area=2.0 * cell * cell)
        info.update(samples=result["samples"], hypotheses=result["hypotheses"],
                    failure=result["failure"])
        if result["failure"] is None:
            mask[ii, jj] = result["inliers"]
            info["inliers"] = int(mask.sum())
    pose_cw = None
    if info["failure"] is None:
        rot, t = result["rot"], result["t"]
        pose_cw = np.eye(4)
        pose_cw[:3, :3] = rot.T
        pose_cw[:3, 3] = -rot.T @ t
    info["time_ms"] = 1000.0 * (time.perf_counter() - start)
    return pose_cw, mask, info


def _solve_file(task):
    """Worker: (k, pose_cw or None, failure or None, inliers, solve time ms or None) of one file."""
    k, path, K, options = task
    try:
        data = np.load(path, allow_pickle=False)
        data = np.asarray(data, dtype=np.float32)
    except (OSError, *HEADER_ERRORS) as e:
        return k, None, f"unreadable coord file ({type(e).__name__}: {e})", 0, None
    if data.ndim != 3 or data.shape[2] != 4 or 0 in data.shape:
        return k, None, f"coord file has shape {tuple(data.shape)}, expected (h, w, 4)", 0, None
    try:
        pose, _, info = solve_frame(data[..., :3], data[..., 3], K, seed=(options["seed"], k),
                                    **{n: v for n, v in options.items() if n != "seed"})
    except Exception as e:  # noqa: BLE001 — one odd frame must not end a run of thousands
        return k, None, f"solver error ({type(e).__name__}: {e})", 0, None
    return k, pose, info["failure"], info["inliers"], info["time_ms"]


def solve_files(files, K, options, workers, progress=True):
    """{k: (pose, failure, inliers, ms)} for [(k, path)] in `workers` processes, with progress."""
    tasks = [(k, path, K, options) for k, path in files]
    out = {}
    if workers <= 1 or len(tasks) == 1:
        results = map(_solve_file, tasks)
        for k, *rest in tqdm(results, total=len(tasks), desc="PnP", unit="frame", disable=not progress):
            out[k] = rest
        return out
    chunk = max(1, len(tasks) // (8 * workers))
    with multiprocessing.Pool(workers) as pool:
        for k, *rest in tqdm(pool.imap_unordered(_solve_file, tasks, chunk), total=len(tasks),
                             desc="PnP", unit="frame", disable=not progress):
            out[k] = rest
    return out


def tum_paths(pose_file, seq_names, has_gt):
    """{(sequence id or None, is ground truth): TUM file} — None is all frames; sequences get
    their own pair `<stem>.<name>[.gt].tum.txt` only when there are several."""
    _, tum_file, _ = pnp_output_paths(pose_file)
    stem = tum_file.name[: -len(".tum.txt")]
    names = list(seq_names.values())
    out = {}
    for sid in [None] + (sorted(seq_names) if len(seq_names) > 1 else []):
        base = stem
        if sid is not None:
            name = seq_names[sid]
            base += f".{name}" if names.count(name) == 1 else f".{name}-{sid}"
        out[(sid, False)] = tum_file.with_name(base + ".tum.txt")
        if has_gt:
            out[(sid, True)] = tum_file.with_name(base + ".gt.tum.txt")
    return out


def _finite_or_none(value):
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite_or_none(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def _positive(kind):
    def parse(text):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value
    return parse


def _non_negative_int(text):
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def build_parser():
    parser = argparse.ArgumentParser(
        description="Camera poses from coord_<k>.npy scene-coordinate maps by confidence-guided "
                    "RANSAC-PnP; with --gt, errors per sequence and overall.",
        epilog="Writes OUTPUT (lines 'k image qw qx qy qz tx ty tz [t_err_cm r_err_deg]', "
               "camera-to-world; failed frames 'k image FAILED reason'), OUTPUT-stem.tum.txt "
               "(TUM trajectory, timestamp = frame index) and OUTPUT-stem.summary.json.")
    parser.add_argument("coord_folder", help="folder with coord_<k>.npy files (float32 h×w×4: "
                        "world x, y, z, confidence 1/σ); k is the frame's line in image_list.txt")
    parser.add_argument("output", help="pose file to write, e.g. poses.txt")
    parser.add_argument("--gt", help="pose_list.txt: one 7-Scenes .pose.txt (4×4 camera-to-world) "
                        "per frame; an image_list.txt beside it gives image names and sequences")
    parser.add_argument("--image_list", help="image_list.txt for image names and sequence "
                        "boundaries (default: the one beside --gt, if any)")
    parser.add_argument("--format", choices=FORMATS, default="kfnet",
                        help="pose file format: kfnet (above); ace: ACE's poses_<scene>.txt "
                             "lines 'name qw qx qy qz tx ty tz r_err_deg t_err_m inliers', "
                             "world-to-camera, names as ACE's setup gives them "
                             "(seq-XX-frame-NNNNNN.color.png), sorted; dsacstar: the same "
                             "without inliers (default kfnet)")
    parser.add_argument("--timestamps", help="timestamps for the TUM files, one per line of "
                        "the image list (default: timestamps.txt beside the image list, if "
                        "any, else frame indices)")
    parser.add_argument("--table", choices=("indoor", "outdoor"), default="indoor",
                        help="thresholds of the printed table: indoor 10cm/5d, 5/5, 2/2, 1/1; "
                             "outdoor 25cm/2d, 50cm/5d, 5m/10d (the summary holds all)")
    add_config_flags(parser)
    parser.add_argument("--focal", type=_positive(float),
                        help="focal length in pixels (overrides the config)")
    parser.add_argument("--focal_y", type=_positive(float),
                        help="vertical focal length fy in pixels (default: --focal, else the config's)")
    parser.add_argument("--cx", type=float, help="principal point x, pixels (overrides the config)")
    parser.add_argument("--cy", type=float, help="principal point y, pixels (overrides the config)")
    parser.add_argument("--cell", type=_positive(int), default=8,
                        help="pixels per map cell; cell (i, j) is pixel "
                             "(cell·j, cell·i) (8)")
    parser.add_argument("--threshold", type=_positive(float),
                        help="inlier reprojection threshold in pixels (default 10 at f = 525, "
                             "scaled with the focal length)")
    parser.add_argument("--hypotheses", type=_positive(int), default=256,
                        help="most minimal samples per frame; fewer when inliers are clear (256)")
    parser.add_argument("--seed", type=_non_negative_int, default=0,
                        help="random seed; frame k uses (seed, k) (0)")
    parser.add_argument("--min_confidence", type=float, default=0.0,
                        help="ignore cells with a lower confidence 1/σ (0)")
    parser.add_argument("--drop_ratio", type=float, default=0.1,
                        help="ignore cells whose confidence is below this share of the frame's "
                             "median (0.1)")
    parser.add_argument("--refine_iterations", type=_positive(int), default=10,
                        help="Gauss-Newton steps per round of the final refinement (10)")
    parser.add_argument("--sampling", choices=("confidence", "uniform"), default="confidence",
                        help="draw minimal samples by confidence or uniformly (confidence)")
    parser.add_argument("--weighting", choices=("confidence", "uniform"), default="confidence",
                        help="weigh cells in the refinement by confidence or equally (confidence)")
    parser.add_argument("--no_progress", dest="progress", action="store_false", help="no progress bar")
    parser.add_argument("--thread_num", type=_positive(int), default=os.cpu_count() or 1,
                        help="parallel worker processes (default: the number of CPUs)")
    return parser


def _intrinsics_source(args):
    if args.scene or args.config:
        return f"from {'--scene ' + args.scene if args.scene else '--config ' + args.config}"
    return "the 7-Scenes defaults of configs/defaults.yaml"


def warn_if_centre_misfits(K, coord_path, cell, source):
    """One warning line when the principal point lies far (over a quarter of the size) from the
    centre of the images a map of `coord_path`'s size comes from: intrinsics of another camera."""
    try:
        h, w = np.load(coord_path, mmap_mode="r").shape[:2]
    except (OSError, ValueError, *HEADER_ERRORS):
        return  # the frame's own failure is reported with its result
    width, height = w * cell, h * cell
    cx, cy = float(K[0, 2]), float(K[1, 2])
    if abs(cx - width / 2) <= width / 4 and abs(cy - height / 2) <= height / 4:
        return
    print(f"warning: intrinsics fx {K[0, 0]:g}, fy {K[1, 1]:g}, centre ({cx:g}, {cy:g}) ({source}) do not "
          f"fit maps of {w}x{h} cells ({width}x{height} pixels, centre ({width / 2:g}, {height / 2:g})); "
          "pass --scene/--config or --focal/--focal_y/--cx/--cy", file=sys.stderr)


def main(argv=None):
    args = build_parser().parse_args(argv)
    pose_file, tum_file, summary_file = pnp_output_paths(args.output)
    if pose_file.is_dir():
        raise InputError(f"output {pose_file} is a folder; give a pose file name")
    focal_y = args.focal_y or args.focal  # --focal alone means square pixels, whatever the config says
    cfg = override(load_config(args.scene, args.config), focal=args.focal, focal_y=focal_y, cx=args.cx,
                   cy=args.cy)
    K = intrinsics(cfg)
    files = find_coord_files(args.coord_folder)
    if args.cx is None or args.cy is None:
        warn_if_centre_misfits(K, files[0][1], args.cell, _intrinsics_source(args))
    indices = [k for k, _ in files]

    gt, pose_paths = (None, None)
    if args.gt:
        gt, pose_paths = load_ground_truth(args.gt, indices)
    image_list = args.image_list
    if image_list is None and args.gt and (Path(args.gt).parent / "image_list.txt").is_file():
        image_list = str(Path(args.gt).parent / "image_list.txt")
    names, seq_of, seq_names = frames_and_sequences(indices, pose_paths, image_list,
                                                    cfg.get("sequence_length"))

    lock = lock_folder(pose_file.parent, "output folder")  # one writer: a second run stops here
    threshold = default_threshold(K) if args.threshold is None else args.threshold
    options = {"cell": args.cell, "threshold": threshold, "hypotheses": args.hypotheses,
               "seed": args.seed, "min_confidence": args.min_confidence,
               "drop_ratio": args.drop_ratio, "sampling": args.sampling,
               "weighting": args.weighting, "refine_iterations": args.refine_iterations}
    results = solve_files(files, K, options, min(args.thread_num, len(files)), progress=args.progress)

    stamp_file = args.timestamps
    if stamp_file is None and image_list and (Path(image_list).parent / "timestamps.txt").is_file():
        stamp_file = str(Path(image_list).parent / "timestamps.txt")
    stamps = read_timestamps(stamp_file, indices[-1] + 1) if stamp_file else None

    records, times, inliers = [], {}, {}
    for k in indices:
        pose, failure, n_inliers, ms = results[k]
        rec = PoseRecord(k, names[k], pose_cw=pose, failure=failure)
        if pose is not None and gt is not None:
            rec.t_err, rec.r_err = pose_errors(pose, gt[k])
        records.append(rec)
        times[k] = ms
        inliers[k] = n_inliers
    summary = summarize(records, times, seq_of, seq_names, gt is not None, gt)
    summary["settings"] = {"coord_folder": str(args.coord_folder), "gt": args.gt,
                           "image_list": image_list, "timestamps": stamp_file,
                           "format": args.format, "K": K.tolist(), **options}
    if args.format == "kfnet":
        pose_text = pose_file_text(records)
    else:
        pose_text = "".join(line + "\n" for line in foreign_lines(records, args.format, gt, inliers))
    texts = {pose_file: pose_text, summary_file: json.dumps(_finite_or_none(summary), indent=2) + "\n"}
    gt_records = [PoseRecord(k, names[k], pose_cw=gt[k]) for k in indices
                  if gt is not None and np.all(np.isfinite(gt[k]))]
    for (seq, is_gt), path in tum_paths(pose_file, seq_names, gt is not None).items():
        chosen = [r for r in (gt_records if is_gt else records)
                  if seq is None or seq_of[r.index] == seq]
        texts[path] = tum_text(chosen, stamps)
    atomic_write_texts(texts)
    table = INDOOR_THRESHOLDS if args.table == "indoor" else OUTDOOR_THRESHOLDS
    print("\n".join(format_summary(summary, table)))
    failed = summary["overall"]["failed"]
    if failed:
        reasons = sorted({r.failure for r in records if r.pose_cw is None})
        print(f"{failed} of {len(records)} frames failed, e.g.: {reasons[0]}")
    print(f"wrote {pose_file} ({args.format}), {summary_file.name} and {len(texts) - 2} TUM "
          f"file(s) ({tum_file.name}, …)")
    if gt is not None:
        gt_tum = tum_paths(pose_file, seq_names, True)[(None, True)]
        print(f"compare with evo: evo_ape tum {gt_tum} {tum_file} -a")
    lock.release()
    return 0


if __name__ == "__main__":
    run(main)
