"""Training speed of SCoordNet and KFNet with --xla, --mixed_precision and 2 mirrored CPU replicas.

    python scripts/bench_training.py [--stages scoordnet kfnet] [--steps 10] [--full]
    python scripts/bench_training.py --input_folder IN --scene S   # on a prepared scene

Without --input_folder a small synthetic room (160×120, configs/synthetic.yaml networks) is
generated in a temporary folder. Each variant runs in a fresh process: TensorFlow start-up,
tracing and XLA compilation are paid by each alike and reported apart ("first step"), then
--steps steps are timed (each waits for its loss, as training does). SCoordNet uses a global
batch of 4 frames, KFNet of 2 windows, for every variant, so that the mirrored run splits the
same work over 2 replicas. --full adds the paper's networks (width 1.0) on 640×480 images for
--full_steps steps. Prints a Markdown table; "× default" compares with the default variant of
the same stage and size measured in this invocation. The loss of the first step shows that
the variants compute the same step.
"""

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from common.cli import HelpFormatter, add_config_flags, add_folder_flag, run  # noqa: E402
from common.errors import InputError  # noqa: E402

# variant → (strategy, cpu_replicas, xla, mixed precision)
VARIANTS = {
    "default": ("default", 0, False, False),
    "xla": ("default", 0, True, False),
    "mixed": ("default", 0, False, True),
    "xla+mixed": ("default", 0, True, True),
    "mirrored-2cpu": ("mirrored", 2, False, False),
}
BATCH = {"scoordnet": 4, "kfnet": 2}
SMALL = (160, 120)
FULL = (640, 480)


def _build(stage_name, cfg, data, widths):
    """The stage object and its dataset factory, as the train.py scripts build them."""
    from common.data.pipelines import frame_dataset, window_dataset

    batch = BATCH[stage_name]
    if stage_name == "scoordnet":
        from scoordnet.stage import SCoordNetStage

        return (lambda: SCoordNetStage(widths["scoordnet"], data.image_hw),
                lambda: frame_dataset(data, batch, augment=bool(cfg["augment"]), seed=0))
    from kfnet.stage import KFNetStage
    from oflownet.model import OFlowNet
    from scoordnet.model import SCoordNet

    return (lambda: KFNetStage(SCoordNet(widths["scoordnet"]).build_for(data.image_hw),
                               OFlowNet(widths["oflownet"])),
            lambda: window_dataset(data, int(cfg["window"]), batch, augment=False, seed=0))


def measure(spec):
    """Runs one variant in this process; returns seconds to the first step, steps/s and losses."""
    from common.cli import quiet_tensorflow

    quiet_tensorflow()
    from common.config import load_config, override, stage_config
    from common.data.scene import load_input_folder
    from common.distribute import make_strategy, set_mixed_precision
    from common.trainer import Trainer, seed_everything

    strategy_name, cpu_replicas, xla, mixed = VARIANTS[spec["variant"]]
    strategy = make_strategy(strategy_name, cpu_replicas)
    set_mixed_precision(mixed)
    full = load_config(spec["scene"], spec["config"])
    cfg = override(stage_config(full, spec["stage"]), batch_size=BATCH[spec["stage"]])
    widths = {n: float(spec["width"] or stage_config(full, n)["width"])
              for n in ("scoordnet", "oflownet")}
    data = load_input_folder(spec["input_folder"])
    build_stage, make_dataset = _build(spec["stage"], cfg, data, widths)
    seed_everything(0)
    start = time.perf_counter()
    with strategy.scope():
        stage = build_stage()
    with tempfile.TemporaryDirectory() as folder:
        trainer = Trainer(stage, folder, cfg, strategy, spec["stage"], widths,
                          mixed_precision=mixed, xla=xla)
        step = trainer.make_step()
        batches = iter(trainer.distribute(make_dataset()))
        first_loss = float(step(next(batches))["loss"])
        first = time.perf_counter() - start
        for _ in range(spec["warmup"]):
            float(step(next(batches))["loss"])
        t0 = time.perf_counter()
        for _ in range(spec["steps"]):
            loss = float(step(next(batches))["loss"])
        rate = spec["steps"] / (time.perf_counter() - t0)
    return {"first_step_s": first, "steps_per_s": rate, "first_loss": first_loss, "last_loss": loss,
            "replicas": strategy.num_replicas_in_sync}


