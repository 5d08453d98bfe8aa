"""Command-line glue shared by the three train.py scripts: flags, settings, strategy, trainer."""

import argparse
import math

from common.cli import STRATEGIES, HelpFormatter, add_config_flags, add_folder_flag
from common.config import config_source, load_config, max_steps, override, stage_config
from common.errors import InputError


def training_parser(description, scene_required=True, width_flag=True):
    """Flags every train.py has; settings default to the config (--scene/--config)."""
    p = argparse.ArgumentParser(description=description,
                                formatter_class=HelpFormatter)
    add_folder_flag(p, "input_folder", "input folder: image_list.txt, label_list.txt, transform.txt",
                    required=True)
    add_folder_flag(p, "model_folder", "where checkpoints and TensorBoard logs go; an existing "
                    "checkpoint there is resumed", required=True)
    add_config_flags(p, scene_required=scene_required)
    g = p.add_argument_group("schedule (defaults from the config)")
    g.add_argument("--max_steps", type=int, help="last step (config: max_steps, else 5 x stepvalue)")
    g.add_argument("--stepvalue", type=int, help="halve the learning rate every N steps")
    g.add_argument("--base_lr", type=float, help="initial Adam learning rate")
    g.add_argument("--batch_size", type=int, help="global batch size")
    g.add_argument("--weight_decay", type=float, help="L2 weight decay factor")
    g.add_argument("--snapshot", type=int, help="save a checkpoint every N steps")
    g.add_argument("--keep", type=int, help="number of checkpoints to keep")
    g.add_argument("--summary_every", type=int, help="TensorBoard scalars (means over the last N "
                   "steps) every N steps")
    g.add_argument("--image_every", type=int, help="TensorBoard pictures of the current batch every "
                   "N steps (0: none)")
    if width_flag:
        g.add_argument("--width", type=float, help="network width multiplier (1.0 = the paper's)")
    g.add_argument("--seed", type=int, help="seed of weights, data order and augmentation")
    g.add_argument("--no_augment", dest="augment", action="store_const", const=False,
                   help="turn data augmentation off")
    g.add_argument("--sequence_length", type=int, help="frames per sequence (default: parent folder)")
    v = p.add_argument_group("validation (off unless --val_folder is given)")
    v.add_argument("--val_folder", help="a prepared folder with labels (e.g. the test split: image_list.txt, "
                    "label_list.txt, transform.txt; images of the training size): every --val_every steps "
                    "the median coordinate error on it (stage 2: of the previous labels warped by the flow) "
                    "goes to TensorBoard (val/...) and the console")
    v.add_argument("--val_every", type=int, metavar="N",
                   help="validate every N steps and at the last step (default: the checkpoint interval, "
                        "--snapshot)")
    v.add_argument("--val_frames", type=int, metavar="N",
                   help="validate on the first N frames of --val_folder only (default: all)")
    d = p.add_argument_group("hardware (see README: Training on several GPUs / machines)")
    d.add_argument("--strategy", choices=STRATEGIES, default="default",
                   help="tf.distribute strategy: default = one device; mirrored = MirroredStrategy over "
                        "the visible GPUs (or --cpu_replicas CPU devices); multiworker = "
                        "MultiWorkerMirroredStrategy over the machines in TF_CONFIG. --batch_size is "
                        "the global batch, split evenly over all replicas")
    d.add_argument("--cpu_replicas", type=int, default=0,
                   help="split the CPU into N logical devices, so that --strategy mirrored runs N "
                        "replicas without GPUs (for testing; no speed-up)")
    d.add_argument("--mixed_precision", action="store_true",
                   help="compute in mixed_float16 on GPU (with loss scaling) / mixed_bfloat16 on CPU; "
                        "weights, network outputs, losses and the filter stay float32")
    d.add_argument("--xla", action="store_true",
                   help="compile each replica's train step (forward, backward, update) with XLA; "
                        "several replicas need GPUs")
    d.add_argument("--no_progress", dest="progress", action="store_false", help="no progress bar")
    return p


