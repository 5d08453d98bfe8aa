"""The training loop shared by all stages: schedule, weight decay, checkpoints, summaries.

A stage object owns its networks and its loss; the Trainer owns the optimizer, the
`tf.train.Checkpoint` + `CheckpointManager` in the model folder (resumed automatically), the
TensorBoard writer under `<model_folder>/log`, signals and the progress bar. Initial weights
(e.g. the pre-trained stages KFNet starts from) are loaded only when the folder holds no
checkpoint of its own, so a resumed run never goes back to them.
"""

import math
import signal
import sys
import tempfile
import time
from pathlib import Path

import keras
import tensorflow as tf
from tqdm import tqdm

from kfnet.checkpoints import write_model_info
from kfnet.distribute import is_chief, num_replicas
from kfnet.errors import InputError
from kfnet.losses import weight_decay


class StepSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """base_lr · 0.5^⌊step / stepvalue⌋ (SPEC §5)."""

    def __init__(self, base_lr, stepvalue):
        self.base_lr = float(base_lr)
        self.stepvalue = int(stepvalue)

    def __call__(self, step):
        drops = tf.floor(tf.cast(step, tf.float32) / float(self.stepvalue))
        return self.base_lr * tf.pow(0.5, drops)

    def get_config(self):
        return {"base_lr": self.base_lr, "stepvalue": self.stepvalue}


