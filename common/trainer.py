"""The training loop shared by all stages: schedule, weight decay, checkpoints, summaries.

A stage object owns its networks and its loss; the Trainer owns the optimizer, the
`tf.train.Checkpoint` + `CheckpointManager` in the model folder (resumed automatically), the
TensorBoard writer under `<model_folder>/log`, signals and the progress bar. Initial weights
(e.g. the pre-trained stages KFNet starts from) are loaded only when the folder holds no
checkpoint of its own, so a resumed run never goes back to them.

Every step runs through a tf.distribute strategy (common/distribute.py). Only the chief writes
the model folder; other workers of a multi-worker run save into a scratch folder (saving takes
part in collective ops) that is removed when training ends, and resume from the chief's folder.
The chief holds a lock on the model folder (common.locks) from `restore_or_init` to the end.
"""

import math
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

import keras
import tensorflow as tf
from tqdm import tqdm

from common import summaries
from common.checkpoints import checkpoint_prefixes, write_model_info
from common.data.check import describe_bad_file
from common.distribute import check_xla, is_chief, needs_loss_scaling
from common.errors import InputError
from common.locks import lock_folder, output_error
from common.losses import weight_decay

LR_DECAY = 0.5  # the learning rate halves every stepvalue steps


def learning_rate_schedule(cfg):
    """base_lr · 0.5^(step / stepvalue), decayed continuously as the original's TF1
    exponential_decay (no staircase); config `lr_staircase: true` halves it in steps instead."""
    return keras.optimizers.schedules.ExponentialDecay(
        float(cfg["base_lr"]), int(cfg["stepvalue"]), LR_DECAY,
        staircase=bool(cfg.get("lr_staircase", False)))


