"""Soak run (not a test): does a long run leak memory or slow down?

    python scripts/soak.py --work_folder runs/soak [--steps 3000] [--frames 3000]

Trains SCoordNet with configs/tiny.yaml for --steps steps on a generated 80x64 scene, then streams
--frames frames through the KFNet test (kfnet/test.py, random tiny weights: only memory and speed
matter here), both in this process while a thread samples its resident memory once a second.
Prints, per phase, the resident memory after warm-up (the first quarter of the phase) and at the
end, the growth between them (goal: at most 5 %), and the speed at the start and at the end.
"""

import argparse
import sys
import threading
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from common.cli import quiet_tensorflow  # noqa: E402

WARM_UP = 0.25  # share of a phase before memory counts


def rss_mb():
    """Resident memory of this process, MB (Linux /proc)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


class Sampler(threading.Thread):
    """(seconds, MB, progress()) every `every` seconds until stopped."""

    def __init__(self, progress, every=1.0):
        super().__init__(daemon=True)
        self.progress, self.every = progress, every
        self.samples, self.done = [], threading.Event()

    def run(self):
        t0 = time.time()
        while not self.done.is_set():
            self.samples.append((time.time() - t0, rss_mb(), self.progress()))
            self.done.wait(self.every)

    def stop(self):
        self.done.set()
        self.join()
        return self.samples


def report(name, samples, unit):
    """Memory after warm-up and at the end, and the speed over the first and the last tenth."""
    if len(samples) < 4:
        print(f"{name}: too short to judge ({len(samples)} samples)")
        return None
    total = samples[-1][0]
    warm = next(s for s in samples if s[0] >= WARM_UP * total)
    end_mb = samples[-1][1]
    growth = 100.0 * (end_mb - warm[1]) / warm[1]

    def rate(part):
        if len(part) < 2 or part[-1][0] == part[0][0]:
            return float("nan")
        return (part[-1][2] - part[0][2]) / (part[-1][0] - part[0][0])

    # Speed over the samples while work was being done (after tracing, before the summary).
    final = samples[-1][2]
    active = [s for s in samples if s[2] > 0]
    active = active[:next((i + 1 for i, s in enumerate(active) if s[2] == final), len(active))]
    tenth = max(2, len(active) // 10)
    start_rate, end_rate = rate(active[:tenth]), rate(active[-tenth:])
    print(f"{name}: resident memory {warm[1]:.0f} MB after warm-up ({warm[0]:.0f} s), {end_mb:.0f} MB "
          f"at the end ({total:.0f} s): growth {growth:+.1f} % (goal <= 5 %); peak "
          f"{max(s[1] for s in samples):.0f} MB; {start_rate:.2f} {unit}/s at the start, "
          f"{end_rate:.2f} {unit}/s at the end")
    return growth


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--work_folder", required=True, help="scene, model and outputs go here (reused)")
    p.add_argument("--steps", type=int, default=3000, help="SCoordNet training steps")
    p.add_argument("--frames", type=int, default=3000, help="frames streamed through the KFNet test")
    p.add_argument("--skip_training", action="store_true", help="only the streaming test")
    args = p.parse_args(argv)
    quiet_tensorflow()
    import tensorflow as tf

    from common.checkpoints import write_model_info
    from common.cli import run
    from common.config import load_config
    from common.data.prepare import Camera, prepare_scene
    from common.data.synthetic import SceneSettings, write_scene
    from oflownet.model import OFlowNet
    from scoordnet.model import SCoordNet

    work = Path(args.work_folder)
    scene = work / "scene"
    if not (scene / "prepared" / "train" / "image_list.txt").is_file():
        write_scene(scene / "dataset", SceneSettings(width=80, height=64, frames=60, sequences=3,
                                                     test_sequences=1, seed=0), progress=False)
        cfg = load_config("tiny")
        camera = Camera(focal=float(cfg["focal"]), focal_y=float(cfg.get("focal_y") or cfg["focal"]),
                        cx=float(cfg["cx"]), cy=float(cfg["cy"]), depth_focal=float(cfg["depth_focal"]))
        prepare_scene(scene / "dataset", scene / "prepared", camera, progress=False)
    train, test = scene / "prepared" / "train", scene / "prepared" / "test"
    results = {}

    def in_process(main_fn, argv):
        try:
            run(main_fn, argv)
        except SystemExit as e:
            if e.code:
                raise SystemExit(f"soak: {main_fn.__module__} failed with exit code {e.code}") from None

    if not args.skip_training:
        from scoordnet import train as scoord_train

        model = work / "scoordnet"
        import shutil

        shutil.rmtree(model, ignore_errors=True)
        steps = {"n": 0}

        def trained():
            return steps["n"]

        # The step count comes from the checkpoint-free path: a hook on the Trainer's step function.
        from common.trainer import Trainer

        real_make_step = Trainer.make_step

        def make_step(self):
            step = real_make_step(self)

            def counted(batch):
                out = step(batch)
                steps["n"] += 1
                return out

            return counted

        Trainer.make_step = make_step
        sampler = Sampler(trained)
        sampler.start()
        in_process(scoord_train.main, ["--input_folder", str(train), "--model_folder", str(model),
                                       "--scene", "tiny", "--max_steps", str(args.steps),
                                       "--snapshot", "1000", "--stepvalue", str(10 * args.steps),
                                       "--no_progress"])
        Trainer.make_step = real_make_step
        results["training"] = report("training (SCoordNet, tiny)", sampler.stop(), "steps")

    # Streaming: the test sequence listed again and again, one sequence per copy.
    from kfnet import test as kfnet_test

    images = (test / "image_list.txt").read_text().split()
    labels = (test / "label_list.txt").read_text().split()
    repeats = -(-args.frames // len(images))
    stream = work / "stream"
    stream.mkdir(parents=True, exist_ok=True)
    (stream / "image_list.txt").write_text("\n".join((images * repeats)[:args.frames]) + "\n")
    (stream / "label_list.txt").write_text(
        "\n".join(str((test / lab).resolve()) for lab in (labels * repeats)[:args.frames]) + "\n")
    (stream / "transform.txt").write_text((test / "transform.txt").read_text())
    kf_model = work / "kfnet_random"
    if not (kf_model / "model.json").is_file():
        nets = {"scoordnet": SCoordNet(0.125).build_for((64, 80)), "oflownet": OFlowNet(0.25)}
        nets["oflownet"].build_for((64, 80))
        tf.train.Checkpoint(**nets).write(str(kf_model / "ckpt-1"))
        (kf_model / "checkpoint").write_text('model_checkpoint_path: "ckpt-1"\n')
        write_model_info(kf_model, "kfnet", {"scoordnet": 0.125, "oflownet": 0.25})
    out = work / "kfnet_out"
    import shutil

    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)

    def streamed():
        return sum(1 for _ in out.glob("coord_*.npy"))

    sampler = Sampler(streamed)
    sampler.start()
    in_process(kfnet_test.main, ["--input_folder", str(stream), "--output_folder", str(out),
                                 "--model_folder", str(kf_model), "--scene", "tiny", "--quiet",
                                 "--no_progress", "--sequence_length", str(len(images))])
    results["streaming"] = report("streaming (KFNet test)", sampler.stop(), "frames")
    worst = max((g for g in results.values() if g is not None), default=None)
    if worst is not None:
        print(f"largest growth after warm-up: {worst:+.1f} % ({'within' if worst <= 5 else 'above'} 5 %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