def stage_settings(args, stage):
    """The stage's settings: config file, then flags."""
    cfg = stage_config(load_config(args.scene, args.config), stage)
    keys = ("max_steps", "stepvalue", "base_lr", "batch_size", "weight_decay", "snapshot", "keep",
            "summary_every", "image_every", "width", "seed", "augment", "sequence_length")
    cfg = override(cfg, **{k: getattr(args, k, None) for k in keys})
    source = config_source(args.scene, args.config)

    def where(key):
        return f"--{key}" if getattr(args, key, None) is not None else f"{key} in {source}"

    for key, kind in (("stepvalue", int), ("batch_size", int), ("snapshot", int), ("summary_every", int),
                      ("keep", int), ("seed", int), ("base_lr", float), ("weight_decay", float),
                      ("width", float), ("max_steps", int), ("sequence_length", int), ("image_every", int)):
        if key not in cfg or (cfg[key] is None and key in ("max_steps", "sequence_length", "image_every")):
            continue
        value = cfg[key]
        try:
            ok = not isinstance(value, bool) and math.isfinite(kind(value))
        except (TypeError, ValueError, OverflowError):
            ok = False
        if not ok:
            raise InputError(f"{where(key)} must be a number ({kind.__name__}), got {value!r}")
    for key in ("stepvalue", "batch_size", "snapshot", "summary_every"):
        if int(cfg[key]) <= 0:
            raise InputError(f"{where(key)} must be positive, got {cfg[key]}")
    if int(cfg.get("image_every") or 0) < 0:
        raise InputError(f"{where('image_every')} must be 0 or positive, got {cfg['image_every']}")
    cfg["max_steps"] = max_steps(cfg)
    if cfg["max_steps"] <= 0:
        raise InputError(f"{where('max_steps')} must be positive, got {cfg['max_steps']}")
    return cfg


def load_validation(args, cfg, data):
    """The --val_folder input folder, checked at the start (labels, the training image size), or None."""
    from common.data.scene import load_input_folder

    if args.val_folder is None:
        for flag in ("val_every", "val_frames"):
            if getattr(args, flag) is not None:
                raise InputError(f"--{flag} needs --val_folder")
        return None
    for flag in ("val_every", "val_frames"):
        if getattr(args, flag) is not None and getattr(args, flag) <= 0:
            raise InputError(f"--{flag} must be positive, got {getattr(args, flag)}")
    try:
        val = load_input_folder(args.val_folder, cfg.get("sequence_length"), require_labels=False)
    except InputError as e:
        raise InputError(f"--val_folder: {e}") from None
    if not val.has_labels:
        raise InputError(f"--val_folder {args.val_folder} has no label_list.txt: validation measures "
                         "errors against labels")
    if val.image_hw != data.image_hw:
        raise InputError(f"--val_folder {args.val_folder}: images are {val.image_hw[1]}x{val.image_hw[0]}, "
                         f"the training images {data.image_hw[1]}x{data.image_hw[0]}")
    return val


def validation_hook(errors_fn, val, data, args, cfg):
    """Trainer.fit's keywords (validate, val_every) for a validation folder, or {} without one.

    errors_fn(val, to_train_44, frames) → {name: [n] per-cell errors (cm)}; validate() returns
    their medians as {name_median_cm: value}. to_train_44 maps the validation folder's normalized
    frame into the training folder's, where the networks predict.
    """
    if val is None:
        return {}
    import numpy as np

    from common.poses import invert_rigid

    to_train = data.transform @ invert_rigid(val.transform)
    frames = min(args.val_frames or len(val), len(val))

    def validate():
        errors = errors_fn(val, to_train, frames)
        return {f"{name}_median_cm": float(np.median(e)) if np.size(e) else float("nan")
                for name, e in errors.items()}

    return {"validate": validate, "val_every": args.val_every or int(cfg["snapshot"])}


def setup_hardware(args, batch_size):
    """Strategy and precision policy; the global batch must split evenly over replicas."""
    from common.distribute import check_xla, make_strategy, set_mixed_precision

    strategy = make_strategy(args.strategy, args.cpu_replicas)
    if batch_size % strategy.num_replicas_in_sync:
        raise InputError(f"--batch_size {batch_size} (global) does not split evenly over "
                         f"{strategy.num_replicas_in_sync} replicas")
    if args.xla:
        check_xla(strategy)
    set_mixed_precision(args.mixed_precision)
    return strategy
