"""The whole pipeline for one scene: train the three stages, test, PnP, plots, one results table.

    python scripts/run_pipeline.py --data_folder PREPARED --work_folder runs/chess --scene chess

PREPARED holds train/ and test/ input folders (scripts/prepare_7scenes.py writes them). Every
step runs as its own process, is skipped when its outputs are complete and resumes where it
stopped otherwise, so an interrupted run is continued by running the same command again.
All settings come from the scene config (--scene/--config); flags override a few.
"""

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from common import formats  # noqa: E402
from common.cli import STRATEGIES, HelpFormatter, add_config_flags, run  # noqa: E402
from common.errors import InputError  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=HelpFormatter)
    p.add_argument("--data_folder", help="folder with train/ and test/ input folders")
    p.add_argument("--train_folder", help="training input folder (default DATA/train)")
    p.add_argument("--test_folder", help="test input folder (default DATA/test)")
    p.add_argument("--work_folder", required=True, help="models, outputs, poses and plots go here")
    add_config_flags(p, scene_required=True)
    p.add_argument("--oflownet", help="use this trained OFlowNet (scene-independent) instead of training one")
    p.add_argument("--thread_num", type=int, default=2, help="PnP worker processes")
    p.add_argument("--nis", action="store_true", help="KFNet test with the innovation test")
    p.add_argument("--no_progress", action="store_true", help="no progress bars in the steps")
    t = p.add_argument_group("training (passed to the three train.py)")
    t.add_argument("--max_steps", type=parse_steps, metavar="N | N1,N2,N3",
                   help="last training step of every stage, or of SCoordNet, OFlowNet and KFNet in "
                        "turn (KFNet counts from its start at 4 x stepvalue; default: the config)")
    t.add_argument("--strategy", choices=STRATEGIES, default="default", help="tf.distribute strategy")
    t.add_argument("--mixed_precision", action="store_true", help="mixed-precision training")
    t.add_argument("--xla", action="store_true", help="XLA-compiled training steps")
    t.add_argument("--validate", action="store_true",
                   help="validate every stage on the test folder while training (--val_folder TEST)")
    t.add_argument("--val_every", type=int, metavar="N",
                   help="with --validate: every N steps (default: each stage's checkpoint interval)")
    p.add_argument("--cloud_thres", type=float, default=20.0,
                   help="confidence threshold of the point-cloud render (20: sigma below 5 cm); lowered "
                        "to the map's median confidence, with a message, when no cell passes it")
    return p.parse_args(argv)


def parse_steps(text):
    """'N' → [N, N, N]; 'N1,N2,N3' → [N1, N2, N3]."""
    try:
        steps = [int(v) for v in text.split(",")]
    except ValueError:
        steps = []
    if len(steps) == 1:
        steps *= 3
    if len(steps) != 3 or min(steps) <= 0:
        raise argparse.ArgumentTypeError(f"expected N or N1,N2,N3 (positive), got '{text}'")
    return steps


STAGES = ("scoordnet", "oflownet", "kfnet")


