"""Train SCoordNet on one scene (stage 1, docs/reference.md §5.1).

    python scoordnet/train.py --input_folder IN --model_folder M --scene chess
"""

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from common.cli import quiet_tensorflow, run  # noqa: E402


def main(argv=None):
    from common.train_cli import (
        load_validation,
        setup_hardware,
        stage_settings,
        training_parser,
        validation_hook,
    )

    args = training_parser(__doc__.splitlines()[0]).parse_args(argv)
    quiet_tensorflow(devices=True)
    from common.data.pipelines import frame_dataset
    from common.data.scene import load_input_folder
    from common.trainer import Trainer, seed_everything
    from scoordnet.stage import SCoordNetStage

    cfg = stage_settings(args, "scoordnet")
    data = load_input_folder(args.input_folder, cfg.get("sequence_length"))
    val = load_validation(args, cfg, data)
    strategy = setup_hardware(args, int(cfg["batch_size"]))
    seed_everything(cfg["seed"])
    with strategy.scope():
        stage = SCoordNetStage(width=cfg["width"], image_hw=data.image_hw)
    trainer = Trainer(stage, args.model_folder, cfg, strategy, "scoordnet",
                      widths={"scoordnet": float(cfg["width"])},
                      mixed_precision=args.mixed_precision, xla=args.xla)
    trainer.restore_or_init()
    print(f"SCoordNet: {len(data)} frames {data.image_hw[1]}x{data.image_hw[0]}, width {cfg['width']}, "
          f"{stage.net.count_params():,} parameters, steps {trainer.step}→{cfg['max_steps']}")

    def make_dataset(start_step):
        return frame_dataset(data, int(cfg["batch_size"]), augment=bool(cfg["augment"]),
                             seed=int(cfg["seed"]), start_step=start_step)

    return trainer.fit(make_dataset, cfg["max_steps"], summary_every=int(cfg["summary_every"]),
                       snapshot=int(cfg["snapshot"]), progress=args.progress, data=data,
                       **validation_hook(stage.validation_errors, val, data, args, cfg))


if __name__ == "__main__":
    run(main)
