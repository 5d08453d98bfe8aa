"""Run SCoordNet on every frame of an input folder; write coord_<k>.npy, evaluate against labels.

    python scoordnet/test.py --input_folder IN --output_folder OUT --model_folder M [--scene S]
"""

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from common.cli import quiet_tensorflow, run  # noqa: E402


def load_network(model_folder, image_hw, cfg_full=None, step=None, mixed_precision=False):
    """(SCoordNet built for image_hw and loaded, checkpoint path) from a SCoordNet or KFNet model
    folder of this project, or an original TF1 release; mixed_precision: computes in bf16/fp16."""
    from common.test_cli import build_networks
    from scoordnet.model import SCoordNet

    nets, ckpt = build_networks(model_folder, {"scoordnet": lambda w: SCoordNet(width=w).build_for(image_hw)},
                                cfg_full, step=step, mixed_precision=mixed_precision)
    return nets["scoordnet"], ckpt


def main(argv=None):
    from common.test_cli import FrameClock, load_test_folder, test_settings, testing_parser

    args = testing_parser(__doc__.splitlines()[0]).parse_args(argv)
    quiet_tensorflow(devices=True)
    import numpy as np
    import tensorflow as tf
    from tqdm import tqdm

    from common import formats
    from common.config import load_config
    from common.data.pipelines import test_dataset
    from common.errors import InputError
    from common.evaluation import CoordErrors
    from common.geometry import transform_points
    from common.poses import invert_rigid

    if args.batch_size <= 0:
        raise InputError(f"--batch_size must be positive, got {args.batch_size}")
    cfg = test_settings(args, "scoordnet")
    data, source = load_test_folder(args, cfg.get("sequence_length"))
    net, ckpt = load_network(args.model_folder, data.image_hw, load_config(args.scene, args.config),
                             step=args.checkpoint, mixed_precision=args.mixed_precision)
    signature = {"stage": "scoordnet", "checkpoint": ckpt, "mixed_precision": args.mixed_precision, **source}
    out = Path(args.output_folder)
    formats.open_output_folder(out, signature)
    to_world = invert_rigid(data.transform)

    @tf.function(input_signature=[tf.TensorSpec([None, *data.image_hw, 3], tf.float32)])
    def forward(images):
        return net(images, training=False)

    errors = CoordErrors("SCoordNet")
    done = {k for k in range(len(data)) if formats.coord_file(out, k).exists()}
    if done:
        print(f"{len(done)} of {len(data)} frames already in {out}; computing the rest")

    def finish(k, coords_hw3, sigma_hw1, gt, mask):
        """Writer thread: the frame's world coordinates and file, then its evaluation (in frame order).
        coords_hw3 None: the frame was written by an earlier run."""
        if coords_hw3 is not None:
            world = transform_points(to_world, coords_hw3).astype(np.float32)
            formats.save_npy(formats.coord_file(out, k), formats.coord_output(world, sigma_hw1))
        else:
            world = formats.read_map_file(formats.coord_file(out, k), 4, data.map_hw)[..., :3]
        if gt is not None:
            med, share = errors.add(k, world, transform_points(to_world, gt), mask)
            if not args.quiet:
                bar.write(f"frame {k}: median error {med:.2f} cm, {100 * share:.1f} % within 5 cm")

    bar = tqdm(total=len(data), desc="scoordnet test", unit="frame", disable=not args.progress)
    clock = FrameClock()
    with formats.BackgroundWriter() as writer:
        for batch in test_dataset(data, args.batch_size):
            ks = batch["index"].numpy()
            todo = [i for i, k in enumerate(ks) if int(k) not in done]
            if todo:
                images = batch["image"] if len(todo) == len(ks) else tf.gather(batch["image"], todo)
                coords, sigma = forward(images)
                coords, sigma = coords.numpy(), sigma.numpy()
            gt = batch["coords"].numpy() if data.has_labels else None
            mask = batch["mask"].numpy() if data.has_labels else None
            for i, k in enumerate(ks):
                j = todo.index(i) if i in todo else None
                writer.submit(finish, int(k), None if j is None else coords[j], None if j is None else sigma[j],
                              None if gt is None else gt[i], None if mask is None else mask[i])
            clock.tick(len(todo))
            bar.update(len(ks))
    clock.stop()
    bar.close()
    summary = {"speed": clock.summary()}
    if data.has_labels:
        summary["scoordnet"] = errors.summary()
    formats.mark_complete(out, summary)
    if data.has_labels:
        print(errors.summary_line())
    print(f"wrote {len(data)} coordinate maps to {out}" + clock.line())
    return 0


if __name__ == "__main__":
    run(main)
