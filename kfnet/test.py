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
    from common.test_cli import load_test_folder, test_settings, testing_parser

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
    from tqdm import tqdm

    from common import formats
    from common.config import load_config
    from common.data.pipelines import test_dataset
    from common.errors import InputError
    from common.evaluation import CoordErrors
    from kfnet.relocalizer import Relocalizer, load_kfnet

    if args.batch_size <= 0:
        raise InputError(f"--batch_size must be positive, got {args.batch_size}")
    cfg = test_settings(args, "kfnet")
    use_nis = bool(cfg.get("nis")) if args.nis is None else True
    data, source = load_test_folder(args, cfg.get("sequence_length"))
    model, ckpt = load_kfnet(args.model_folder, data.image_hw, load_config(args.scene, args.config),
                             step=args.checkpoint)
    reloc = Relocalizer(model, transform=data.transform, nis=use_nis, nis_threshold=args.nis_threshold)
    h, w = data.map_hw
    out = Path(args.output_folder)
    signature = {"stage": "kfnet", "checkpoint": ckpt, "nis": use_nis, "nis_threshold": args.nis_threshold,
                 "save_measurement": args.save_measurement, **source}
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

    bar = tqdm(total=len(data), initial=start, desc="kfnet test", unit="frame", disable=not args.progress)
    t0, frames = time.time(), 0
    for batch in test_dataset(data, args.batch_size, start=start):
        z, r, flow, q = reloc.networks(batch["image"])
        for i, k in enumerate(batch["index"].numpy()):
            k = int(k)
            zi, ri = z[i:i + 1], r[i:i + 1]
            step = reloc.filter(zi, ri, flow[i:i + 1], q[i:i + 1], bool(batch["new_sequence"][i]))
            prior = None if step.prior_x is None else (step.prior_x, step.prior_p)
            if step.nis is not None:
                nis_pass += int(np.sum(step.nis.numpy() <= args.nis_threshold))
                nis_cells += int(np.prod(step.nis.shape))
            post_world = world(step.shown.numpy()[0])
            formats.save_npy(formats.coord_file(out, k),
                             formats.coord_output(post_world, np.sqrt(step.p.numpy()[0])))
            maps = {"posterior": post_world, "measurement": world(zi.numpy()[0])}
            if prior is not None:
                maps["prior"] = world(prior[0].numpy()[0])
            if args.save_measurement:
                formats.save_npy(formats.coord_file(out / MEASUREMENT, k),
                                 formats.coord_output(maps["measurement"], np.sqrt(ri.numpy()[0])))
                if prior is not None:
                    formats.save_npy(formats.coord_file(out / PRIOR, k),
                                     formats.coord_output(maps["prior"], np.sqrt(prior[1].numpy()[0])))
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
    formats.mark_complete(out, summary)
    if frames:
        print(f"{frames} frames in {elapsed:.1f} s ({frames / elapsed:.2f} frames/s); posterior maps in {out}")
    return 0


if __name__ == "__main__":
    run(main)
