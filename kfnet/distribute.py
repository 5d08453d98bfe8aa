"""tf.distribute strategies, mixed precision and the global-batch reductions losses need.

All training goes through a strategy — the default one on a single device — so there is one
code path. Loss terms are computed per replica and divided by counts summed over the global
batch (`global_sum`), so that adding the replicas' values gives exactly the single-device loss;
gradients are then summed over replicas by the optimizer.
"""

import json
import os

import tensorflow as tf

from kfnet.cli import STRATEGIES
from kfnet.errors import InputError


def split_cpu(replicas):
    """Splits the CPU into `replicas` logical devices (before TensorFlow starts its runtime)."""
    if not replicas or replicas <= 1:
        return
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(replicas)])
    except RuntimeError:
        existing = tf.config.get_logical_device_configuration(cpu) or []
        if len(existing) != replicas:
            raise


def make_strategy(name="default", cpu_replicas=0):
    """The tf.distribute strategy for --strategy (and --cpu_replicas on machines without GPUs)."""
    if name not in STRATEGIES:
        raise InputError(f"unknown --strategy {name}; choose from {', '.join(STRATEGIES)}")
    split_cpu(cpu_replicas)
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        if gpus:
            return tf.distribute.MirroredStrategy()
        cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices=cpus)
    if "TF_CONFIG" not in os.environ:
        raise InputError("--strategy multiworker needs the TF_CONFIG environment variable")
    try:
        json.loads(os.environ["TF_CONFIG"])
    except ValueError:
        raise InputError("TF_CONFIG is not valid JSON") from None
    return tf.distribute.MultiWorkerMirroredStrategy()


def is_chief(strategy):
    """True on the worker that writes checkpoints and summaries."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    return task_type is None or task_type == "chief" or (
        task_type == "worker" and task_id == 0 and "chief" not in resolver.cluster_spec().as_dict())


def global_sum(value):
    """Sum of a per-replica value over all replicas (identity on a single device)."""
    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync == 1:
        return value
    return ctx.all_reduce(tf.distribute.ReduceOp.SUM, value)


def global_mean(total, count, plus_one=True):
    """This replica's share of Σtotal / (Σcount + 1) over the global batch (SPEC §5 normalizer)."""
    denom = global_sum(count) + (1.0 if plus_one else 0.0)
    if not plus_one:
        denom = tf.maximum(denom, 1.0)
    return total / denom


def num_replicas():
    ctx = tf.distribute.get_replica_context()
    return 1 if ctx is None else ctx.num_replicas_in_sync


def set_mixed_precision(enabled):
    """mixed_float16 on GPU, mixed_bfloat16 on CPU; model outputs and filter math stay float32."""
    import keras

    if not enabled:
        keras.mixed_precision.set_global_policy("float32")
        return None
    policy = "mixed_float16" if tf.config.list_physical_devices("GPU") else "mixed_bfloat16"
    keras.mixed_precision.set_global_policy(policy)
    return policy
