"""Train OFlowNet on frame pairs of one sequence (consecutive; config max_gap: up to G apart), both
directions per step (stage 2); scene-independent.

    python oflownet/train.py --input_folder IN --model_folder M [--scene S | --config F] [--noise]
"""

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from common.cli import quiet_tensorflow, run  # noqa: E402


def parser():
    from common.train_cli import training_parser

    p = training_parser(__doc__.splitlines()[0], scene_required=False)
    p.add_argument("--noise", action="store_const", const=True,
                   help="previous state = ground truth + Gaussian noise of sigma ~ U(0.005, 0.01) m "
                        "per pair, with that sigma as its uncertainty (config: noise)")
    p.epilog = ("Without --scene/--config the defaults (the paper's schedule, width 1.0) apply; the "
                "config's oflownet: section overrides its top-level keys.")
    return p


def main(argv=None):
    from common.config import config_source
    from common.train_cli import load_validation, setup_hardware, stage_settings, validation_hook

    args = parser().parse_args(argv)
    quiet_tensorflow(devices=True)
    from common.data.pipelines import frame_pairs, pair_dataset
    from common.data.scene import load_input_folder
    from common.errors import InputError
    from common.trainer import Trainer, seed_everything
    from oflownet.stage import OFlowNetStage

    cfg = stage_settings(args, "oflownet")
    if args.noise:
        cfg["noise"] = True
    max_gap = cfg.get("max_gap", 1)
    if isinstance(max_gap, bool) or not isinstance(max_gap, int) or max_gap < 1:
        raise InputError(f"max_gap in {config_source(args.scene, args.config)} must be a whole number "
                         f"of frames, 1 or more, got {max_gap!r}")
    data = load_input_folder(args.input_folder, cfg.get("sequence_length"))
    pairs = len(frame_pairs(data, max_gap))
    if pairs == 0:
        raise InputError(f"{args.input_folder} has no two consecutive frames of one sequence to train on")
    val = load_validation(args, cfg, data)
    strategy = setup_hardware(args, int(cfg["batch_size"]))
    seed_everything(cfg["seed"])
    with strategy.scope():
        stage = OFlowNetStage(width=cfg["width"], noise=bool(cfg.get("noise")), seed=int(cfg["seed"]),
                              nll_cap=float(cfg["nll_cap"]))
    trainer = Trainer(stage, args.model_folder, cfg, strategy, "oflownet",
                      widths={"oflownet": float(cfg["width"])},
                      mixed_precision=args.mixed_precision, xla=args.xla)
    stage.step = trainer.optimizer.iterations  # noise draws follow the step, also after resuming
    trainer.restore_or_init()
    gaps = "" if max_gap == 1 else f" k → k+1…{max_gap}"
    print(f"OFlowNet: {pairs} pairs{gaps} (each step both directions) of {len(data)} frames {data.image_hw[1]}x"
          f"{data.image_hw[0]}, width {cfg['width']}, {stage.net.count_params():,} parameters, "
          f"noise {'on' if stage.noise else 'off'}, steps {trainer.step}→{cfg['max_steps']}")

    def make_dataset(start_step):
        return pair_dataset(data, int(cfg["batch_size"]), augment=bool(cfg["augment"]),
                            seed=int(cfg["seed"]), start_step=start_step, max_gap=max_gap)

    return trainer.fit(make_dataset, cfg["max_steps"], summary_every=int(cfg["summary_every"]),
                       snapshot=int(cfg["snapshot"]), progress=args.progress, data=data,
                       **validation_hook(stage.validation_errors, val, data, args, cfg))


if __name__ == "__main__":
    run(main)
