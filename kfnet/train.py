"""Fine-tune SCoordNet and OFlowNet together through the Kalman filter (stage 3).

    python kfnet/train.py --input_folder IN --model_folder M --scene chess --scoordnet M1 --oflownet M2
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

    parser = training_parser(__doc__.splitlines()[0], width_flag=False)
    parser.add_argument("--scoordnet", help="model folder of a trained SCoordNet (this project's or an "
                        "original TF1 release) to start from")
    parser.add_argument("--oflownet", help="model folder of a trained OFlowNet to start from")
    args = parser.parse_args(argv)
    quiet_tensorflow(devices=True)
    from common.checkpoints import load_adam_moments, load_networks, network_widths, read_model_info
    from common.config import load_config, stage_config
    from common.data.pipelines import window_dataset
    from common.data.scene import load_input_folder
    from common.trainer import Trainer, seed_everything
    from kfnet.relocalizer import Relocalizer, filter_options, stream_label_errors
    from kfnet.stage import KFNetStage
    from oflownet.model import OFlowNet
    from scoordnet.model import SCoordNet

    cfg = stage_settings(args, "kfnet")
    full = load_config(args.scene, args.config)
    data = load_input_folder(args.input_folder, cfg.get("sequence_length"))
    val = load_validation(args, cfg, data)
    strategy = setup_hardware(args, int(cfg["batch_size"]))
    seed_everything(cfg["seed"])

    # Widths: a run being resumed knows its own; otherwise the pre-trained stages', else the config's.
    widths = {n: float(stage_config(full, n)["width"]) for n in ("scoordnet", "oflownet")}
    own = read_model_info(args.model_folder) if Path(args.model_folder).is_dir() else None
    if own is not None:
        widths.update(own["widths"])
    else:
        for name in ("scoordnet", "oflownet"):
            folder = getattr(args, name)
            if folder:
                found = network_widths(folder, {name: stage_config(full, name)})
                widths[name] = float(found.get(name, widths[name]))

    with strategy.scope():
        scoordnet = SCoordNet(width=widths["scoordnet"]).build_for(data.image_hw)
        oflownet = OFlowNet(width=widths["oflownet"]).build_for(data.image_hw)
        stage = KFNetStage(scoordnet, oflownet, nll_cap=float(cfg["nll_cap"]))
    trainer = Trainer(stage, args.model_folder, cfg, strategy, "kfnet", widths=widths,
                      mixed_precision=args.mixed_precision, xla=args.xla)

    def init():
        for name, net in (("scoordnet", scoordnet), ("oflownet", oflownet)):
            folder = getattr(args, name)
            if folder:
                kind, path = load_networks(folder, {name: net}, flag=f"--{name}")
                moments = load_adam_moments(folder, name, net, trainer.adam, flag=f"--{name}")
                print(f"{name} weights from {path} ({'original TF1 release' if kind == 'tf1' else kind}); "
                      + (f"Adam moments of {moments} variables carried over" if moments
                         else "no Adam moments there: they start at zero"))
            else:
                print(f"warning: no --{name}: {name} starts from random weights", file=sys.stderr)

    # docs/reference.md §5.3: from both pre-trained stages, training starts on the last learning-rate step.
    start = 4 * int(cfg["stepvalue"]) if args.scoordnet and args.oflownet else 0
    trainer.restore_or_init(init, start)
    print(f"KFNet: {len(data)} frames {data.image_hw[1]}x{data.image_hw[0]}, windows of {cfg['window']}, "
          f"widths {widths}, steps {trainer.step}→{cfg['max_steps']}")

    def make_dataset(start_step):
        return window_dataset(data, int(cfg["window"]), int(cfg["batch_size"]),
                              augment=bool(cfg["augment"]), seed=int(cfg["seed"]), start_step=start_step,
                              shuffle=bool(cfg.get("shuffle", False)))

    # Validation streams through the networks being trained, with the filter kfnet/test.py runs.
    reloc = Relocalizer(stage.model, **filter_options(cfg))

    def val_errors(folder, to_train, frames):
        return stream_label_errors(reloc, folder, to_train, frames)

    return trainer.fit(make_dataset, cfg["max_steps"], summary_every=int(cfg["summary_every"]),
                       snapshot=int(cfg["snapshot"]), progress=args.progress, data=data,
                       **validation_hook(val_errors, val, data, args, cfg))


if __name__ == "__main__":
    run(main)