class Trainer:
    """Trains one stage: `stage.nets` (dict of Keras models) with `stage.loss(batch)`.

    `stage.loss(batch)` runs in replica context and returns (loss, metrics dict) whose values
    add up over replicas to the global-batch values (see common.distribute.global_mean).
    With `xla`, each replica's step (forward, backward, Adam update) is one XLA program.
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
        if xla:
            check_xla(strategy)
        self.stage_name = stage_name
        self.widths = widths
        self.xla = xla
        self.stop_signal = None
        # Config (after flags), seed, code version and command: in model.json and TensorBoard.
        self.run = summaries.run_description(cfg, sys.argv)
        self.loss_scaling = bool(mixed_precision) and needs_loss_scaling()
        with strategy.scope():
            # The training step (which sets the learning rate) is kept apart from Adam's own
            # iteration count (which sets its bias correction): a stage that starts at step
            # 4·stepvalue (KFNet) must not skip Adam's warm-up correction of fresh moments.
            self.global_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step",
                                           aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
            schedule = learning_rate_schedule(cfg)
            self.adam = keras.optimizers.Adam(lambda: schedule(self.global_step))
            self.optimizer = (keras.optimizers.LossScaleOptimizer(self.adam) if self.loss_scaling
                              else self.adam)
            self.variables = stage.trainable_variables()
            self.optimizer.build(self.variables)
            # Adam itself is saved, not the loss-scale wrapper: a run resumes with or without
            # --mixed_precision (the dynamic loss scale then starts afresh).
            self.checkpoint = tf.train.Checkpoint(optimizer=self.adam, step=self.global_step, **stage.nets)
        self.keep = int(cfg.get("keep", 3))
        # Every worker resumes from the chief's folder (shared storage across machines); only the
        # chief writes it.
        self.manager = tf.train.CheckpointManager(self.checkpoint, str(self.model_folder), self.keep)

    @property
    def step(self):
        return int(self.global_step.numpy())

    def restore_or_init(self, init_fn=None, start_step=0):
        """Resumes from the newest restorable checkpoint; otherwise init_fn() and start_step.

        The chief first locks the model folder: a second run on it stops here, before writing.
        A damaged checkpoint (truncated data, missing index) is skipped with a warning.
        """
        if self.chief:
            lock_folder(self.model_folder, "--model_folder")
        resumed = False
        for path in self._resumable():
            try:
                self.checkpoint.restore(path).assert_existing_objects_matched()
            except (tf.errors.OpError, AssertionError, ValueError, IndexError) as e:
                print(f"warning: cannot restore {path} ({str(e).splitlines()[0]}); trying an older one",
                      file=sys.stderr)
                continue
            print(f"resuming from {path} at step {self.step}")
            resumed = True
            break
        if not resumed:
            if init_fn is not None:
                init_fn()
            if start_step:
                self.global_step.assign(start_step)
        self._check_workers_agree()
        return resumed

    def _resumable(self):
        """This run's checkpoints, newest first: those the `checkpoint` file lists and any whole
        ckpt-N on disk it does not list yet (a run killed between writing a checkpoint and
        recording it)."""
        listed = {os.path.normpath(p) for p in self.manager.checkpoints}
        on_disk = {os.path.normpath(p) for p in checkpoint_prefixes(self.model_folder)
                   if Path(p).name.startswith("ckpt-") and Path(p + ".index").is_file()}
        return sorted(listed | on_disk, key=lambda p: int(p.rsplit("-", 1)[1]), reverse=True)

    def _check_workers_agree(self):
        """Stops when workers start from different steps (a model folder not every worker sees)."""
        if not isinstance(self.strategy, tf.distribute.MultiWorkerMirroredStrategy):
            return

        @tf.function
        def summed_steps():
            steps = self.strategy.run(lambda: tf.cast(self.global_step, tf.float64))
            return self.strategy.reduce(tf.distribute.ReduceOp.SUM, steps, axis=None)

        if float(summed_steps()) != self.step * self.strategy.num_replicas_in_sync:
            raise InputError(f"workers start from different steps (this one: {self.step}); "
                             f"--model_folder {self.model_folder} must be one folder every worker sees")

    def _gradients(self, batch):
        """(gradients, metrics) of this replica's part of the global batch."""
        with tf.GradientTape() as tape:
            loss, metrics = self.stage.loss(batch)
            # Divided by the number of replicas: the optimizer sums the replicas' gradients.
            decay = tf.nn.scale_regularization_loss(
                weight_decay(self.variables, float(self.cfg["weight_decay"])))
            total = loss + decay
            scaled = self.optimizer.scale_loss(total) if self.loss_scaling else total
        grads = tape.gradient(scaled, self.variables)
        return grads, {"loss": total, "weight_decay": decay, **metrics}

    def _replica_step(self, batch):
        grads, metrics = self._gradients(batch)
        self.optimizer.apply_gradients(zip(grads, self.variables))
        return metrics

    def make_step(self):
        """tf.function: one global batch (distributed) → metrics summed over replicas."""
        replica_step = self._replica_step
        if self.xla:
            replica_step = tf.function(replica_step, jit_compile=True)

        @tf.function
        def step(batch):
            per_replica = self.strategy.run(replica_step, args=(batch,))
            self.global_step.assign_add(1)
            return {k: self.strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
                    for k, v in per_replica.items()}

        return step

    def distribute(self, dataset):
        """The global-batch dataset split over replicas (and over workers, element-wise)."""
        options = tf.data.Options()
        # Every worker builds the same deterministic stream and keeps its part of each global batch.
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        return self.strategy.experimental_distribute_dataset(dataset.with_options(options))

    def _on_signal(self, signum, frame):
        if self.stop_signal is not None:  # second signal: stop now
            raise KeyboardInterrupt
        self.stop_signal = signum
        print(f"\nstopping after this step ({signal.Signals(signum).name}); saving a checkpoint",
              file=sys.stderr)

    def save(self, manager=None):
        """Saves ckpt-<step>; a write that fails (full disk, I/O error) leaves the previous
        checkpoints as they were, removes the partial one and raises OutputError."""
        manager = manager or self.manager
        step = self.step
        fresh = not any(Path(p).name == f"ckpt-{step}" for p in manager.checkpoints)
        try:
            path = manager.save(checkpoint_number=step)
        except (tf.errors.OpError, OSError) as e:
            folder = Path(manager.directory)
            shutil.rmtree(folder / f"ckpt-{step}_temp", ignore_errors=True)
            if fresh:
                for part in folder.glob(f"ckpt-{step}.*"):
                    part.unlink(missing_ok=True)
            raise output_error(folder / f"ckpt-{step}", e) from None
        if self.chief:
            write_model_info(self.model_folder, self.stage_name, self.widths, run=self.run)
        return path

    def write_images(self, batch, step):
        """TensorBoard pictures of `stage.summary_images` on (this worker's first part of) a batch."""
        if not hasattr(self.stage, "summary_images"):
            return
        local = tf.nest.map_structure(lambda v: self.strategy.experimental_local_results(v)[0], batch)
        for name, pictures in self.stage.summary_images(local).items():
            tf.summary.image(f"images/{name}", pictures, step=step, max_outputs=len(pictures),
                             description=summaries.description(name))

    def fit(self, make_dataset, max_steps, summary_every=100, snapshot=5000, progress=True,
            image_every=None, validate=None, val_every=None, data=None):
        """Runs steps until max_steps; make_dataset(start_step) gives the global-batch stream.

        Scalars are the means over the steps since the last summary; every `image_every` steps
        (and at the first step) the stage's pictures of the current batch; every `val_every` steps
        and at the last the scalars `validate()` returns (a dict), under val/ and on the console.
        Returns 0 when finished, 130 when stopped by a signal (after saving). A training file
        that cannot be read any more (`data`: the InputFolder, to name it) saves a checkpoint
        and raises InputError.
        """
        if self.chief:
            lock_folder(self.model_folder, "--model_folder")  # held already after restore_or_init
        if image_every is None:
            image_every = int(self.cfg.get("image_every") or 0)
        start = self.step
        if start >= max_steps:
            print(f"already trained: step {start} of {max_steps}")
            return 0
        dataset = self.distribute(make_dataset(start))
        step_fn = self.make_step()
        writer = tf.summary.create_file_writer(str(self.model_folder / "log")) if self.chief else None
        scratch = None if self.chief else Path(tempfile.mkdtemp(prefix="kfnet-worker-"))
        manager = (self.manager if scratch is None
                   else tf.train.CheckpointManager(self.checkpoint, str(scratch), max_to_keep=1))
        old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        bar = tqdm(total=max_steps, initial=start, desc=self.stage_name, unit="step",
                   disable=not (progress and self.chief), dynamic_ncols=True)
        last_saved, t0, steps0 = start, time.time(), start
        sums, count = {}, 0
        if writer is not None:
            with writer.as_default(step=start):
                tf.summary.text("run", summaries.run_markdown(self.run))
        try:
            for batch in _batches(dataset):
                metrics = step_fn(batch)
                step = self.step
                bar.update(1)
                # Summed on the device: no host sync between summaries.
                sums = {k: sums[k] + v if k in sums else v for k, v in metrics.items()}
                count += 1
                if writer is not None and image_every and (step % image_every == 0 or step == start + 1):
                    with writer.as_default():
                        self.write_images(batch, step)
                if writer is not None and validate is not None and val_every and (
                        step % val_every == 0 or step == max_steps):
                    scores = validate()
                    with writer.as_default(step=step):
                        for k, v in scores.items():
                            tf.summary.scalar(f"val/{k}", v)
                    bar.write(f"step {step} validation: "
                              + ", ".join(f"{k} {v:.2f}" for k, v in scores.items()))
                if step % summary_every == 0 or step == max_steps or step == start + 1:
                    values = {k: float(v) / count for k, v in sums.items()}
                    sums, count = {}, 0
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
                    self.save(manager)
                    last_saved = step
                if step >= max_steps or self.stop_signal is not None:
                    break
        except _DataError as e:
            if last_saved != self.step:
                self.save(manager)
            raise InputError(f"{describe_bad_file(data, e.error)}; saved step {self.step} to "
                             f"{self.model_folder}, run the same command to resume") from None
        finally:
            bar.close()
            for s, handler in old.items():
                signal.signal(s, handler)
            if writer is not None:
                writer.flush()
            if scratch is not None:
                shutil.rmtree(scratch, ignore_errors=True)
        if self.stop_signal == "nan":
            return 1
        if self.stop_signal is not None:
            print(f"saved step {last_saved} to {self.model_folder}; run the same command to resume",
                  file=sys.stderr)
            return 130
        where = self.model_folder if self.chief else f"{self.model_folder} (written by the chief)"
        print(f"finished step {self.step}; checkpoint in {where}")
        return 0


class _DataError(Exception):
    """The input pipeline failed (a file deleted, truncated or resized after the start)."""

    def __init__(self, error):
        super().__init__(str(error))
        self.error = error


def _batches(dataset):
    """The dataset's elements; its read errors become _DataError (the step's own errors do not)."""
    iterator = iter(dataset)
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except tf.errors.OpError as e:
            raise _DataError(e) from None
        yield batch


def seed_everything(seed):
    """Seeds Python, NumPy and TensorFlow (weight initialization) for repeatable runs."""
    keras.utils.set_random_seed(int(seed))
