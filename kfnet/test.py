"""Stream the frames through KFNet in order; write the posterior coord_<k>.npy, evaluate on labels.

    python kfnet/test.py --input_folder IN --output_folder OUT --model_folder M --scene chess [--nis]

Each frame gets one pass of SCoordNet (measurement) and of OFlowNet's feature tower, plus the
flow from the previous frame; the filter state is carried from frame to frame and restarts from
the measurement at every sequence start (docs/reference.md §4).
"""

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from common.cli import quiet_tensorflow, run  # noqa: E402

MEASUREMENT, PRIOR = "measurement", "prior"


def main(argv=None):
    from common.test_cli import FrameClock, load_test_folder, test_settings, testing_parser

    parser = testing_parser(__doc__.splitlines()[0])
    parser.add_argument("--nis", action="store_true", default=None,
                        help="cells failing the innovation test (NIS > 7.815) are written out as their "
                             "measurement (coordinates; the written sigma and the filter state stay the "
                             "Kalman posterior's, as in the original)")
    parser.add_argument("--nis_threshold", type=float, default=7.815,
                        help="the innovation test's bound (chi-square, 3 degrees of freedom: 7.815 = 95 %%)")
    parser.add_argument("--prior_variance", choices=("warped_sigma", "mixture"),
                        help="the prior's variance: warped_sigma, the original's (the previous sigma warped, "
                             "squared); mixture, the variance of the bilinear mix of the 4 source cells "
                             "(grows at depth edges; not in the original). Default: the config's "
                             "kfnet: prior_variance, else warped_sigma")
    parser.add_argument("--process_noise_scale", type=float,
                        help="factor on OFlowNet's process variance sigma_q^2 (1: the original). Default: "
                             "the config's kfnet: process_noise_scale, else 1")
    parser.add_argument("--save_measurement", action="store_true",
                        help="also write the measurement and prior maps to OUT/measurement, OUT/prior")
    args = parser.parse_args(argv)
    quiet_tensorflow(devices=True)
    import numpy as np
    from tqdm import tqdm

    from common import formats
    from common.config import load_config
    from common.data.pipelines import test_dataset
    from common.errors import InputError
    from common.evaluation import CoordErrors
    from kfnet.relocalizer import Relocalizer, filter_options, load_kfnet

    if args.batch_size <= 0:
        raise InputError(f"--batch_size must be positive, got {args.batch_size}")
    cfg = test_settings(args, "kfnet")
    use_nis = bool(cfg.get("nis")) if args.nis is None else True
    options = filter_options(cfg, args.prior_variance, args.process_noise_scale)  # checked: nothing written yet
    data, source = load_test_folder(args, cfg.get("sequence_length"))
    model, ckpt = load_kfnet(args.model_folder, data.image_hw, load_config(args.scene, args.config),
                             step=args.checkpoint, mixed_precision=args.mixed_precision)
    reloc = Relocalizer(model, transform=data.transform, nis=use_nis, nis_threshold=args.nis_threshold,
                        **options)
    h, w = data.map_hw
    out = Path(args.output_folder)
    signature = {"stage": "kfnet", "checkpoint": ckpt, "nis": use_nis, "nis_threshold": args.nis_threshold,
                 **options,
                 "save_measurement": args.save_measurement, "mixed_precision": args.mixed_precision, **source}
    formats.open_output_folder(out, signature)
    if args.save_measurement:
        (out / MEASUREMENT).mkdir(exist_ok=True)
        (out / PRIOR).mkdir(exist_ok=True)
    # Resume: the filter state cannot be read back, so restart at the sequence holding the first
    # frame without an output; every sequence before it is complete.
    missing = [k for k in range(len(data)) if not formats.coord_file(out, k).exists()]
    start = int(np.flatnonzero(data.sequence_ids == data.sequence_ids[missing[0]])[0]) if missing else len(data)
    if 0 < start < len(data):
        print(f"frames 0-{start - 1} already in {out}; continuing at frame {start}")

    errors = {name: CoordErrors(name) for name in ("measurement", "prior", "posterior")}
    nis_pass, nis_cells = 0, 0

    def evaluate(k, name, coords_world, gt_world, mask):
        return errors[name].add(k, coords_world, gt_world, mask)[0]

    world = reloc.world

    if data.has_labels:  # frames finished by an earlier run still count in the summary
        reader = iter(test_dataset(data, args.batch_size))
        for batch in reader:
            for i, k in enumerate(batch["index"].numpy()):
                if k >= start:
                    break
                gt, mask = world(batch["coords"][i].numpy()), batch["mask"][i].numpy()
                post = formats.read_map_file(formats.coord_file(out, k), 4, (h, w))
                evaluate(k, "posterior", post[..., :3], gt, mask)
                for name, sub in ((MEASUREMENT, MEASUREMENT), ("prior", PRIOR)):
                    f = formats.coord_file(out / sub, k)
                    if f.exists():
                        evaluate(k, name, formats.read_map_file(f, 4, (h, w))[..., :3], gt, mask)
            else:
                continue
            break

    def finish(k, post, post_var, meas, meas_var, prior, prior_var, gt, mask):
        """Writer thread: the frame's files (world frame), then its evaluation, in frame order."""
        maps = {"posterior": world(post), "measurement": world(meas)}
        if prior is not None:
            maps["prior"] = world(prior)
        formats.save_npy(formats.coord_file(out, k), formats.coord_output(maps["posterior"], np.sqrt(post_var)))
        if args.save_measurement:
            formats.save_npy(formats.coord_file(out / MEASUREMENT, k),
                             formats.coord_output(maps["measurement"], np.sqrt(meas_var)))
            if prior is not None:
                formats.save_npy(formats.coord_file(out / PRIOR, k),
                                 formats.coord_output(maps["prior"], np.sqrt(prior_var)))
        if gt is not None:
            gt = world(gt)
            cm = {name: evaluate(k, name, m, gt, mask) for name, m in maps.items()}
            if not args.quiet:
                parts = [f"{name} {cm[name]:.2f} cm" for name in ("measurement", "prior", "posterior")
                         if name in cm]
                bar.write(f"frame {k}: median error " + ", ".join(parts))

    bar = tqdm(total=len(data), initial=start, desc="kfnet test", unit="frame", disable=not args.progress)
    clock = FrameClock()
    frames = 0
    with formats.BackgroundWriter() as writer:
        for batch in test_dataset(data, args.batch_size, start=start):
            z, r, flow, q = reloc.networks(batch["image"])
            # One traced call filters the whole batch (frame by frame inside the graph).
            shown, post_var, prior_x, prior_p, nis, starts = reloc.filter_frames(z, r, flow, q,
                                                                                  batch["new_sequence"].numpy())
            z_np, r_np = z.numpy(), r.numpy()
            gts = batch["coords"].numpy() if data.has_labels else None
            masks = batch["mask"].numpy() if data.has_labels else None
            for i, k in enumerate(batch["index"].numpy()):
                prior = prior_var = gt = mask = None
                if not starts[i]:
                    nis_pass += int(np.sum(nis[i] <= args.nis_threshold))
                    nis_cells += nis[i].size
                    prior, prior_var = prior_x[i], prior_p[i]
                if data.has_labels:
                    gt, mask = gts[i], masks[i]
                writer.submit(finish, int(k), shown[i], post_var[i], z_np[i], r_np[i], prior, prior_var, gt, mask)
                frames += 1
            clock.tick(len(batch["index"]))
            bar.update(len(batch["index"]))
    clock.stop()
    bar.close()
    speed = clock.summary()
    summary = {"frames_per_second": speed["frames_per_second"], "speed": speed}
    if nis_cells:
        summary["nis_pass"] = nis_pass / nis_cells
    if data.has_labels:
        for name, e in errors.items():
            summary[name] = e.summary()
            print(e.summary_line())
    if nis_cells:
        print(f"NIS test passed by {100 * nis_pass / nis_cells:.1f} % of cells "
              f"(threshold {args.nis_threshold:g}{', failing cells take the measurement' if use_nis else ''})")
    formats.mark_complete(out, summary)
    if frames:
        print(f"{frames} frames in {speed['total_s']:.1f} s{clock.line()}; posterior maps in {out}")
    return 0


if __name__ == "__main__":
    run(main)