class Pipeline:
    def __init__(self, args):
        self.args = args
        self.work = Path(args.work_folder)
        data = Path(args.data_folder) if args.data_folder else None
        self.train = Path(args.train_folder) if args.train_folder else (data / "train" if data else None)
        self.test = Path(args.test_folder) if args.test_folder else (data / "test" if data else None)
        if self.train is None or self.test is None:
            raise InputError("give --data_folder, or both --train_folder and --test_folder")
        for flag, folder in (("--train_folder", self.train), ("--test_folder", self.test)):
            if not (folder / "image_list.txt").is_file():
                raise InputError(f"{flag} {folder} is not an input folder (no image_list.txt)")
        if self.work.exists() and not self.work.is_dir():
            raise InputError(f"--work_folder {self.work} is a file, not a folder")
        self.settings = ["--scene", args.scene] if args.scene else ["--config", args.config]
        self.models = self.work / "models"
        self.results = self.work / "results"
        self.plots = self.work / "plots"
        hardware = ["--strategy", args.strategy] + ["--mixed_precision"] * args.mixed_precision
        hardware += ["--xla"] * args.xla
        if args.val_every is not None and not args.validate:
            raise InputError("--val_every needs --validate")
        if args.validate:
            hardware += ["--val_folder", str(self.test)]
            hardware += ["--val_every", str(args.val_every)] if args.val_every is not None else []
        self.train_flags = {
            stage: hardware + (["--max_steps", args.max_steps[i]] if args.max_steps else [])
            for i, stage in enumerate(STAGES)}

    def step(self, title, script, *argv, done=False):
        """Runs one stage script in its own process unless its outputs are complete."""
        if done:
            print(f"== {title}: already complete, skipped")
            return
        print(f"== {title}", flush=True)
        cmd = [sys.executable, str(ROOT / script), *map(str, argv)]
        if self.args.no_progress and script.endswith(("train.py", "test.py", "solve.py")):
            cmd.append("--no_progress")
        t0 = time.time()
        code = subprocess.run(cmd).returncode
        if code != 0:
            raise InputError(f"step '{title}' failed (exit code {code}): {' '.join(cmd)}")
        print(f"== {title}: done in {time.time() - t0:.0f} s", flush=True)

    def trained(self, folder, stage):
        """True when a model folder holds a checkpoint at the stage's last step."""
        from common.config import load_config, max_steps, stage_config

        cfg = stage_config(load_config(self.args.scene, self.args.config), stage)
        if self.args.max_steps:
            cfg["max_steps"] = self.args.max_steps[STAGES.index(stage)]
        steps = [int(p.name[len("ckpt-"):-len(".index")]) for p in Path(folder).glob("ckpt-*.index")]
        return bool(steps) and max(steps) >= max_steps(cfg)

    def pose_errors(self, name):
        """{frame: (translation cm, rotation °)} of a pose file (failed frames: inf); {} if unreadable."""
        try:
            records = formats.read_pose_file(self.results / f"{name}_poses.txt")
        except InputError:
            return {}
        inf = float("inf")
        return {r.index: (inf, inf) if r.pose_cw is None else (100 * r.t_err, r.r_err)
                for r in records if r.pose_cw is None or r.t_err is not None}

    def cloud_threshold(self, folder, samples=20):
        """--cloud_thres, or the median confidence of the maps when no cell of (up to `samples`
        evenly spaced) maps is above it: a briefly trained model is rarely that sure."""
        import numpy as np

        wanted = self.args.cloud_thres
        maps = sorted((p for p in Path(folder).glob(formats.COORD_GLOB) if formats.coord_index(p) is not None),
                      key=formats.coord_index)
        picked = maps[:: max(1, len(maps) // samples)]
        conf = np.concatenate([np.load(p)[..., 3].ravel() for p in picked]) if picked else np.zeros(0)
        conf = conf[np.isfinite(conf)]
        if conf.size == 0 or (conf > wanted).any():
            return wanted
        lowered = float(np.floor(np.median(conf) * 100) / 100)
        print(f"   no cell of the maps in {folder} has confidence above --cloud_thres {wanted:g} "
              f"(highest {conf.max():.3g}); the point cloud shows confidence > {lowered:g}")
        return lowered

    @staticmethod
    def complete(folder):
        info = Path(folder) / "run.json"
        return info.is_file() and json.loads(info.read_text()).get("complete", False)

    def run(self):
        m, r = self.models, self.results
        self.step("1/7 train SCoordNet", "scoordnet/train.py", "--input_folder", self.train,
                  "--model_folder", m / "scoordnet", *self.settings, *self.train_flags["scoordnet"],
                  done=self.trained(m / "scoordnet", "scoordnet"))
        oflownet = Path(self.args.oflownet) if self.args.oflownet else m / "oflownet"
        self.step("2/7 train OFlowNet", "oflownet/train.py", "--input_folder", self.train,
                  "--model_folder", oflownet, *self.settings, *self.train_flags["oflownet"],
                  done=bool(self.args.oflownet) or self.trained(oflownet, "oflownet"))
        self.step("3/7 train KFNet", "kfnet/train.py", "--input_folder", self.train,
                  "--model_folder", m / "kfnet", *self.settings, "--scoordnet", m / "scoordnet",
                  "--oflownet", oflownet, *self.train_flags["kfnet"], done=self.trained(m / "kfnet", "kfnet"))
        kf_args = ["--nis"] if self.args.nis else []
        self.step("4/7 test KFNet", "kfnet/test.py", "--input_folder", self.test, "--output_folder",
                  r / "kfnet", "--model_folder", m / "kfnet", *self.settings, "--save_measurement",
                  "--quiet", *kf_args, done=self.complete(r / "kfnet"))
        self.step("5/7 test SCoordNet alone", "scoordnet/test.py", "--input_folder", self.test,
                  "--output_folder", r / "scoordnet", "--model_folder", m / "scoordnet", *self.settings,
                  "--quiet", done=self.complete(r / "scoordnet"))
        gt = self.test / "pose_list.txt"
        gt_args = ["--gt", gt] if gt.is_file() else []
        for name, folder in POSE_SOURCES:
            poses = r / f"{name}_poses.txt"
            self.step(f"6/7 PnP poses of {name}", "pnp/solve.py", r / folder, poses, *gt_args,
                      *self.settings, "--thread_num", self.args.thread_num,
                      done=summary_path(poses).is_file() and poses.is_file())
        self.plots.mkdir(parents=True, exist_ok=True)
        if gt_args:
            self.step("7/7 trajectory plot", "vis/trajectory.py", r / "kfnet_poses.txt", "--gt", gt,
                      "--save", self.plots / "trajectory_kfnet.png",
                      done=(self.plots / "trajectory_kfnet.png").is_file())
        cloud = self.plots / "pointcloud_kfnet.png"
        if cloud.is_file():
            self.step("7/7 point cloud render", "", done=True)
        else:
            self.step("7/7 point cloud render", "vis/scene_coordinates_list.py", r / "kfnet", "--thres",
                      f"{self.cloud_threshold(r / 'kfnet'):g}", "--save", cloud)
        self.report()

    def report(self):
        """results.md: poses and coordinates of SCoordNet alone, of KFNet's own measurement (its
        SCoordNet after stage 3) and of KFNet, plus the ratios that say whether the filter helped."""
        runs = {name: read_json(self.results / name / "run.json").get("summary") or {}
                for name in ("scoordnet", "kfnet")}
        coords = {"scoordnet": runs["scoordnet"].get("scoordnet") or runs["scoordnet"].get("measurement") or {},
                  "kfnet_measurement": runs["kfnet"].get("measurement") or {},
                  "kfnet": runs["kfnet"].get("posterior") or {}}
        prior = (runs["kfnet"].get("prior") or {}).get("median_cm")
        rows, lags, step = {}, {}, None
        for name, _ in POSE_SOURCES:
            poses = read_json(summary_path(self.results / f"{name}_poses.txt"))
            overall = poses.get("overall", poses)
            rows[name] = (overall.get("median_t_cm"), overall.get("median_r_deg"),
                          overall.get("within_5cm_5deg"), coords[name].get("median_cm"))
            lags[name], step = overall.get("lag_cm"), overall.get("median_step_cm", step)
        table = ["| method | median translation (cm) | median rotation (°) | within 5 cm/5° | "
                 "median coord. error (cm) |", "|---|---|---|---|---|"]
        for name, label in ROW_LABELS.items():
            t, rdeg, share, cm = rows[name]
            table.append(f"| {label} | {fmt(t)} | {fmt(rdeg)} | {fmt(share, pct=True)} | {fmt(cm)} |")
        lines = [f"KFNet's prior (the flow-warped previous posterior): {fmt(prior)} cm median coordinate error."]
        errors = {name: self.pose_errors(name) for name, _ in POSE_SOURCES}
        for other, what in (("scoordnet", "SCoordNet alone"), ("kfnet_measurement", "its own measurement")):
            t_int, r_int = (interval(errors["kfnet"], errors[other], i, unit) for i, unit in ((0, "cm"), (1, "°")))
            lines.append(f"KFNet against {what}: translation {change(rows['kfnet'][0], rows[other][0])}{t_int}, "
                         f"rotation {change(rows['kfnet'][1], rows[other][1])}{r_int}, "
                         f"coordinates {change(rows['kfnet'][3], rows[other][3])}.")
        lines.append(f"Stage 3 changed the measurement network by "
                     f"{change(rows['kfnet_measurement'][3], rows['scoordnet'][3])} (coordinates).")
        if all(lag is not None for lag in lags.values()):
            lines.append("Lag along the motion (the position error's mean component toward the previous frame's "
                         f"camera; median step {fmt(step)} cm): " + ", ".join(
                             f"{ROW_LABELS[name].split(' (')[0]} {lags[name]:+.2f} cm".replace("-", "−") for name in lags) + ".")
        lines.append(f"[a … b]: 95 % interval of the difference of the median pose errors (block bootstrap over "
                     f"runs of {BLOCK} test frames); where it holds 0, these test frames cannot tell the two apart.")
        text = "\n".join(table) + "\n\n" + "\n".join(lines)
        (self.work / "results.md").write_text(text + "\n")
        print("\n" + text + "\n")
        for name in ("trajectory_kfnet.png", "pointcloud_kfnet.png"):
            if (self.plots / name).is_file():
                print(f"{name}: {self.plots / name}")
        print(f"table: {self.work / 'results.md'}")


# (pose file stem, folder of its coord_<k>.npy maps under the results folder)
POSE_SOURCES = (("scoordnet", "scoordnet"), ("kfnet_measurement", "kfnet/measurement"), ("kfnet", "kfnet"))
ROW_LABELS = {"scoordnet": "SCoordNet alone", "kfnet_measurement": "KFNet's measurement (its SCoordNet after stage 3)",
              "kfnet": "KFNet (posterior)"}


BLOCK = 30  # test frames per bootstrap block: about a second of a 30 Hz sequence


def interval(errs_new, errs_old, column, unit):
    """' [a … b cm]': bootstrap interval of median(new) − median(old) over the frames both have, or ''."""
    from common.poses import median_difference_interval

    frames = sorted(set(errs_new) & set(errs_old))
    _, low, high = median_difference_interval([errs_old[k][column] for k in frames],
                                              [errs_new[k][column] for k in frames], block=BLOCK)
    if not (math.isfinite(low) and math.isfinite(high)):
        return ""
    return f" [{low:+.2f} … {high:+.2f} {unit}]".replace("-", "−")


def change(new, old):
    """'−12.3 %' : relative change of new against old, or '–'."""
    if new is None or old is None or not old:
        return "–"
    return f"{100 * (new - old) / old:+.1f} %".replace("-", "−")


def summary_path(pose_file):
    pose_file = Path(pose_file)
    return pose_file.with_name(pose_file.stem + ".summary.json")


def read_json(path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}


def fmt(value, pct=False):
    if value is None:
        return "–"
    return f"{100 * value:.1f} %" if pct else f"{value:.2f}"


def main(argv=None):
    args = parse_args(argv)
    Pipeline(args).run()
    return 0


if __name__ == "__main__":
    run(main)