class Trainer:
    """Trains one stage: `stage.nets` (dict of Keras models) with `stage.loss(batch)`.

    `stage.loss(batch)` runs in replica context and returns (loss, metrics dict) whose values
    add up over replicas to the global-batch values (see kfnet.distribute.global_mean).
    """

    def __init__(self, stage, model_folder, cfg, strategy, stage_name, widths,
                 mixed_precision=False, xla=False):
        self.stage = stage
        self.cfg = cfg
        self.strategy = strategy
        self.chief = is_chief(strategy)
        self.model_folder = Path(model_folder)
        if self.model_folder.exists() and not self.model_folder.is_dir():
            raise InputError(f"--model_folder {model_folder} is a file, not a folder")
        # Non-chief workers must save too (collective ops), but into a scratch folder.
        self.save_folder = self.model_folder if self.chief else Path(tempfile.mkdtemp(prefix="kfnet-worker-"))
        self.stage_name = stage_name
        self.widths = widths
        self.xla = xla
        self.stop_signal = None
        with strategy.scope():
            optimizer = keras.optimizers.Adam(StepSchedule(cfg["base_lr"], cfg["stepvalue"]))
            if mixed_precision:
                optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
            self.optimizer = optimizer
            self.variables = stage.trainable_variables()
            self.optimizer.build(self.variables)
            self.checkpoint = tf.train.Checkpoint(optimizer=self.optimizer, **stage.nets)
        self.manager = tf.train.CheckpointManager(self.checkpoint, str(self.save_folder),
                                                  max_to_keep=int(cfg.get("keep", 3)))

    @property
    def step(self):
        return int(self.optimizer.iterations.numpy())

    def restore_or_init(self, init_fn=None, start_step=0):
        """Resumes from the newest restorable checkpoint; otherwise init_fn() and start_step."""
        for path in reversed(self.manager.checkpoints):
            try:
                self.checkpoint.restore(path).assert_existing_objects_matched()
            except (tf.errors.OpError, AssertionError, ValueError) as e:
                print(f"warning: cannot restore {path} ({str(e).splitlines()[0]}); trying an older one",
                      file=sys.stderr)
                continue
            print(f"resuming from {path} at step {self.step}")
            return True
        if init_fn is not None:
            init_fn()
        if start_step:
            self.optimizer.iterations.assign(start_step)
        return False

    def _gradients(self, batch):
        """(gradients, metrics) of one replica's part of the batch; the part XLA may compile."""
        with tf.GradientTape() as tape:
            loss, metrics = self.stage.loss(batch)
            decay = weight_decay(self.variables, float(self.cfg["weight_decay"])) / num_replicas()
            total = loss + decay
            scaled = (self.optimizer.scale_loss(total)
                      if isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer) else total)
        grads = tape.gradient(scaled, self.variables)
        return grads, {"loss": total, "weight_decay": decay, **metrics}

    def _make_step(self):
        gradients = tf.function(self._gradients, jit_compile=True) if self.xla else self._gradients

        def replica_step(batch):
            grads, metrics = gradients(batch)
            self.optimizer.apply_gradients(zip(grads, self.variables))
            return metrics

        def step(batch):
            per_replica = self.strategy.run(replica_step, args=(batch,))
            return {k: self.strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
                    for k, v in per_replica.items()}

        return tf.function(step)

    def _on_signal(self, signum, frame):
        if self.stop_signal is not None:  # second signal: stop now
            raise KeyboardInterrupt
        self.stop_signal = signum
        print(f"\nstopping after this step ({signal.Signals(signum).name}); saving a checkpoint",
              file=sys.stderr)

    def save(self):
        path = self.manager.save(checkpoint_number=self.step)
        if self.chief:
            write_model_info(self.model_folder, self.stage_name, self.widths)
        return path

    def fit(self, make_dataset, max_steps, summary_every=100, snapshot=5000, progress=True):
        """Runs steps until max_steps; make_dataset(start_step) gives the global-batch stream.

        Returns 0 when finished, 130 when stopped by a signal (after saving).
        """
        start = self.step
        if start >= max_steps:
            print(f"already trained: step {start} of {max_steps}")
            return 0
        dataset = self.strategy.experimental_distribute_dataset(make_dataset(start))
        step_fn = self._make_step()
        writer = tf.summary.create_file_writer(str(self.model_folder / "log")) if self.chief else None
        old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        bar = tqdm(total=max_steps, initial=start, desc=self.stage_name, unit="step",
                   disable=not (progress and self.chief), dynamic_ncols=True)
        last_saved, t0, steps0 = start, time.time(), start
        try:
            for batch in dataset:
                metrics = step_fn(batch)
                step = self.step
                bar.update(1)
                if step % summary_every == 0 or step == max_steps or step == start + 1:
                    values = {k: float(v) for k, v in metrics.items()}
                    if not all(math.isfinite(v) for v in values.values()):
                        self.stop_signal = "nan"
                        print(f"\nerror: non-finite loss at step {step}: {values}", file=sys.stderr)
                        break
                    rate = (step - steps0) / max(time.time() - t0, 1e-9)
                    t0, steps0 = time.time(), step
                    bar.set_postfix(loss=f"{values['loss']:.4f}", steps_s=f"{rate:.2f}")
                    if writer is not None:
                        with writer.as_default(step=step):
                            for k, v in values.items():
                                tf.summary.scalar(k, v)
                            tf.summary.scalar("learning_rate", float(self.optimizer.learning_rate))
                            tf.summary.scalar("steps_per_second", rate)
                if step % snapshot == 0 or step >= max_steps or self.stop_signal is not None:
                    self.save()
                    last_saved = step
                if step >= max_steps or self.stop_signal is not None:
                    break
        finally:
            bar.close()
            for s, handler in old.items():
                signal.signal(s, handler)
            if writer is not None:
                writer.flush()
            if not self.chief:
                import shutil

                shutil.rmtree(self.save_folder, ignore_errors=True)
        if self.stop_signal == "nan":
            return 1
        if self.stop_signal is not None:
            print(f"saved step {last_saved} to {self.model_folder}; run the same command to resume",
                  file=sys.stderr)
            return 130
        print(f"finished step {self.step}; checkpoint in {self.model_folder}")
        return 0


def seed_everything(seed):
    """Seeds Python, NumPy and TensorFlow (weight initialization) for repeatable runs."""
    keras.utils.set_random_seed(int(seed))
