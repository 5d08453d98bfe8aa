"""tf.distribute strategies, mixed precision and the global-batch reductions losses need.

All training goes through a strategy — the default one on a single device — so there is one
code path. Loss terms are computed per replica and divided by counts summed over the global
batch (`global_sum`), so that adding the replicas' values gives exactly the single-device loss;
the optimizer then sums the replicas' gradients (Keras 3 all-reduces with SUM).
"""

import contextlib
import json
import os

import tensorflow as tf

from common.cli import STRATEGIES
from common.errors import InputError


def split_cpu(replicas):
    """Splits the CPU into `replicas` logical devices; must run before TensorFlow starts its runtime."""
    if not replicas or replicas <= 1:
        return
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(replicas)])
    except RuntimeError:
        existing = tf.config.get_logical_device_configuration(cpu) or []
        if len(existing) != replicas:
            raise InputError(f"--cpu_replicas {replicas}: TensorFlow has already started with "
                             f"{max(len(existing), 1)} CPU device(s) in this process") from None


def _read_tf_config():
    """TF_CONFIG as a dict with a cluster and this process's task, else an InputError."""
    if "TF_CONFIG" not in os.environ:
        raise InputError("--strategy multiworker needs the TF_CONFIG environment variable "
                         '(e.g. {"cluster": {"worker": ["host1:port", "host2:port"]}, '
                         '"task": {"type": "worker", "index": 0}})')
    try:
        config = json.loads(os.environ["TF_CONFIG"])
        cluster, task = config["cluster"], config["task"]
        members = cluster[task["type"]]
        if not isinstance(members, list) or not 0 <= int(task["index"]) < len(members):
            raise ValueError
    except (ValueError, KeyError, TypeError):
        raise InputError("TF_CONFIG must be JSON with 'cluster' (job → list of host:port) and "
                         "'task' ({'type': job, 'index': position in that list})") from None
    return config


_STRATEGIES = {}  # one instance per kind and process: collective keys of two would collide


def make_strategy(name="default", cpu_replicas=0):
    """The tf.distribute strategy for --strategy (and --cpu_replicas on machines without GPUs)."""
    if name not in STRATEGIES:
        raise InputError(f"unknown --strategy {name}; choose from {', '.join(STRATEGIES)}")
    if cpu_replicas and cpu_replicas < 0:
        raise InputError(f"--cpu_replicas must be positive, got {cpu_replicas}")
    split_cpu(cpu_replicas)
    if name == "default":
        return tf.distribute.get_strategy()
    if name not in _STRATEGIES:
        if name == "mirrored":
            gpus = tf.config.list_logical_devices("GPU")
            devices = [d.name for d in gpus or tf.config.list_logical_devices("CPU")]
            _STRATEGIES[name] = tf.distribute.MirroredStrategy(devices=devices)
        else:
            _read_tf_config()
            _STRATEGIES[name] = tf.distribute.MultiWorkerMirroredStrategy()
    return _STRATEGIES[name]


def is_chief(strategy):
    """True on the worker that writes checkpoints, summaries and model.json (every local strategy)."""
    return bool(strategy.extended.should_checkpoint)


def check_xla(strategy):
    """Raises InputError unless `strategy` can run an XLA-compiled step.

    tf.distribute synchronizes replicas with `merge_call` unless every device is a GPU, and
    merge_call cannot be traced inside an XLA cluster: several replicas on CPUs cannot use --xla.
    """
    mirrored = (tf.distribute.MirroredStrategy, tf.distribute.MultiWorkerMirroredStrategy)
    if not isinstance(strategy, mirrored):
        return
    devices = strategy.extended.worker_devices
    if not all("GPU" in d.upper() for d in devices):
        raise InputError(f"--xla with {type(strategy).__name__} needs GPUs (devices here: "
                         f"{', '.join(devices)}): on CPUs tf.distribute synchronizes replicas "
                         "through merge_call, which XLA cannot compile")


def global_sum(value):
    """Sum of a per-replica value over all replicas (identity on a single device)."""
    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync == 1:
        return value
    return ctx.all_reduce(tf.distribute.ReduceOp.SUM, value)


def global_mean(total, count, plus_one=True):
    """This replica's share of Σtotal / (Σcount + 1) over the global batch (docs/reference.md §5 normalizer).

    With plus_one=False: Σtotal / max(Σcount, 1), for shares such as accuracy.
    """
    denom = global_sum(count) + (1.0 if plus_one else 0.0)
    if not plus_one:
        denom = tf.maximum(denom, 1.0)
    return total / denom


def num_replicas():
    """Replicas in sync in the current context (1 outside tf.distribute)."""
    ctx = tf.distribute.get_replica_context()
    return 1 if ctx is None else ctx.num_replicas_in_sync


def set_mixed_precision(enabled):
    """mixed_float16 on GPU, mixed_bfloat16 on CPU (variables stay float32); returns the policy name.

    Networks cast their outputs to float32, so losses and the filter math run in float32.
    """
    import keras

    policy = "float32"
    if enabled:
        policy = "mixed_float16" if tf.config.list_logical_devices("GPU") else "mixed_bfloat16"
    keras.mixed_precision.set_global_policy(policy)
    return policy


@contextlib.contextmanager
def precision_policy(enabled):
    """Layers built inside use set_mixed_precision's policy (bfloat16 on CPU, float16 on GPU);
    Keras's global policy is restored afterwards. Yields the policy name."""
    import keras

    before = keras.mixed_precision.global_policy()
    try:
        yield set_mixed_precision(enabled)
    finally:
        keras.mixed_precision.set_global_policy(before)


def needs_loss_scaling():
    """True under mixed_float16, whose gradients underflow without loss scaling (bfloat16 does not)."""
    import keras

    return keras.mixed_precision.global_policy().compute_dtype == "float16"