def _make_scene(root, size, frames):
    """A prepared synthetic room of `frames` frames per sequence at `size` (w, h); its input folder."""
    from common.data.prepare import Camera, prepare_scene
    from common.data.synthetic import SceneSettings, intrinsics_for, write_scene

    settings = SceneSettings(width=size[0], height=size[1], frames=frames, sequences=2,
                             test_sequences=1)
    write_scene(root / "dataset", settings, progress=False)
    focal, cx, cy = intrinsics_for(*size)
    prepare_scene(root / "dataset", root / "prepared", Camera(focal, focal, cx, cy, focal),
                  splits=("train",), progress=False)
    return root / "prepared" / "train"


def _widths(stage, scene, config, width):
    """'0.25' (SCoordNet) or '0.25 / 0.5' (KFNet: SCoordNet / OFlowNet) for the table."""
    from common.config import load_config, stage_config

    full = load_config(scene, config)
    names = ("scoordnet",) if stage == "scoordnet" else ("scoordnet", "oflownet")
    return " / ".join(f"{width or stage_config(full, n)['width']:g}" for n in names)


def _run_variant(spec):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)],
                          capture_output=True, text=True, env=env)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        message = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": message[:120]}
    return json.loads(lines[-1])


def _table(rows):
    out = ["| stage | images | widths | variant | replicas | first step (s) | steps/s | × default "
           "| loss, step 1 |", "|---|---|---|---|---|---|---|---|---|"]
    base = {}
    for spec, res in rows:
        key = (spec["stage"], spec["size"])
        head = f"| {spec['stage']} | {spec['size']} | {spec['width_label']} | {spec['variant']} |"
        if "error" in res:
            out.append(f"{head} – | – | – | – | failed: {res['error']} |")
            continue
        if spec["variant"] == "default":
            base[key] = res["steps_per_s"]
        ratio = f"{res['steps_per_s'] / base[key]:.2f}" if key in base else "–"
        out.append(f"{head} {res['replicas']} | {res['first_step_s']:.1f} | {res['steps_per_s']:.3g} | "
                   f"{ratio} | {res['first_loss']:.6f} |")
    return "\n".join(out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=HelpFormatter)
    add_folder_flag(p, "input_folder", "prepared input folder to train on (default: generate a small "
                    "synthetic room at 160x120)")
    add_config_flags(p)
    p.add_argument("--stages", nargs="+", choices=tuple(BATCH), default=list(BATCH))
    p.add_argument("--variants", nargs="+", choices=tuple(VARIANTS), default=list(VARIANTS))
    p.add_argument("--steps", type=int, default=10, help="timed steps per variant")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps after the first one")
    p.add_argument("--full", action="store_true", help="also the paper's networks on 640x480 images")
    p.add_argument("--full_steps", type=int, default=2, help="timed steps per variant with --full")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(measure(json.loads(args.worker))))
        return 0
    if args.steps <= 0 or args.full_steps <= 0 or args.warmup < 0:
        raise InputError("--steps and --full_steps must be positive, --warmup not negative")
    from common.cli import quiet_tensorflow

    quiet_tensorflow()
    with tempfile.TemporaryDirectory() as tmp:
        if args.input_folder:
            if not Path(args.input_folder).is_dir():
                raise InputError(f"--input_folder {args.input_folder} is not a folder")
            sizes = [(args.input_folder, "input", None, args.steps, args.warmup)]
            scene, config = args.scene, args.config
        else:
            scene, config = ((args.scene, args.config) if (args.scene or args.config)
                             else ("synthetic", None))
            print("generating a 160x120 synthetic scene ...", file=sys.stderr)
            sizes = [(str(_make_scene(Path(tmp) / "small", SMALL, 8)), "160x120", None, args.steps,
                      args.warmup)]
        if args.full:
            print("generating a 640x480 synthetic scene ...", file=sys.stderr)
            folder = str(_make_scene(Path(tmp) / "full", FULL, 6))
            sizes.append((folder, "640x480", 1.0, args.full_steps, 0))
        rows = []
        for folder, size, width, steps, warmup in sizes:
            for stage in args.stages:
                for variant in args.variants:
                    spec = {"stage": stage, "variant": variant, "input_folder": folder, "scene": scene,
                            "config": config, "width": width, "steps": steps, "warmup": warmup,
                            "size": size, "width_label": _widths(stage, scene, config, width)}
                    t0 = time.time()
                    res = _run_variant(spec)
                    print(f"{stage} {size} {variant}: {res} ({time.time() - t0:.0f} s)",
                          file=sys.stderr)
                    rows.append((spec, res))
    print(_table(rows))
    return 0 if all("error" not in r for _, r in rows) else 1


if __name__ == "__main__":
    run(main)
